"""Which cases a comparison trains and tests on: case-id files, the dataset's case folders, and their checks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

CASE_ID = re.compile(r"^case_\d{5}$")
IMAGE_NAME = "imaging.nii.gz"
LABEL_NAME = "segmentation.nii.gz"


def read_case_ids(path: Path, limit: int | None = None) -> list[str]:
    """The case ids in ``path`` (separated by commas and/or whitespace, in file order), the first ``limit``."""
    if not path.is_file():
        raise FileNotFoundError(f"Case-id file {path} does not exist; give a file of case ids such as "
                                f"work_runs/train_pool.txt (case_00000,case_00001,...).")
    ids = [token for token in re.split(r"[,\s]+", path.read_text()) if token]
    bad = [token for token in ids if not CASE_ID.match(token)]
    if bad:
        raise ValueError(f"{path} holds {len(bad)} entries that are not case ids (case_XXXXX): {bad[:3]}; "
                         f"separate ids with commas or new lines.")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path} lists a case twice; keep each case once.")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"the case limit must be at least 1, got {limit}.")
        ids = ids[:limit]
    return ids


def check_split(dataset: Path, train_ids: Sequence[str], test_ids: Sequence[str]) -> None:
    """Raise ValueError when the sets overlap or a case folder lacks its image or reference."""
    overlap = sorted(set(train_ids) & set(test_ids))
    if overlap:
        raise ValueError(f"{len(overlap)} case(s) are both training and test cases ({overlap[:3]}); a held-out "
                         f"score needs disjoint sets. Check the case-id files.")
    if not train_ids or not test_ids:
        raise ValueError("both the training and the test set need at least one case.")
    missing = [f"{dataset / case / name}" for case in [*train_ids, *test_ids] for name in (IMAGE_NAME, LABEL_NAME)
               if not (dataset / case / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) of the selected cases are missing, e.g. {missing[0]}; the "
                                f"dataset must be in KiTS layout (case_XXXXX/{IMAGE_NAME} + {LABEL_NAME}).")


def write_case_ids(ids: Sequence[str], path: Path) -> Path:
    """Write ``ids`` comma-separated (the format of work_runs/*.txt and of --train-cases)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(ids) + "\n")
    return path


def link_cases(dataset: Path, ids: Sequence[str], folder: Path) -> Path:
    """A folder of symbolic links ``folder/<case>`` -> ``dataset/<case>``: just these cases, in KiTS layout."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = set(ids)
    for entry in folder.iterdir():
        if entry.is_symlink() and entry.name not in wanted:
            entry.unlink()
    for case in ids:
        link = folder / case
        target = (dataset / case).resolve()
        if link.is_symlink() and link.resolve() == target:
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return folder
