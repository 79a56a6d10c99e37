"""Held-out predictions scored with our KiTS metrics (kidneytumorseg.evaluation), as a JSON-ready dict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from equal_budget.cases import LABEL_NAME
from kidneytumorseg.evaluation import CasePair, evaluate_case, summarize

PREDICTION_SUFFIX = ".nii.gz"


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def score_predictions(predictions: Path, dataset: Path, case_ids: Sequence[str]) -> dict[str, Any]:
    """Dice and surface Dice per KiTS region (mean over cases), their means, and the per-case values.

    ``predictions`` holds ``<case>.nii.gz`` label maps on the reference grids (other files, such as the
    .seg.nrrd that `kidneytumorseg predict` writes beside them, are ignored); references are
    ``dataset/<case>/segmentation.nii.gz``. A missing prediction is an error, never a silently smaller average.
    """
    missing = [case for case in case_ids if not (predictions / f"{case}{PREDICTION_SUFFIX}").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} test case(s) have no prediction in {predictions}, e.g. "
                                f"{missing[0]}{PREDICTION_SUFFIX}; run the prediction step again.")
    results = [evaluate_case(CasePair(case, predictions / f"{case}{PREDICTION_SUFFIX}", dataset / case / LABEL_NAME))
               for case in case_ids]
    summary = summarize(results)
    return {
        "cases": len(results),
        "dice": {region.region: region.dice_mean for region in summary.regions},
        "surface_dice": {region.region: region.surface_dice_mean for region in summary.regions},
        "hd95_mm_median": {region.region: _finite(region.hd95_median) for region in summary.regions},
        "mean_dice": summary.mean_dice,
        "mean_surface_dice": summary.mean_surface_dice,
        "per_case": [{"case": r.case_id, "dice": dict(r.metrics.dice), "surface_dice": dict(r.metrics.surface_dice)}
                     for r in results],
    }
