"""Evaluate a folder of predicted label maps against a folder of KiTS reference segmentations.

Predictions may be named ``case_XXXXX.nii.gz`` (KiTS submission style), ``case_XXXXX/segmentation.nii.gz``
or ``case_XXXXX/prediction.nii.gz``, also as .nrrd / .mha. References are in KiTS layout
(``case_XXXXX/segmentation.nii.gz``) or flat (``case_XXXXX.nii.gz``). Unlike the KiTS reference code, which
only warns, a prediction that is not on its reference's voxel grid is refused.
"""

from __future__ import annotations

import concurrent.futures
import csv
import logging
import math
import multiprocessing
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from kidneytumorseg.atomic import atomic_path
from kidneytumorseg.errors import InputImageError, MissingInputError
from kidneytumorseg.image_io import image_suffix, read_label_map
from kidneytumorseg.labels import KITS_REGIONS, LABEL_NAMES

if TYPE_CHECKING:
    from kidneytumorseg.metrics import CaseMetrics

LOGGER = logging.getLogger(__name__)

PREDICTION_FILE_STEMS: tuple[str, ...] = ("segmentation", "prediction")
REFERENCE_FILE_STEMS: tuple[str, ...] = ("segmentation",)
DEFAULT_CSV_NAME = "evaluation.csv"

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class CasePair:
    """A case to evaluate: its id, its prediction file and its reference file."""

    case_id: str
    prediction: Path
    reference: Path


@dataclass(frozen=True)
class CaseResult:
    case_id: str
    metrics: CaseMetrics


@dataclass(frozen=True)
class RegionSummary:
    """Mean and median over the evaluated cases of one region's metrics (HD95 mean is inf if any case is)."""

    region: str
    dice_mean: float
    dice_median: float
    surface_dice_mean: float
    surface_dice_median: float
    hd95_mean: float
    hd95_median: float


@dataclass(frozen=True)
class EvaluationSummary:
    """Per-region summaries, the KiTS ranking averages and the reference cases that had no prediction.

    ``mean_dice`` and ``mean_surface_dice`` are KiTS's ranking quantities: the mean over the three regions
    of the per-region means. Missing cases are not in any average; they are listed in ``missing_cases``.
    """

    regions: tuple[RegionSummary, ...]
    mean_dice: float
    mean_surface_dice: float
    case_count: int
    missing_cases: tuple[str, ...]


@dataclass(frozen=True)
class EvaluationResult:
    cases: tuple[CaseResult, ...]
    summary: EvaluationSummary
    csv_path: Path | None


def _case_files(folder: Path, file_stems: Sequence[str], what: str) -> dict[str, Path]:
    """Map case id -> image file for flat ``<case>.<suffix>`` files and ``<case>/<stem>.<suffix>`` folders."""
    if not folder.exists():
        raise MissingInputError(f"The {what} folder {folder} does not exist. Check the path.")
    if not folder.is_dir():
        raise InputImageError(f"{folder} is a file; give the {what} folder (holding case_XXXXX files or folders).")
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):  # hidden files, including half-written temporary images
            continue
        if entry.is_file() and image_suffix(entry):
            found.setdefault(entry.name[: -len(image_suffix(entry))], []).append(entry)
        elif entry.is_dir():
            inside = [
                child
                for child in sorted(entry.iterdir())
                if child.is_file() and image_suffix(child) and child.name[: -len(image_suffix(child))] in file_stems
            ]
            if inside:
                found.setdefault(entry.name, []).extend(inside)
    ambiguous = {case: files for case, files in found.items() if len(files) > 1}
    if ambiguous:
        case, files = next(iter(sorted(ambiguous.items())))
        raise InputImageError(
            f"The {what} folder {folder} has {len(files)} files for {case}: {', '.join(str(f) for f in files)}. "
            f"Keep exactly one per case."
        )
    return {case: files[0] for case, files in sorted(found.items())}


def find_case_pairs(
    prediction_dir: str | os.PathLike[str], reference_dir: str | os.PathLike[str]
) -> tuple[list[CasePair], list[str]]:
    """Match predictions to references by case id; return the pairs and the reference cases lacking one.

    Raises MissingInputError when there is no prediction at all or a prediction has no reference.
    """
    prediction_dir, reference_dir = Path(prediction_dir), Path(reference_dir)
    predictions = _case_files(prediction_dir, PREDICTION_FILE_STEMS, "prediction")
    if not predictions:
        raise MissingInputError(
            f"No predictions found in {prediction_dir}. Expected case_XXXXX.nii.gz files or case_XXXXX/ "
            f"folders holding segmentation.nii.gz or prediction.nii.gz (.nrrd and .mha work too)."
        )
    references = _case_files(reference_dir, REFERENCE_FILE_STEMS, "reference")
    unmatched = [case for case in predictions if case not in references]
    if unmatched:
        shown = ", ".join(str(predictions[case]) for case in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        raise MissingInputError(
            f"No reference in {reference_dir} for {len(unmatched)} prediction(s): {shown}{more}. Expected "
            f"<reference folder>/<case>/segmentation.nii.gz (KiTS layout) or "
            f"<reference folder>/<case>.nii.gz; check the reference folder or remove predictions of cases "
            f"without a reference."
        )
    missing = [case for case in references if case not in predictions]
    pairs = [CasePair(case, predictions[case], references[case]) for case in predictions]
    return pairs, missing


def evaluate_case(pair: CasePair) -> CaseResult:
    """Read one case's prediction and reference (validated label maps) and compute its KiTS metrics."""
    # Imported here: metrics pulls in torch and MONAI (seconds), which input errors should not wait for.
    from kidneytumorseg.metrics import compute_case_metrics

    metrics = compute_case_metrics(
        read_label_map(pair.prediction),
        read_label_map(pair.reference),
        prediction_name=str(pair.prediction),
        reference_name=str(pair.reference),
    )
    return CaseResult(pair.case_id, metrics)


def _limit_worker_threads() -> None:
    """One thread per worker: the pool gives the parallelism, torch threads would only oversubscribe."""
    import torch

    torch.set_num_threads(1)


def _run_cases(pairs: Sequence[CasePair], jobs: int, report_done: Callable[[], None]) -> list[CaseResult]:
    if jobs <= 1 or len(pairs) <= 1:
        results = []
        for pair in pairs:
            results.append(evaluate_case(pair))
            report_done()
        return results
    # "spawn": fresh interpreters, safe with torch's thread pools (fork after they started can hang).
    context = multiprocessing.get_context("spawn")
    index_of_future: dict[concurrent.futures.Future[CaseResult], int] = {}
    ordered: list[CaseResult | None] = [None] * len(pairs)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(jobs, len(pairs)), mp_context=context, initializer=_limit_worker_threads
    ) as pool:
        try:
            for index, pair in enumerate(pairs):
                index_of_future[pool.submit(evaluate_case, pair)] = index
            for future in concurrent.futures.as_completed(index_of_future):
                ordered[index_of_future[future]] = future.result()
                report_done()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [result for result in ordered if result is not None]


def evaluate_folder(
    prediction_dir: str | os.PathLike[str],
    reference_dir: str | os.PathLike[str],
    csv_path: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    progress: ProgressCallback | None = None,
    show_progress_bar: bool = True,
) -> EvaluationResult:
    """Evaluate every prediction in ``prediction_dir`` against its reference in ``reference_dir``.

    Writes the per-case CSV to ``csv_path`` (atomically) when given. ``jobs`` > 1 evaluates cases in that
    many processes; results are always in case order. ``progress`` is called with the fraction done after
    each case. Reference cases without a prediction are logged as a warning and listed in the summary.
    """
    if jobs < 1:
        raise InputImageError(f"jobs must be at least 1, got {jobs}.")
    pairs, missing = find_case_pairs(prediction_dir, reference_dir)
    if missing:
        LOGGER.warning(
            "%d reference case(s) have no prediction and are not evaluated: %s",
            len(missing),
            ", ".join(missing),
        )
    LOGGER.info("Evaluating %d case(s) from %s against %s", len(pairs), prediction_dir, reference_dir)
    done = 0
    # disable=None: tqdm shows the bar only when stderr is a terminal.
    bar_disabled = None if show_progress_bar else True
    with tqdm(total=len(pairs), desc="evaluate", unit="case", file=sys.stderr, disable=bar_disabled) as bar:

        def report_done() -> None:
            nonlocal done
            done += 1
            bar.update(1)
            if progress is not None:
                progress(done / len(pairs))

        results = _run_cases(pairs, jobs, report_done)
    written = write_case_csv(results, csv_path) if csv_path is not None else None
    if written is not None:
        LOGGER.info("Per-case metrics written to %s", written)
    return EvaluationResult(tuple(results), summarize(results, missing), written)


def csv_columns() -> list[str]:
    """The per-case CSV columns: case, per-region Dice / surface Dice / HD95 (mm), volumes (ml) per label."""
    columns = ["case"]
    for region in KITS_REGIONS:
        columns += [f"dice_{region.name}", f"surface_dice_{region.name}", f"hd95_{region.name}"]
    for name in LABEL_NAMES.values():
        columns += [f"volume_pred_ml_{name}", f"volume_ref_ml_{name}"]
    return columns


def _csv_row(result: CaseResult) -> list[str | float]:
    metrics = result.metrics
    row: list[str | float] = [result.case_id]
    for region in KITS_REGIONS:
        row += [metrics.dice[region.name], metrics.surface_dice[region.name], metrics.hd95_mm[region.name]]
    for name in LABEL_NAMES.values():
        row += [metrics.volume_pred_ml[name], metrics.volume_ref_ml[name]]
    return row


def write_case_csv(results: Sequence[CaseResult], path: str | os.PathLike[str]) -> Path:
    """Write one row per case (columns of :func:`csv_columns`) atomically: temporary file, then rename."""
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(csv_columns())
        writer.writerows(_csv_row(result) for result in results)
    return path


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summarize(results: Sequence[CaseResult], missing_cases: Sequence[str] = ()) -> EvaluationSummary:
    """Mean and median per region over ``results``, and the KiTS ranking averages over the regions."""
    regions = []
    for region in KITS_REGIONS:
        dice = [r.metrics.dice[region.name] for r in results]
        surface_dice = [r.metrics.surface_dice[region.name] for r in results]
        hd95 = [r.metrics.hd95_mm[region.name] for r in results]
        regions.append(
            RegionSummary(
                region.name,
                _mean(dice),
                _median(dice),
                _mean(surface_dice),
                _median(surface_dice),
                _mean(hd95),
                _median(hd95),
            )
        )
    return EvaluationSummary(
        regions=tuple(regions),
        mean_dice=_mean([r.dice_mean for r in regions]),
        mean_surface_dice=_mean([r.surface_dice_mean for r in regions]),
        case_count=len(results),
        missing_cases=tuple(missing_cases),
    )
