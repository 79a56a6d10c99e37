"""Training time as the sum of the epochs' own times, read from what each trainer leaves behind.

A wall clock around the training command is wrong once a run is resumed (it measures only the last part), and
it counts the time a run stood paused (``kill -STOP`` while a benchmark or CI has the machine). Both trainers
time every epoch (training and validation); a resumed run repeats at most the epoch it was killed in. The
training time of one run is therefore taken as **the number of distinct epochs x their median time**: the same
as their sum for an undisturbed run, and not inflated by an epoch that stood paused. Preprocessing and export
are not in it (for either method).

- our trainer: ``history.json`` in every run folder (a list of ``{"epoch", "seconds", ...}``); a cascade
  recipe has one run per stage, and their times add up.
- nnU-Net v2: its ``training_log_*.txt`` files in the fold folder (one per start), lines ``Epoch N`` followed by
  ``Epoch time: S s``.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

HISTORY_NAME = "history.json"  # kidneytumorseg_training's per-run epoch history
NNUNET_EPOCH = re.compile(r"\bEpoch (\d+)\s*$")
NNUNET_EPOCH_TIME = re.compile(r"\bEpoch time: ([0-9.]+) s\b")


def recipe_training_seconds(run_folder: Path) -> float | None:
    """Training time (:func:`run_seconds`) of every run (``history.json``) under ``run_folder``, added up (a
    cascade's stages); None if there is none."""
    total, found = 0.0, False
    for path in sorted(run_folder.rglob(HISTORY_NAME)) if run_folder.is_dir() else []:
        try:
            history = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(history, list):
            continue
        per_epoch = {entry["epoch"]: float(entry["seconds"]) for entry in history
                     if isinstance(entry, dict) and "epoch" in entry and "seconds" in entry}
        if per_epoch:
            total, found = total + run_seconds(per_epoch), True
    return total if found else None


def run_seconds(per_epoch: dict[int, float]) -> float:
    """One run's training time from ``{epoch: seconds}``: epochs x the median epoch time."""
    return len(per_epoch) * statistics.median(per_epoch.values())


def nnunet_training_seconds(fold_folder: Path) -> float | None:
    """:func:`run_seconds` of nnU-Net's ``Epoch time`` lines, across its logs in start order; None if none.

    An epoch that was interrupted and run again counts once, with the time of its finished run."""
    per_epoch: dict[int, float] = {}
    for path in sorted(fold_folder.glob("training_log_*.txt")) if fold_folder.is_dir() else []:
        epoch = None
        for line in path.read_text(errors="replace").splitlines():
            if (match := NNUNET_EPOCH.search(line.strip())) is not None:
                epoch = int(match.group(1))
            elif (match := NNUNET_EPOCH_TIME.search(line)) is not None and epoch is not None:
                per_epoch[epoch] = float(match.group(1))
    return run_seconds(per_epoch) if per_epoch else None
