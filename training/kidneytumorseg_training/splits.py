"""Cross-validation folds and hold-out splits of case ids, deterministic and saved as JSON.

The file format is nnU-Net's ``splits_final.json``: a list with one ``{"train": [...], "val": [...]}``
object per fold, ids sorted. Every case is in the validation list of exactly one fold.

    splits = make_folds(case_ids, num_folds=5, seed=0)
    save_splits(splits, run_dir / "splits.json")
    train_ids, val_ids = fold_split(load_splits(run_dir / "splits.json"), fold=0)
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kidneytumorseg.atomic import write_text_atomic

logger = logging.getLogger(__name__)

Split = dict[str, list[str]]


class SplitError(ValueError):
    """Case ids cannot be split as asked, or a splits file is malformed."""


def _unique_ids(case_ids: Sequence[str], what: str) -> list[str]:
    """The ids sorted, refusing repeats and non-strings."""
    ids = list(case_ids)
    bad = [case for case in ids if not isinstance(case, str) or not case]
    if bad:
        raise SplitError(f"{what}: case ids must be non-empty strings, got {bad[:5]!r}.")
    repeated = sorted(case for case, count in Counter(ids).items() if count > 1)
    if repeated:
        raise SplitError(f"{what}: case ids repeat: {', '.join(repeated[:10])}. Give each case once.")
    return sorted(ids)


def _shuffled(ids: Sequence[str], seed: int) -> list[str]:
    """``ids`` (already sorted) in an order that depends only on their set and ``seed``."""
    order = list(ids)
    random.Random(seed).shuffle(order)
    return order


def make_folds(case_ids: Sequence[str], num_folds: int = 5, seed: int = 0) -> list[Split]:
    """Split ``case_ids`` into ``num_folds`` folds; each case is in exactly one fold's ``val`` list.

    Deterministic for a given set of ids and ``seed`` (the input order does not matter); fold sizes differ
    by at most one case.
    """
    ids = _unique_ids(case_ids, "make_folds")
    if isinstance(num_folds, bool) or not isinstance(num_folds, int) or num_folds < 2:
        raise SplitError(f"num_folds must be a whole number >= 2, got {num_folds!r}; for a single split use "
                         f"holdout_split.")
    if len(ids) < num_folds:
        raise SplitError(f"{len(ids)} case(s) cannot fill {num_folds} folds (each needs a validation case); "
                         f"use at most {len(ids)} folds or add cases.")
    order = _shuffled(ids, seed)
    splits = []
    for fold in range(num_folds):
        val = set(order[fold::num_folds])
        splits.append({"train": [case for case in ids if case not in val], "val": sorted(val)})
    logger.debug("Made %d folds of %d cases (seed %d).", num_folds, len(ids), seed)
    return splits


def validate_splits(splits: Any, source: str = "splits") -> list[Split]:
    """Check ``splits`` (a list of ``{"train": [...], "val": [...]}``) and return a clean, sorted copy.

    Raises SplitError naming the fold when one is malformed, a case repeats within a fold, a case is both in
    ``train`` and ``val`` of a fold, or a case is in the ``val`` list of more than one fold.
    """
    if not isinstance(splits, list) or not splits:
        raise SplitError(f"{source}: expected a non-empty list of {{'train': [...], 'val': [...]}} folds, "
                         f"got {type(splits).__name__}. Re-create it with make_folds.")
    clean: list[Split] = []
    val_fold: dict[str, int] = {}
    for index, fold in enumerate(splits):
        where = f"{source}, fold {index}"
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            keys = sorted(fold) if isinstance(fold, dict) else type(fold).__name__
            raise SplitError(f"{where}: expected exactly the keys 'train' and 'val', got {keys}.")
        for key in ("train", "val"):
            if not isinstance(fold[key], list):
                raise SplitError(f"{where}: '{key}' must be a list of case ids, got {type(fold[key]).__name__}.")
        train = _unique_ids(fold["train"], f"{where} 'train'")
        val = _unique_ids(fold["val"], f"{where} 'val'")
        if not val:
            raise SplitError(f"{where}: 'val' is empty; every fold needs at least one validation case.")
        both = sorted(set(train) & set(val))
        if both:
            raise SplitError(f"{where}: case(s) {', '.join(both[:10])} are in both 'train' and 'val'; "
                             f"a case must be in one of them only.")
        for case in val:
            if case in val_fold:
                raise SplitError(f"{where}: case {case} is already a validation case of fold {val_fold[case]}; "
                                 f"each case may be validated in one fold only.")
            val_fold[case] = index
        clean.append({"train": train, "val": val})
    return clean


def save_splits(splits: Sequence[Split], path: str | os.PathLike[str]) -> Path:
    """Validate ``splits`` and write them to ``path`` as JSON (atomically)."""
    clean = validate_splits(list(splits), str(path))
    return write_text_atomic(path, json.dumps(clean, indent=1) + "\n")


def load_splits(path: str | os.PathLike[str]) -> list[Split]:
    """Read and validate a splits JSON file written by :func:`save_splits` (or nnU-Net's splits_final.json)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such splits file; create it with make_folds and save_splits.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SplitError(f"{path} is not valid JSON ({error}); delete it and re-create the splits.") from error
    return validate_splits(data, str(path))


def fold_split(splits: Sequence[Split], fold: int) -> tuple[list[str], list[str]]:
    """The ``(train, val)`` case ids of fold ``fold`` (0-based)."""
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < len(splits):
        raise SplitError(f"fold must be a whole number from 0 to {len(splits) - 1} (the splits have "
                         f"{len(splits)} folds), got {fold!r}.")
    return list(splits[fold]["train"]), list(splits[fold]["val"])


def holdout_split(case_ids: Sequence[str], fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split ``case_ids`` into ``(train, holdout)``, about ``fraction`` of them held out, both sorted.

    Deterministic for a given set of ids and ``seed``. With at least 2 cases each side gets at least one.
    """
    ids = _unique_ids(case_ids, "holdout_split")
    if len(ids) < 2:
        raise SplitError(f"holdout_split needs at least 2 cases (one to train on, one to hold out), got "
                         f"{len(ids)}; add cases or train without a hold-out.")
    if not 0.0 < float(fraction) < 1.0:
        raise SplitError(f"fraction must be between 0 and 1 (exclusive), got {fraction!r}; 0.2 is usual.")
    count = min(max(int(round(len(ids) * float(fraction))), 1), len(ids) - 1)
    held = set(_shuffled(ids, seed)[:count])
    return [case for case in ids if case not in held], sorted(held)
