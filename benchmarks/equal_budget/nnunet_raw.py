"""KiTS-layout cases -> an nnU-Net v2 raw dataset (imagesTr, labelsTr, imagesTs, dataset.json).

The labels are the plain KiTS labels background 0, kidney 1, tumor 2, cyst 3, trained with softmax like our
3-class models. nnU-Net's own KiTS23 conversion trains the challenge's overlapping regions instead
(kidney_and_mass, mass, tumor, sigmoid outputs); plain labels keep the peer's output the same kind as ours.
The images and labels are symbolic links to the dataset's files (nnU-Net reads through them), so converting
costs no disk space and nothing is copied.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from equal_budget.cases import IMAGE_NAME, LABEL_NAME

LABELS = {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3}
FILE_ENDING = ".nii.gz"
CHANNEL_SUFFIX = "_0000"  # nnU-Net's channel index: one CT channel


@dataclass(frozen=True)
class RawDataset:
    """Where a converted dataset lies and what it holds."""

    folder: Path
    dataset_id: int
    name: str
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]

    @property
    def folder_name(self) -> str:
        return self.folder.name

    def test_image(self, case: str) -> Path:
        return self.folder / "imagesTs" / f"{case}{CHANNEL_SUFFIX}{FILE_ENDING}"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's ``DatasetXXX_Name`` (a three-digit id, then a name of letters, digits and underscores)."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids have three digits (1..999), got {dataset_id}.")
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"dataset name {name!r} must be letters, digits and underscores.")
    return f"Dataset{dataset_id:03d}_{name}"


def dataset_json(train_count: int, description: str) -> dict:
    """nnU-Net v2's dataset.json: one CT channel (its CT normalization), the plain KiTS labels."""
    return {
        "channel_names": {"0": "CT"},
        "labels": dict(LABELS),
        "numTraining": train_count,
        "file_ending": FILE_ENDING,
        "description": description,
    }


def _link(target: Path, link: Path) -> None:
    target = target.resolve()
    if link.is_symlink() and link.resolve() == target:
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _clear_stale(folder: Path, keep: set[str]) -> None:
    for entry in folder.iterdir():
        if entry.name not in keep:
            entry.unlink()


def write_raw_dataset(dataset: Path, raw_root: Path, dataset_id: int, name: str, train_ids: Sequence[str],
                      test_ids: Sequence[str], description: str = "") -> RawDataset:
    """Convert (link) ``train_ids`` to imagesTr/labelsTr and ``test_ids`` to imagesTs under ``raw_root``.

    Rerunning with other cases leaves exactly the new selection: links of cases no longer selected are removed.
    """
    folder = raw_root / dataset_folder_name(dataset_id, name)
    parts = {"imagesTr": [], "labelsTr": [], "imagesTs": []}
    for case in train_ids:
        parts["imagesTr"].append((dataset / case / IMAGE_NAME, f"{case}{CHANNEL_SUFFIX}{FILE_ENDING}"))
        parts["labelsTr"].append((dataset / case / LABEL_NAME, f"{case}{FILE_ENDING}"))
    for case in test_ids:
        parts["imagesTs"].append((dataset / case / IMAGE_NAME, f"{case}{CHANNEL_SUFFIX}{FILE_ENDING}"))
    for part, entries in parts.items():
        (folder / part).mkdir(parents=True, exist_ok=True)
        _clear_stale(folder / part, {file_name for _, file_name in entries})
        for source, file_name in entries:
            if not source.is_file():
                raise FileNotFoundError(f"{source} does not exist; the dataset must be in KiTS layout "
                                        f"(case_XXXXX/{IMAGE_NAME} + {LABEL_NAME}).")
            _link(source, folder / part / file_name)
    text = json.dumps(dataset_json(len(train_ids), description or f"KiTS-layout cases of {dataset}"), indent=2)
    (folder / "dataset.json").write_text(text + "\n")
    return RawDataset(folder, dataset_id, name, tuple(train_ids), tuple(test_ids))
