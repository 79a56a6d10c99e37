"""Training datasets in: find the cases of a folder (KiTS23, nnU-Net raw or Slicer corrections) and check them.

Layouts (docs/training-contracts.md):

- KiTS23 ``root/case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz`` (synthetic datasets add ``synthetic.json``;
  a synthetic case without it is unfinished and skipped);
- nnU-Net raw ``root/dataset.json``, ``imagesTr/<id>_0000<file_ending>``, ``labelsTr/<id><file_ending>``;
- corrections ``root/case_<id>/imaging.nii.gz``, ``segmentation.nii.gz``, ``correction.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.case_layout import CORRECTION_RECORD, IMAGE_NAME, LABEL_NAME
from kidneytumorseg.errors import KidneyTumorSegError, MissingInputError
from kidneytumorseg.image_io import check_label_map, check_same_geometry, read_image
from kidneytumorseg.labels import KIDNEY

logger = logging.getLogger(__name__)

SYNTHETIC_RECORD = "synthetic.json"
NNUNET_CHANNEL = "_0000"
SOURCES = ("kits", "nnunet", "corrections")
BODY_THRESHOLD_HU = -500.0
CROP_MARGIN = 2

EXPECTED_LAYOUTS = (
    "KiTS23 (case_XXXXX/imaging.nii.gz + segmentation.nii.gz, also synthetic datasets), "
    "nnU-Net raw (dataset.json, imagesTr/<id>_0000.nii.gz, labelsTr/<id>.nii.gz) or "
    "corrections exported by the Slicer module (case_<id>/imaging.nii.gz, segmentation.nii.gz, correction.json)"
)


class DatasetError(KidneyTumorSegError, ValueError):
    """A training dataset or one of its cases cannot be used; the message names the case and the fix."""


@dataclass(frozen=True)
class TrainingCase:
    """One training case: a CT and its label map (0 background, 1 kidney, 2 tumor, 3 cyst)."""

    case_id: str
    image: Path
    label: Path
    source: str  # "kits" | "nnunet" | "corrections"


def find_training_cases(root: str | os.PathLike[str], cases: Sequence[str] | None = None) -> list[TrainingCase]:
    """The cases of ``root`` (or only the named ``cases``), sorted by id; unusable case folders are skipped
    with a warning naming them. Raises DatasetError when ``root`` matches no layout."""
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"{root}: no such folder. Give a dataset folder in one of the layouts "
                                f"{EXPECTED_LAYOUTS}.")
    wanted = None if cases is None else list(dict.fromkeys(cases))
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        found = _nnunet_cases(root, wanted)
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("case_"))
        corrections = any((f / CORRECTION_RECORD).is_file() for f in folders)
        synthetic = any((f / SYNTHETIC_RECORD).is_file() for f in folders)
        if wanted is not None:
            folders = [f for f in folders if f.name in wanted]
        if corrections:
            found = _folder_cases(folders, "corrections", CORRECTION_RECORD, "a half-written export: export it again")
        else:
            record = SYNTHETIC_RECORD if synthetic else None
            found = _folder_cases(folders, "kits", record, "an unfinished synthetic case: re-run build-dataset")
    if wanted is not None:
        missing = [name for name in wanted if name not in {c.case_id for c in found}]
        if missing:
            raise DatasetError(f"case(s) {', '.join(missing)} not found (or skipped, see the warnings) in {root}. "
                               f"Check the case names against the dataset folder.")
    if not found:
        raise DatasetError(f"{root} holds no usable training case. Expected one of the layouts {EXPECTED_LAYOUTS}. "
                           f"A folder of masks only needs images first (kidneytumorseg-train build-dataset).")
    return sorted(found, key=lambda c: c.case_id)


def _folder_cases(folders: list[Path], source: str, record: str | None, unfinished: str) -> list[TrainingCase]:
    """Case folders holding imaging + segmentation (+ ``record`` when given); the others are skipped, warned."""
    found = []
    for folder in folders:
        missing = [name for name in (IMAGE_NAME, LABEL_NAME) if not (folder / name).is_file()]
        if missing:
            logger.warning("skipping %s: %s missing; a %s case needs %s and %s", folder.name, " and ".join(missing),
                           source, IMAGE_NAME, LABEL_NAME)
        elif record is not None and not (folder / record).is_file():
            logger.warning("skipping %s: no %s (%s)", folder.name, record, unfinished)
        else:
            found.append(TrainingCase(folder.name, folder / IMAGE_NAME, folder / LABEL_NAME, source))
    return found


def _nnunet_cases(root: Path, wanted: list[str] | None) -> list[TrainingCase]:
    try:
        description = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"{root / 'dataset.json'} cannot be read as JSON ({error}); repair or re-create "
                           f"it.") from error
    if not isinstance(description, dict):
        raise DatasetError(f"{root / 'dataset.json'} must hold a JSON object (nnU-Net v2 dataset.json).")
    channels = description.get("channel_names", description.get("modality", {"0": "CT"}))
    if isinstance(channels, dict) and len(channels) != 1:
        raise DatasetError(f"{root / 'dataset.json'} lists {len(channels)} input channels {channels}; KidneyTumorSeg "
                           f"trains on a single CT channel: keep channel 0000 only.")
    ending = description.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DatasetError(f"{root / 'dataset.json'}: file_ending must be a suffix such as '.nii.gz', got {ending!r}.")
    labels_dir = root / "labelsTr"
    if not labels_dir.is_dir():
        raise DatasetError(f"{root} is an nnU-Net raw dataset without labelsTr/; add the label maps as "
                           f"labelsTr/<id>{ending}.")
    found = []
    for label in sorted(labels_dir.iterdir()):
        if not label.is_file() or not label.name.endswith(ending) or label.name.startswith("."):
            continue
        case_id = label.name[: -len(ending)]
        if wanted is not None and case_id not in wanted:
            continue
        image = root / "imagesTr" / f"{case_id}{NNUNET_CHANNEL}{ending}"
        if not image.is_file():
            logger.warning("skipping %s: %s missing (nnU-Net raw needs imagesTr/<id>_0000%s for every label map)",
                           case_id, image, ending)
            continue
        found.append(TrainingCase(case_id, image, label, "nnunet"))
    return found


def _fail(case: TrainingCase, problem: str) -> DatasetError:
    return DatasetError(f"Case {case.case_id} ({case.source}, {case.image.parent}): {problem}")


def load_case(case: TrainingCase) -> tuple[sitk.Image, sitk.Image]:
    """Read and check a case's image and label map (see :func:`check_case`); return both."""
    try:
        image = read_image(case.image)
        label = read_image(case.label)
        check_label_map(label, case.label)
        check_same_geometry(image, label, str(case.image), str(case.label))
    except KidneyTumorSegError as error:
        raise _fail(case, f"{error} Fix the file or leave the case out of the dataset.") from error
    values = sitk.GetArrayViewFromImage(image)
    if values.size and np.issubdtype(values.dtype, np.floating) and not np.all(np.isfinite(values)):
        raise _fail(case, f"{case.image} holds NaN or infinite values; re-export the CT or leave the case out.")
    if values.size == 0 or values.min() == values.max():
        raise _fail(case, f"{case.image} is empty (all voxels {values.min() if values.size else 'none'}); "
                          f"re-export the CT or leave the case out of the dataset.")
    if not np.any(sitk.GetArrayViewFromImage(label) == KIDNEY):
        raise _fail(case, f"{case.label} holds no kidney (label {KIDNEY}); a training mask must label the kidneys: "
                          f"fix the segmentation or leave the case out of the dataset.")
    return image, label


def check_case(case: TrainingCase) -> None:
    """Raise DatasetError naming the case unless its image and mask are readable 3D volumes on one grid, the
    mask holds only labels 0..3 and some kidney, and the image is not constant."""
    load_case(case)


def body_box(image: np.ndarray, label: np.ndarray, threshold: float = BODY_THRESHOLD_HU,
             margin: int = CROP_MARGIN) -> list[list[int]]:
    """``[[start, stop]] x 3`` of the voxels above ``threshold`` HU united with the mask's foreground, plus
    ``margin`` voxels, within the array."""
    boxes = [_bounding_box(label > 0), _bounding_box(image > threshold)]
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return [[0, int(n)] for n in image.shape]
    return [[max(0, min(b[axis][0] for b in boxes) - margin), min(int(image.shape[axis]),
             max(b[axis][1] for b in boxes) + margin)] for axis in range(image.ndim)]


def _bounding_box(mask: np.ndarray) -> list[list[int]] | None:
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if present.size == 0:
            return None
        box.append([int(present[0]), int(present[-1]) + 1])
    return box
