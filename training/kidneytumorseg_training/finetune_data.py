"""What a fine-tune trains on: the corrected cases of a corrections export, and replayed original cases.

- :func:`usable_corrections`: the checked cases of a corrections folder, the skipped ones named with why.
- :func:`usable_check_cases`: the user's earlier cases, scored before and after to show what a fine-tune costs.
- :func:`add_replay`: original training data mixed in so the network does not forget, its ids prefixed
  ``replay_``; a preprocessed folder is linked, a dataset folder preprocessed. :func:`replay_subset` draws how
  many of them join (patches are drawn from the cases uniformly, so the share of corrections is set by counts).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.datasets import (
    CORRECTION_RECORD,
    DatasetError,
    TrainingCase,
    check_case,
    find_training_cases,
)
from kidneytumorseg_training.planning import load_plans
from kidneytumorseg_training.preprocessing import case_files, is_case_complete, preprocess_dataset
from kidneytumorseg_training.sampling import complete_case_ids

logger = logging.getLogger("kidneytumorseg_training.finetune")  # one log name for everything a fine-tune says

REPLAY_PREFIX = "replay_"
MIN_CASES = 2


class FinetuneError(KidneyTumorSegError, ValueError):
    """Fine-tuning cannot run as asked; the message says what to change."""


def _checked(folder: Path, found: Sequence[TrainingCase], what: str, incomplete: str
             ) -> tuple[list[TrainingCase], dict[str, str]]:
    """The cases ``found`` in ``folder`` that :func:`check_case` accepts, and the skipped ones (case id -> why):
    each rejected case, logged, and each ``case_*`` folder that ``find_training_cases`` left out (``incomplete``)."""
    names = {case.case_id for case in found}
    skipped = {p.name: incomplete for p in sorted(folder.iterdir())
               if p.is_dir() and p.name.startswith("case_") and p.name not in names}
    usable = []
    for case in found:
        try:
            check_case(case)
        except DatasetError as error:
            logger.warning("skipping the %s %s: %s", what, case.case_id, error)
            skipped[case.case_id] = str(error)
        else:
            usable.append(case)
    return usable, skipped


def usable_corrections(corrections: Path) -> tuple[list[TrainingCase], dict[str, str]]:
    """The checked corrected cases of ``corrections`` and the skipped ones (case id -> why), each named in the log.
    FinetuneError unless the folder is a corrections export with at least 2 usable cases."""
    need = (f"Fine-tuning needs at least {MIN_CASES} usable corrected cases (one to train on, one to check the "
            f"result on): export more corrections from the Slicer module into {corrections}.")
    try:
        found = find_training_cases(corrections)
    except DatasetError as error:
        raise FinetuneError(f"{error} {need}") from error
    if any(case.source != "corrections" for case in found):
        raise FinetuneError(f"{corrections} is not a corrections export: no case_<id> folder holds "
                            f"{CORRECTION_RECORD} (half-written exports lack it). {need} Give other training data "
                            f"as --replay.")
    usable, skipped = _checked(corrections, found, "correction",
                               f"incomplete export (no {CORRECTION_RECORD}, imaging or segmentation): export it again")
    if len(usable) < MIN_CASES:
        bad = f" Skipped: {', '.join(sorted(skipped))}." if skipped else ""
        raise FinetuneError(f"{corrections} holds {len(usable)} usable corrected case(s).{bad} {need}")
    return usable, skipped


def usable_check_cases(folder: Path, exclude: Sequence[str] = ()) -> tuple[list[TrainingCase], dict[str, str]]:
    """The checked cases of ``folder`` (any layout ``find_training_cases`` reads: the user's earlier cases, scored
    by the parent and the new version to show what a fine-tune costs them) and the skipped ones (case id -> why).
    Cases whose ids are in ``exclude`` (the corrections) are scored but named in a warning. FinetuneError unless at
    least one case is usable."""
    try:
        found = find_training_cases(folder)
    except DatasetError as error:
        raise FinetuneError(f"The check cases: {error} Give --check-cases a dataset folder (KiTS or nnU-Net "
                            f"layout) of cases with reference masks that the model segmented before.") from error
    usable, skipped = _checked(folder, found, "check case",
                               "no imaging or segmentation file: complete the case or remove its folder")
    if not usable:
        raise FinetuneError(f"{folder} holds no usable check case (skipped: {', '.join(sorted(skipped))}); fix "
                            f"those cases or give another --check-cases folder.")
    seen = sorted({case.case_id for case in usable} & set(exclude))
    if seen:
        logger.warning("check case(s) %s are also corrections; their scores after fine-tuning flatter the new "
                       "version. Check on cases the fine-tune does not see.", ", ".join(seen))
    return usable, skipped


def replayed_check_cases(check_ids: Sequence[str], replay_ids: Sequence[str]) -> list[str]:
    """The check cases that the fine-tune also trained on as replayed cases (named in a warning): their scores
    after fine-tuning say less about what the fine-tune costs unseen cases."""
    replayed = {i[len(REPLAY_PREFIX):] if i.startswith(REPLAY_PREFIX) else i for i in replay_ids}
    seen = sorted(set(check_ids) & replayed)
    if seen:
        logger.warning("check case(s) %s are also among the replayed cases the fine-tune trains on; their scores "
                       "flatter the new version. Check on cases that are not in the --replay data.", ", ".join(seen))
    return seen


def replay_subset(replay_ids: Sequence[str], corrections: int, ratio: float, seed: int) -> list[str]:
    """``round(corrections * ratio)`` of the replay cases (all when there are fewer), drawn with ``seed``.

    Patches are drawn from the training cases uniformly, so with 8 corrections beside 240 replayed cases the
    corrections would make 3 % of what the network sees; ratio 1 makes them half."""
    wanted = max(1, round(corrections * ratio))
    if wanted >= len(replay_ids):
        return list(replay_ids)
    chosen = np.random.default_rng(seed).choice(len(replay_ids), size=wanted, replace=False)
    return sorted(replay_ids[i] for i in chosen)


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        target.symlink_to(source.resolve())
    except OSError:  # no symlinks (Windows without the privilege): copy instead
        shutil.copy2(source, target)


def same_setting(a: Any, b: Any, rel_tol: float = 1e-6) -> bool:
    """Two preprocessing settings (JSON values) are the same, numbers within ``rel_tol``.

    Intensity statistics recomputed from the same cases differ in their last digits (summation order, the number
    of worker processes), far below anything that changes a normalised image."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rel_tol)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_setting(a[k], b[k], rel_tol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_setting(x, y, rel_tol) for x, y in zip(a, b, strict=True))
    return a == b


def add_replay(replay: Path, plans: Mapping[str, Any], folder: Path, corrections: int | None = None,
               ratio: float = 1.0, seed: int = 0) -> list[str]:
    """Put the replay cases into the preprocessed ``folder`` with ids prefixed ``replay_``; return their ids.

    ``replay`` is a preprocessed folder (its files are linked, its plan must match the package's spacing and
    normalisation) or a dataset folder in any layout ``find_training_cases`` reads (preprocessed here). With
    ``corrections``, only :func:`replay_subset`'s cases are linked or preprocessed."""
    def chosen(ids: Sequence[str]) -> set[str]:
        named = sorted(REPLAY_PREFIX + i for i in ids)
        return set(named if corrections is None else replay_subset(named, corrections, ratio, seed))

    if not (replay / "plans.json").is_file():
        found = find_training_cases(replay)
        keep = chosen([c.case_id for c in found])
        cases = [TrainingCase(REPLAY_PREFIX + c.case_id, c.image, c.label, c.source)
                 for c in found if REPLAY_PREFIX + c.case_id in keep]
        report = preprocess_dataset(cases, plans, folder, jobs=1, progress=False, on_error="skip")
        return sorted(report.done + report.reused)
    theirs = load_plans(replay)
    differ = [key for key in ("target_spacing", "normalization", "image_interpolation")
              if not same_setting(theirs[key], plans[key])]
    if differ:
        raise FinetuneError(
            f"{replay} was preprocessed with other {', '.join(differ)} than the package uses "
            f"({', '.join(f'{k} {theirs[k]} instead of {plans[k]}' for k in differ)}). Replay data must be "
            f"preprocessed as the package expects: give the raw dataset folder as --replay instead.")
    available = complete_case_ids(replay)
    keep = chosen(available)
    ids = []
    folder.mkdir(parents=True, exist_ok=True)
    for case_id in available:
        new_id = REPLAY_PREFIX + case_id
        if new_id not in keep:
            continue
        ids.append(new_id)
        if is_case_complete(folder, new_id):
            continue
        source, target = case_files(replay, case_id), case_files(folder, new_id)
        for key in ("image", "label", "locations"):
            _link_or_copy(source[key], target[key])
        record = json.loads(source["record"].read_text(encoding="utf-8"))
        record.update(case_id=new_id, replayed_from=str(source["record"].resolve()))
        write_text_atomic(target["record"], json.dumps(record, indent=2))  # last: marks the case complete
    if not ids:
        raise FinetuneError(f"{replay} holds no complete preprocessed case to replay; preprocess it first.")
    return ids
