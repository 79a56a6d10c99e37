"""Segment files: one CT file, one DICOM series folder, or a folder of cases, written as label maps and
Slicer ``.seg.nrrd`` files (and, when asked, ``<case>_overlay.png`` pictures of the CT with the predicted
labels). The Python function behind ``kidneytumorseg predict``.

    from kidneytumorseg.batch import predict_files
    report = predict_files("case.nii.gz", "out/", model="kits-demo", options=PredictionOptions(quality="fast"))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidneytumorseg.errors import (
    Cancelled,
    InputImageError,
    KidneyTumorSegError,
    MissingInputError,
    OutputPathError,
)
from kidneytumorseg.image_io import dicom_series_in, image_suffix, read_ct, write_image_atomic
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.overlay import save_preview
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg.segmentation_file import SEG_SUFFIX, write_segmentation

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "kits-demo"
LABEL_FORMATS = (".nii.gz", ".nrrd")
CASE_IMAGE_NAMES = ("imaging.nii.gz", "imaging.nrrd", "imaging.mha")
OVERLAY_SUFFIX = "_overlay.png"


@dataclass(frozen=True)
class CaseInput:
    name: str
    path: Path  # an image file or a DICOM folder


@dataclass(frozen=True)
class CaseOutput:
    name: str
    input: Path
    labels: Path
    segmentation: Path
    volumes_ml: dict[str, float]
    seconds: float
    overlay: Path | None = None  # the PNG overlay, when one was asked for


@dataclass
class BatchReport:
    model: str
    outputs: list[CaseOutput] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


def find_inputs(path: str | os.PathLike[str]) -> tuple[list[CaseInput], bool]:
    """The cases to segment and whether ``path`` is a single case (a file or a DICOM series folder).

    A folder of cases holds image files, ``case_XXXXX/imaging.nii.gz`` folders (KiTS layout) or DICOM
    series folders.
    """
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: no such file or folder. Check the input path.")
    if path.is_file():
        return [CaseInput(_stem(path), path)], True
    if dicom_series_in(path):
        return [CaseInput(path.name, path)], True
    cases = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and image_suffix(entry) and not entry.name.endswith(SEG_SUFFIX):
            cases.append(CaseInput(_stem(entry), entry))
        elif entry.is_dir():
            image = next((entry / n for n in CASE_IMAGE_NAMES if (entry / n).is_file()), None)
            if image is not None:
                cases.append(CaseInput(entry.name, image))
            elif dicom_series_in(entry):
                cases.append(CaseInput(entry.name, entry))
    if not cases:
        raise InputImageError(
            f"{path} holds no CT to segment: expected image files (.nii.gz, .nrrd, .mha), case_XXXXX/imaging.nii.gz "
            f"folders, or DICOM series."
        )
    return cases, False


def check_writable(folder: Path) -> None:
    """Fail early, before any computation, when ``folder`` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputPathError(f"cannot create the output folder {folder} ({error.strerror}); choose another path.") \
            from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"the output folder {folder} is not writable; choose another path or fix its permissions."
        )


def _stem(path: Path) -> str:
    return path.name[: -len(image_suffix(path))] if image_suffix(path) else path.stem


def output_paths(case: CaseInput, output: Path, single: bool, label_format: str) -> tuple[Path, Path]:
    """Where a case's label map and .seg.nrrd go: next to each other, named after the case."""
    if label_format not in LABEL_FORMATS:
        raise InputImageError(f"label format must be one of {', '.join(LABEL_FORMATS)}, not {label_format!r}.")
    if single and image_suffix(output) and not output.name.endswith(SEG_SUFFIX):
        base = output.name[: -len(image_suffix(output))]
        return output, output.with_name(base + SEG_SUFFIX)
    return output / f"{case.name}{label_format}", output / f"{case.name}{SEG_SUFFIX}"


def overlay_path(labels_path: Path) -> Path:
    """Where a case's PNG overlay goes: next to its label map, ``<label map name>_overlay.png``."""
    suffix = image_suffix(labels_path)
    base = labels_path.name[: -len(suffix)] if suffix else labels_path.stem
    return labels_path.with_name(base + OVERLAY_SUFFIX)


def overlay_title(case: str, model: str, volumes_ml: dict[str, float]) -> str:
    """The overlay's title: case, model and the volumes in ml."""
    volumes = "  ".join(f"{name} {ml:.1f} ml" for name, ml in volumes_ml.items())
    return f"{case}   {model}   {volumes}"


def predict_files(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model: str = DEFAULT_MODEL,
    options: PredictionOptions | None = None,
    label_format: str = ".nii.gz",
    store: ModelStore | None = None,
    predictor: Predictor | None = None,
    progress: Callable[[str, str, float], None] | None = None,
    cancel: Any = None,
    overlay: bool = False,
    on_case: Callable[[CaseOutput, str], None] | None = None,
) -> BatchReport:
    """Segment every case of ``input_path`` into ``output``. A case that fails is reported by name and the
    others go on; cancelling stops at once (``Cancelled``), and a case is written only when complete.
    With ``overlay``, each case also gets a PNG of the CT with the predicted labels (see ``overlay_path``).
    ``on_case(output, model)`` (``model``: NAME@VERSION) is called as soon as each case is written, so a caller
    can report it before the batch ends (the ``predict`` command's JSON lines do: a cancelled batch has reported
    every finished case)."""
    cases, single = find_inputs(input_path)
    output = Path(output)
    check_writable(output.parent if single and image_suffix(output) else output)
    predictor = predictor or Predictor.from_store(model, options, store)
    report = BatchReport(model=predictor.model_spec)
    for case in cases:
        labels_path, segmentation_path = output_paths(case, output, single, label_format)
        picture = overlay_path(labels_path) if overlay else None
        try:
            image = read_ct(case.path)
            case_progress = (lambda stage, fraction, c=case.name: progress(c, stage, fraction)) if progress else None
            result = predictor.segment(image, progress=case_progress, cancel=cancel, name=str(case.path))
            write_image_atomic(result.labels, labels_path)
            write_segmentation(result.labels, segmentation_path,
                               names={k: v[0] for k, v in predictor.package.labels.items()},
                               colors={k: v[1] for k, v in predictor.package.labels.items()})
            if picture is not None:
                save_preview(image, result.labels, picture,
                             title=overlay_title(case.name, report.model, result.volumes_ml))
        except Cancelled:
            raise
        except (KidneyTumorSegError, OSError) as error:
            if single:
                raise
            report.failures[case.name] = str(error)
            logger.error("%s: %s", case.name, error)
            continue
        report.outputs.append(CaseOutput(case.name, case.path, labels_path, segmentation_path, result.volumes_ml,
                                         round(result.seconds, 2), picture))
        if on_case is not None:
            on_case(report.outputs[-1], report.model)
        logger.info("%s: %s", case.name, ", ".join(f"{k} {v:.1f} ml" for k, v in result.volumes_ml.items()))
    return report
