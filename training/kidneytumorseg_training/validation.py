"""Validate networks on whole cases with the engine's own predictor and KiTS metrics.

Each case is read, re-oriented to LPS, segmented by :func:`kidneytumorseg.predictor_core.predict` (the
networks as ensemble members) and put back on its input grid exactly as ``Predictor.segment`` does; the
labels are then scored against the reference with the engine's metrics and summarised with the engine's
``kidneytumorseg evaluate`` summary (mean Dice and surface Dice per KiTS region).

    result = validate_cases([network], settings, [("case_00001", image_path, label_path)], output_dir)
    write_validation_report(result, run_dir)      # validation.json + validation.csv
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.evaluation import CaseResult, EvaluationSummary, summarize, write_case_csv
from kidneytumorseg.geometry import image_from_lps, to_lps
from kidneytumorseg.image_io import check_same_geometry, read_image, read_label_map, write_image_atomic
from kidneytumorseg.metrics import CaseMetrics, compute_case_metrics, compute_case_metrics_arrays
from kidneytumorseg.postprocessing import PostprocessingSettings
from kidneytumorseg.predictor_core import CascadeSettings, PredictorSettings, predict
from kidneytumorseg.refinement import RefinementSettings, predict_two_stage

logger = logging.getLogger(__name__)

VALIDATION_JSON = "validation.json"
VALIDATION_CSV = "validation.csv"
FORMAT_VERSION = 1

ValidationCase = tuple[str, Path, Path]


@dataclass(frozen=True)
class ValidationResult:
    """Per-case metrics (engine ``CaseResult``), their engine summary, written label maps and timings."""

    cases: tuple[CaseResult, ...]
    summary: EvaluationSummary
    predictions: dict[str, Path] = field(default_factory=dict)
    case_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def evaluate_prediction(
    pred_labels: np.ndarray, ref_labels: np.ndarray, spacing: Sequence[float]
) -> CaseMetrics:
    """KiTS metrics of a predicted label array against a reference on the same grid.

    ``spacing`` is in the arrays' axis order (e.g. ``(si, ap, lr)`` for LPS arrays).
    """
    return compute_case_metrics_arrays(np.asarray(pred_labels), np.asarray(ref_labels), spacing)


def _check_cases(cases: Sequence[ValidationCase]) -> list[tuple[str, Path, Path]]:
    if not cases:
        raise ValueError("validate_cases needs at least one (case_id, image, label) case; none were given.")
    checked, seen = [], set()
    for entry in cases:
        if len(entry) != 3:
            raise ValueError(f"each case must be (case_id, image file, label file), got {entry!r}.")
        case_id, image, label = entry
        if case_id in seen:
            raise ValueError(f"case {case_id} is given twice; validate each case once.")
        seen.add(case_id)
        checked.append((str(case_id), Path(image), Path(label)))
    return checked


def _network_states(networks: Sequence[torch.nn.Module]) -> list[tuple[bool, Any]]:
    return [(network.training, getattr(network, "deep_supervision", None)) for network in networks]


def _restore_states(networks: Sequence[torch.nn.Module], states: Sequence[tuple[bool, Any]]) -> None:
    """Put back the training mode and deep supervision the predictor switched off."""
    for network, (training, deep_supervision) in zip(networks, states, strict=True):
        network.train(training)
        if deep_supervision is not None:
            network.deep_supervision = deep_supervision


def validate_case(
    networks: Sequence[torch.nn.Module],
    settings: PredictorSettings,
    case_id: str,
    image_path: Path,
    label_path: Path,
    output_dir: Path | None = None,
    postprocessing: PostprocessingSettings | None = None,
    localizer: torch.nn.Module | None = None,
    cascade: CascadeSettings | None = None,
    refiners: Sequence[torch.nn.Module] = (),
    refinement: RefinementSettings | None = None,
) -> tuple[CaseResult, Path | None]:
    """Segment one case with the engine predictor and score it; write the labels to ``output_dir`` if given.

    With a ``localizer`` (and its ``cascade`` settings) the networks run only around the kidneys, as the
    engine's default coarse-to-fine mode does. With ``refiners`` and their ``refinement`` settings the case is
    segmented in two stages (:mod:`kidneytumorseg.refinement`), ``networks`` being stage 1."""
    image = read_image(image_path)
    reference = read_label_map(label_path)
    check_same_geometry(image, reference, str(image_path), str(label_path))
    volume, spacing, orientation = to_lps(image)
    volume = volume.astype(np.float32, copy=False)
    if refinement is not None and refiners:
        prediction = predict_two_stage(volume, spacing, list(networks), settings, list(refiners), refinement,
                                       postprocessing, localizer=localizer, cascade=cascade)
    else:
        prediction = predict(volume, spacing, list(networks), settings, postprocessing, localizer=localizer,
                             cascade=cascade)
    labels = image_from_lps(prediction.labels.astype(np.uint8), orientation)
    written = None
    if output_dir is not None:
        written = write_image_atomic(labels, Path(output_dir) / f"{case_id}.nii.gz")
    metrics = compute_case_metrics(labels, reference, prediction_name=f"prediction of {case_id}",
                                   reference_name=str(label_path))
    return CaseResult(case_id, metrics), written


def validate_cases(
    networks: Sequence[torch.nn.Module],
    settings: PredictorSettings,
    cases: Sequence[ValidationCase],
    output_dir: Path | None = None,
    postprocessing: PostprocessingSettings | None = None,
    progress: bool = True,
    localizer: torch.nn.Module | None = None,
    cascade: CascadeSettings | None = None,
    refiners: Sequence[torch.nn.Module] = (),
    refinement: RefinementSettings | None = None,
) -> ValidationResult:
    """Segment and score every ``(case_id, image file, label file)``; return per-case metrics and the summary.

    ``networks`` are averaged as ensemble members; their training mode and deep supervision are restored
    afterwards, so this can run between training epochs. ``postprocessing`` None scores the raw argmax.
    ``progress`` shows a bar when stderr is a terminal (and logs each case either way). ``refiners`` with
    their ``refinement`` settings: a two-stage model (see :func:`validate_case`).
    """
    checked = _check_cases(cases)
    if not networks:
        raise ValueError("validate_cases needs at least one network.")
    started = time.perf_counter()
    results: list[CaseResult] = []
    predictions: dict[str, Path] = {}
    case_seconds: dict[str, float] = {}
    states = _network_states([*networks, *refiners])
    try:
        bar_disabled = None if progress else True
        for case_id, image_path, label_path in tqdm(checked, desc="validate", unit="case", file=sys.stderr,
                                                    disable=bar_disabled):
            case_started = time.perf_counter()
            result, written = validate_case(networks, settings, case_id, image_path, label_path, output_dir,
                                            postprocessing, localizer=localizer, cascade=cascade,
                                            refiners=refiners, refinement=refinement)
            results.append(result)
            if written is not None:
                predictions[case_id] = written
            case_seconds[case_id] = time.perf_counter() - case_started
            logger.info("Validated %s in %.1f s: Dice %s", case_id, case_seconds[case_id],
                        ", ".join(f"{name} {value:.3f}" for name, value in result.metrics.dice.items()))
    finally:
        _restore_states([*networks, *refiners], states)
    summary = summarize(results)
    logger.info("Validation of %d case(s): mean Dice %.4f, mean surface Dice %.4f", summary.case_count,
                summary.mean_dice, summary.mean_surface_dice)
    return ValidationResult(tuple(results), summary, predictions, case_seconds, time.perf_counter() - started)


def json_number(value: float) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return float(value) if math.isfinite(value) else None


def _json_numbers(values: dict[str, float]) -> dict[str, float | None]:
    return {key: json_number(value) for key, value in values.items()}


def validation_to_dict(result: ValidationResult) -> dict[str, Any]:
    """The JSON-safe ``validation.json`` content (NaN and infinite values, e.g. HD95 of a miss, are null)."""
    summary = result.summary
    return {
        "format_version": FORMAT_VERSION,
        "case_count": summary.case_count,
        "mean_dice": json_number(summary.mean_dice),
        "mean_surface_dice": json_number(summary.mean_surface_dice),
        "regions": [
            {key: value if isinstance(value, str) else json_number(value) for key, value in asdict(region).items()}
            for region in summary.regions
        ],
        "missing_cases": list(summary.missing_cases),
        "seconds": round(result.seconds, 3),
        "cases": [
            {
                "case_id": case.case_id,
                "dice": _json_numbers(case.metrics.dice),
                "surface_dice": _json_numbers(case.metrics.surface_dice),
                "hd95_mm": _json_numbers(case.metrics.hd95_mm),
                "volume_pred_ml": _json_numbers(case.metrics.volume_pred_ml),
                "volume_ref_ml": _json_numbers(case.metrics.volume_ref_ml),
                "seconds": round(result.case_seconds[case.case_id], 3) if case.case_id in result.case_seconds else None,
                "prediction": str(result.predictions[case.case_id]) if case.case_id in result.predictions else None,
            }
            for case in result.cases
        ],
    }


def write_validation_report(result: ValidationResult, folder: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``validation.json`` (summary and per-case metrics) and ``validation.csv`` (the engine's per-case
    CSV) into ``folder``, each atomically; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = write_text_atomic(folder / VALIDATION_JSON,
                                  json.dumps(validation_to_dict(result), indent=1, allow_nan=False) + "\n")
    csv_path = write_case_csv(result.cases, folder / VALIDATION_CSV)
    logger.info("Validation report written to %s and %s", json_path, csv_path)
    return json_path, csv_path
