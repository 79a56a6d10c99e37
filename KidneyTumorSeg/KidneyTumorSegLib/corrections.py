"""Export a corrected segmentation and its CT as one case of the corrections dataset (DESIGN.md).

    corrections/case_<id>/imaging.nii.gz       the CT, voxel for voxel
    corrections/case_<id>/segmentation.nii.gz  the edited segments as KiTS labels (1 kidney, 2 tumor, 3 cyst)
    corrections/case_<id>/correction.json      model that made the draft, the draft's sha256, time, note

The case is assembled in a hidden folder beside the others and renamed into place in one step, with
``correction.json`` written last, so a reader never sees half a case (the training package skips a case
without it). An earlier export is never replaced unless ``overwrite`` is given.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.case_layout import CORRECTION_RECORD, IMAGE_NAME, LABEL_NAME
from kidneytumorseg.labels import LABEL_NAMES
from KidneyTumorSegLib.segments import DRAFT_SHA256_ATTRIBUTE, MODEL_ATTRIBUTE, labels_on_volume
from KidneyTumorSegLib.volume_nodes import check_ct_volume, volume_to_image

LOGGER = logging.getLogger("KidneyTumorSegLib")

FORMAT_VERSION = 1
_CASE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


class ExportError(RuntimeError):
    """The correction could not be exported; the message says what to do. Nothing was left half-written."""


class CaseExistsError(ExportError):
    """A case with this id was exported before; choose another id or export with overwrite."""


@dataclass
class ExportedCase:
    folder: Path
    case_id: str
    record: dict[str, Any]


def case_folder_name(case_id: str) -> str:
    """``case_<id>`` with the id reduced to letters, digits, ``_ . -`` (safe on every file system)."""
    cleaned = _CASE_ID.sub("_", case_id.strip()).strip("._")
    if cleaned.startswith("case_"):
        cleaned = cleaned[len("case_"):]
    if not cleaned:
        raise ExportError(f"'{case_id}' gives no usable case id; use letters and digits.")
    return f"case_{cleaned}"


def export_correction(volume_node: Any, segmentation_node: Any, corrections_dir: str | os.PathLike[str], *,
                      case_id: str | None = None, note: str = "", overwrite: bool = False) -> ExportedCase:
    """Write the CT and the edited segments of ``segmentation_node`` as ``corrections_dir/case_<id>``.

    ``case_id`` defaults to the volume's name. Raises CaseExistsError when the case exists and ``overwrite``
    is false; ExportError when the disk is full or not writable (the dataset is then as it was)."""
    check_ct_volume(volume_node)
    if segmentation_node is None:
        raise ExportError("No segmentation is selected. Segment the CT first (or select the edited segmentation).")
    root = Path(corrections_dir).expanduser()
    folder_name = case_folder_name(case_id or volume_node.GetName())
    target = root / folder_name
    if target.exists() and not overwrite:
        raise CaseExistsError(f"{target} was exported before. Choose another case id, or export again with "
                              "'overwrite' to replace it.")
    labels, left_out = labels_on_volume(segmentation_node, volume_node)
    if not np.any(labels == 1):
        raise ExportError(f"'{segmentation_node.GetName()}' has no kidney voxels; a correction needs at least the "
                          "kidney segment. Paint it, or export another segmentation.")
    image = volume_to_image(volume_node)
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    record = {
        "format_version": FORMAT_VERSION,
        "case_id": folder_name,
        "model": segmentation_node.GetAttribute(MODEL_ATTRIBUTE),  # None: drawn by hand, not from a model
        "draft_sha256": segmentation_node.GetAttribute(DRAFT_SHA256_ATTRIBUTE),
        "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "note": note,
        "volume_name": volume_node.GetName(),
        "segmentation_name": segmentation_node.GetName(),
        "labels": {str(value): name for value, name in LABEL_NAMES.items()},
        "voxels": {LABEL_NAMES[v]: int(np.count_nonzero(labels == v)) for v in LABEL_NAMES},
        "left_out_segments": left_out,
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder_name}.partial-", dir=root))
    except OSError as error:
        raise ExportError(f"Cannot write to {root} ({error.strerror or error}). Choose a writable corrections "
                          "folder.") from error
    try:
        sitk.WriteImage(image, str(staging / IMAGE_NAME), True)
        sitk.WriteImage(label_image, str(staging / LABEL_NAME), True)
        with open(staging / CORRECTION_RECORD, "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=2)
            stream.flush()
            os.fsync(stream.fileno())
        _move_into_place(staging, target, overwrite)
    except (OSError, RuntimeError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, ExportError):
            raise
        raise ExportError(f"Exporting {folder_name} to {root} failed ({error}); nothing was changed there. Free "
                          "disk space or choose another folder, then export again.") from error
    LOGGER.info("Exported correction %s (%s)", target,
                ", ".join(f"{name} {count} voxels" for name, count in record["voxels"].items()))
    if left_out:
        LOGGER.warning("Segments that are not kidney/tumor/cyst were not exported: %s", ", ".join(left_out))
    return ExportedCase(target, folder_name, record)


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished case into place; an old case (overwrite) is moved aside first, removed after."""
    if not target.exists():
        try:
            staging.rename(target)
            return
        except OSError:
            if not target.exists():
                raise
    if not overwrite:  # another export won the race
        raise CaseExistsError(f"{target} was exported meanwhile; export again with another case id.")
    aside = target.with_name(f".{target.name}.replaced-{os.getpid()}")
    target.rename(aside)
    try:
        staging.rename(target)
    except OSError:
        aside.rename(target)  # put the earlier export back
        raise
    shutil.rmtree(aside, ignore_errors=True)
