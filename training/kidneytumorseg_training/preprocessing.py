"""Preprocess training cases as the predictor will see them: LPS, cropped to the body, normalised, resampled.

A per-case normalisation (``percentile_zscore``) is measured on the whole image, as the predictor measures it, and
applied to the body crop. Labels are resampled one-hot, linearly, then argmax, or by nearest neighbour when the plan
says ``"label_interpolation": "nearest"``.

Per case, in a folder holding ``plans.json`` (docs/training-contracts.md): ``<id>.image.npy`` (float32),
``<id>.label.npy`` (uint8), ``<id>.locations.npz`` (int32 voxel indices per class) and ``<id>.json``, written
last: its presence marks a complete case, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import multiprocessing
import os
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kidneytumorseg.atomic import atomic_path, write_text_atomic
from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.geometry import resample_array, resample_to_shape, to_lps
from kidneytumorseg.labels import CYST, KIDNEY, TUMOR
from kidneytumorseg.normalization import normalize, resolve_normalization
from kidneytumorseg_training.datasets import DatasetError, TrainingCase, body_box, load_case
from kidneytumorseg_training.planning import PLANS_NAME, PlansError, load_plans, save_plans, validate_plans

logger = logging.getLogger(__name__)

CLASSES = (KIDNEY, TUMOR, CYST)
MAX_LOCATIONS = 10_000
LOCATION_SEED = 4321
ON_ERROR = ("raise", "skip")


@dataclass
class PreprocessReport:
    """What a preprocessing run did: case ids processed now, skipped (with the reason) and already complete."""

    done: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)


def case_files(out_dir: str | os.PathLike[str], case_id: str) -> dict[str, Path]:
    """The files of one preprocessed case; ``record`` (the JSON) is written last."""
    out_dir = Path(out_dir)
    return {"image": out_dir / f"{case_id}.image.npy", "label": out_dir / f"{case_id}.label.npy",
            "locations": out_dir / f"{case_id}.locations.npz", "record": out_dir / f"{case_id}.json"}


def is_case_complete(out_dir: str | os.PathLike[str], case_id: str) -> bool:
    """Whether all files of the case are there (the JSON is written only after the data files)."""
    return all(path.is_file() for path in case_files(out_dir, case_id).values())


def _resample_label(label: np.ndarray, spacing: Sequence[float], shape: Sequence[int],
                    target_spacing: Sequence[float]) -> np.ndarray:
    """Labels onto the grid ``shape`` x ``target_spacing``: each class one-hot, linear, then argmax (one class at
    a time, keeping the running best, so memory stays at two volumes of the target grid)."""
    best = winner = None
    for value in range(max(CLASSES) + 1):
        score = resample_to_shape((label == value).astype(np.float32), spacing, shape, target_spacing, "linear")
        if best is None:
            best, winner = score, np.zeros(score.shape, dtype=np.uint8)
        else:
            better = score > best  # strict: ties go to the lower label, as np.argmax does
            best[better] = score[better]
            winner[better] = value
    return winner


def _locations(label: np.ndarray, case_id: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([LOCATION_SEED, zlib.crc32(case_id.encode())])
    out = {}
    for value in CLASSES:
        where = np.argwhere(label == value).astype(np.int32)
        if len(where) > MAX_LOCATIONS:
            where = where[np.sort(rng.choice(len(where), MAX_LOCATIONS, replace=False))]
        out[f"class_{value}"] = np.ascontiguousarray(where.reshape(-1, 3), dtype=np.int32)
    return out


def _write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as temporary, open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)


def _remove_case_files(out_dir: Path, case_id: str) -> None:
    """Remove a case's files and any temporary file a killed run left behind."""
    for path in case_files(out_dir, case_id).values():
        path.unlink(missing_ok=True)
        for stale in out_dir.glob(f".{glob.escape(path.name)}.*.partial*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def preprocess_case(case: TrainingCase, plans: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Preprocess one case into ``out_dir`` and return its record (the ``<id>.json``). On any failure the
    case leaves no file behind; DatasetError names a bad case."""
    started = time.perf_counter()
    plans = validate_plans(plans, check_network=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = case_files(out_dir, case.case_id)
    _remove_case_files(out_dir, case.case_id)  # the JSON goes first: a case is complete only once rewritten
    try:
        image, label = load_case(case)
        image_lps, spacing, _ = to_lps(image)
        label_lps, _, _ = to_lps(label)
        box = body_box(image_lps, label_lps)
        region = tuple(slice(start, stop) for start, stop in box)
        target = plans["target_spacing"]
        # A per-case scheme is measured on the whole image, as the predictor measures it, not on the body crop.
        normalization = resolve_normalization(image_lps, plans["normalization"])
        data = resample_array(normalize(image_lps[region], normalization), spacing, target,
                              plans["image_interpolation"])
        if plans.get("label_interpolation", "linear") == "nearest":
            labels = np.rint(resample_to_shape(label_lps[region].astype(np.float32), spacing, data.shape, target,
                                               "nearest")).astype(np.uint8)
        else:
            labels = _resample_label(label_lps[region], spacing, data.shape, target)
        class_voxels = {str(value): int(np.count_nonzero(labels == value)) for value in CLASSES}
        if class_voxels[str(KIDNEY)] == 0:
            raise DatasetError(f"Case {case.case_id}: no kidney voxel is left at spacing {target}; the kidney is too "
                               f"small for this target spacing: plan a finer one or leave the case out.")
        _write_npy(files["image"], np.ascontiguousarray(data, dtype=np.float32))
        _write_npy(files["label"], labels)
        _write_npz(files["locations"], _locations(labels, case.case_id))
        record = {
            "case_id": case.case_id, "source": case.source, "source_image": str(case.image),
            "source_label": str(case.label), "original_spacing": [float(s) for s in spacing],
            "original_shape": [int(n) for n in image_lps.shape], "crop_box": box,
            "shape": [int(n) for n in data.shape], "spacing": [float(s) for s in target],
            "class_voxels": class_voxels, "normalization": normalization,
            "seconds": round(time.perf_counter() - started, 2),
        }
        write_text_atomic(files["record"], json.dumps(record, indent=2))
    except BaseException:
        _remove_case_files(out_dir, case.case_id)
        raise
    return record


def _prepare_out_dir(plans: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write plans.json into ``out_dir``, or check that the one there is the same plan."""
    checked = validate_plans(plans)
    if (out_dir / PLANS_NAME).exists():
        existing = load_plans(out_dir)
        if existing != checked:
            changed = sorted(key for key in set(existing) | set(checked) if existing.get(key) != checked.get(key))
            raise PlansError(f"{out_dir} holds data preprocessed with a different plan ({', '.join(changed)} differ). "
                             f"Preprocess into a new folder, or delete {out_dir} to start over.")
    else:
        save_plans(checked, out_dir)
    return checked


def preprocess_dataset(
    cases: Sequence[TrainingCase],
    plans: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    jobs: int = 2,
    progress: bool = True,
    on_error: str = "raise",
) -> PreprocessReport:
    """Preprocess ``cases`` into ``out_dir`` (resumable: complete cases are reused). ``on_error="skip"`` records
    a failing case in ``report.skipped`` and goes on; ``"raise"`` stops at the first failure."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}.")
    cases = list(cases)
    duplicates = sorted(case_id for case_id, count in Counter(c.case_id for c in cases).items() if count > 1)
    if duplicates:
        raise DatasetError(f"case id(s) {', '.join(duplicates)} appear more than once; give each case a unique id "
                           f"(e.g. preprocess datasets with overlapping ids into separate folders).")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checked = _prepare_out_dir(plans, out_dir)
    report = PreprocessReport()
    todo = []
    for case in cases:
        (report.reused if is_case_complete(out_dir, case.case_id) else todo).append(case)
    report.reused = [c.case_id for c in report.reused]
    if report.reused:
        logger.info("reusing %d complete case(s) in %s", len(report.reused), out_dir)
    bar = tqdm(total=len(todo), desc="preprocessing", unit="case", disable=None if progress else True)

    def finished(case_id: str, error: BaseException | None) -> None:
        bar.update(1)
        if error is None:
            report.done.append(case_id)
            return
        reason = str(error) if isinstance(error, KidneyTumorSegError) else repr(error)
        if on_error == "raise":
            logger.error("preprocessing %s failed: %s", case_id, reason)
            raise error
        report.skipped[case_id] = reason
        logger.warning("skipping %s: %s", case_id, reason)

    try:
        if jobs <= 1:
            for case in todo:
                try:
                    preprocess_case(case, checked, out_dir)
                except Exception as error:
                    finished(case.case_id, error)
                else:
                    finished(case.case_id, None)
        else:
            # Fresh interpreters, not forks: forking a process whose torch or BLAS threads run can deadlock.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {pool.submit(preprocess_case, case, checked, out_dir): case.case_id for case in todo}
                try:
                    for future in as_completed(futures):
                        finished(futures[future], future.exception())
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
    finally:
        bar.close()
    report.done.sort()
    return report
