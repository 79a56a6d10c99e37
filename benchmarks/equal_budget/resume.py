"""Resuming a recipe's test-set prediction after the process was killed.

`kidneytumorseg predict --progress json` reports each case (with its seconds) as soon as it is written, and the
table's runner appends that output to the recipe's log. A rerun keeps the cases an earlier run finished, when
their label maps are on disk and were predicted with the same weights (the package members' SHA-256, written
to ``PREDICTIONS/.weights`` before predicting), and predicts only the others. A slow recipe (the two-stage
cascade predicts for minutes per case on a CPU) then finishes across several sessions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from equal_budget.recipes import predict_seconds
from kidneytumorseg.model_package import ModelPackage

logger = logging.getLogger(__name__)

WEIGHTS_FILE = ".weights"
LABEL_SUFFIX = ".nii.gz"  # the predict command's default label format


def weights_fingerprint(package_folder: Path) -> str:
    """The members' SHA-256, sorted and comma-joined: equal exactly when the package has the same weights."""
    return ",".join(sorted(member.sha256 for member in ModelPackage.load(package_folder).members))


def finished_cases(log_text: str, predictions: Path, fingerprint: str) -> dict[str, float]:
    """``{case: seconds}`` of the cases an earlier predict run (its JSON lines in ``log_text``) wrote into
    ``predictions`` with the weights ``fingerprint``; empty when the folder's weights differ or are unknown."""
    marker = predictions / WEIGHTS_FILE
    if not marker.is_file() or marker.read_text().strip() != fingerprint:
        return {}
    return {case: seconds for case, seconds in predict_seconds(log_text).items()
            if (predictions / f"{case}{LABEL_SUFFIX}").is_file()}


def mark_weights(predictions: Path, fingerprint: str) -> None:
    """Record which weights the predictions in ``predictions`` come from (before predicting into it).

    When the folder held other (or unrecorded) weights, their label maps are removed first: otherwise a run with
    the new weights killed early would leave old files that the new marker vouches for."""
    marker = predictions / WEIGHTS_FILE
    if marker.is_file() and marker.read_text().strip() == fingerprint:
        return
    if predictions.is_dir():
        for stale in [*predictions.glob(f"*{LABEL_SUFFIX}"), *predictions.glob("*.seg.nrrd")]:
            stale.unlink()
    predictions.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n")


def remaining_cases(test_ids: Sequence[str], finished: dict[str, float]) -> list[str]:
    """The test cases still to predict, in their order."""
    return [case for case in test_ids if case not in finished]
