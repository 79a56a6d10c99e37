"""Experiment planning: a dataset fingerprint, then ``plans.json`` (target spacing, normalisation, patch size,
network), nnU-Net style (Isensee et al. 2021) on the engine's own network planner."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.errors import KidneyTumorSegError, MissingInputError
from kidneytumorseg.geometry import INTERPOLATORS, to_lps
from kidneytumorseg.normalization import validate_normalization
from kidneytumorseg_training.datasets import TrainingCase, body_box, load_case

logger = logging.getLogger(__name__)

PLANS_NAME = "plans.json"
FORMAT_VERSION = 1
NUM_CLASSES = 4
FINGERPRINT_SEED = 1234
FOREGROUND_SAMPLES = 10_000
ANISOTROPY_RATIO = 3.0
PERCENTILES = (0.5, 99.5)
# Patch voxels, base features and batch size per compute budget.
BUDGETS: dict[str, dict[str, int]] = {
    "cpu": {"voxels": 48 * 112 * 112, "base_features": 16, "batch_size": 2},
    "gpu-8gb": {"voxels": 128**3, "base_features": 32, "batch_size": 2},
    "gpu-24gb": {"voxels": int(1.5 * 128**3), "base_features": 32, "batch_size": 2},
}
# Optional key "label_interpolation": "linear" (default: one-hot, linear, argmax) or "nearest".
LABEL_INTERPOLATIONS = ("linear", "nearest")
REQUIRED_KEYS = ("format_version", "name", "dataset", "budget", "target_spacing", "normalization",
                 "image_interpolation", "patch_size", "batch_size", "network", "num_classes", "fingerprint")


class PlansError(KidneyTumorSegError, ValueError):
    """A plans.json is missing a field, damaged or inconsistent."""


def _case_fingerprint(case: TrainingCase) -> dict[str, Any]:
    """Spacing, shape, body-cropped shape and up to 10,000 sampled foreground intensities of one case."""
    image, label = load_case(case)
    image_lps, spacing, _ = to_lps(image)
    label_lps, _, _ = to_lps(label)
    box = body_box(image_lps, label_lps)
    foreground = image_lps[label_lps > 0].astype(np.float32)
    if foreground.size > FOREGROUND_SAMPLES:
        rng = np.random.default_rng([FINGERPRINT_SEED, zlib.crc32(case.case_id.encode())])
        foreground = foreground[np.sort(rng.choice(foreground.size, FOREGROUND_SAMPLES, replace=False))]
    return {"case_id": case.case_id, "spacing": [float(s) for s in spacing], "shape": list(image_lps.shape),
            "cropped_shape": [stop - start for start, stop in box], "samples": foreground}


def compute_fingerprint(cases: Sequence[TrainingCase], jobs: int = 2, progress: bool = True) -> dict[str, Any]:
    """Per-case spacings (LPS ``[si, ap, lr]``) and shapes, and foreground intensity statistics over the pooled
    samples. Cases are checked (DatasetError names a bad one). Serial and parallel runs give the same result."""
    cases = list(cases)
    if not cases:
        raise ValueError("No cases to fingerprint; find them with find_training_cases(root) first.")
    bar = tqdm(total=len(cases), desc="fingerprint", unit="case", disable=None if progress else True)
    try:
        if jobs <= 1:
            results = []
            for case in cases:
                results.append(_case_fingerprint(case))
                bar.update(1)
        else:
            # Fresh interpreters, not forks (a fork of a process running torch or BLAS threads can deadlock).
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = [pool.submit(_case_fingerprint, case) for case in cases]
                results = []
                try:
                    for future in futures:  # in case order, so the pooled samples do not depend on timing
                        results.append(future.result())
                        bar.update(1)
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
    finally:
        bar.close()
    samples = np.concatenate([r["samples"] for r in results]).astype(np.float64)
    if samples.size == 0:
        raise ValueError("No foreground voxels in any case: the masks are empty.")
    low, high = (float(v) for v in np.percentile(samples, PERCENTILES))
    spacings = [r["spacing"] for r in results]
    shapes = [r["shape"] for r in results]
    cropped = [r["cropped_shape"] for r in results]
    return {
        "dataset": os.path.commonpath([os.path.abspath(Path(c.image).parent.parent) for c in cases]),
        "num_cases": len(cases),
        "case_ids": [c.case_id for c in cases],
        "sources": sorted({c.source for c in cases}),
        "spacings": spacings,
        "shapes": shapes,
        "cropped_shapes": cropped,
        "median_spacing": [float(v) for v in np.median(spacings, axis=0)],
        "median_shape": [float(v) for v in np.median(shapes, axis=0)],
        "median_cropped_shape": [float(v) for v in np.median(cropped, axis=0)],
        "foreground_intensity": {
            "mean": float(np.mean(samples)), "std": float(np.std(samples)), "median": float(np.median(samples)),
            "min": float(np.min(samples)), "max": float(np.max(samples)),
            "percentile_00_5": low, "percentile_99_5": high, "num_samples": int(samples.size),
        },
    }


def planned_target_spacing(fingerprint: Mapping[str, Any]) -> list[float]:
    """Median spacing; for anisotropic data (coarsest axis > 3x the finest) the coarsest axis takes the 10th
    percentile of its spacings, but no finer than the other axes."""
    spacings = np.asarray(fingerprint["spacings"], dtype=float)
    target = np.median(spacings, axis=0)
    worst = int(np.argmax(target))
    if target[worst] > ANISOTROPY_RATIO * target.min():
        others = max(target[a] for a in range(3) if a != worst)
        target[worst] = max(float(np.percentile(spacings[:, worst], 10)), others)
    return [float(v) for v in target]


def foreground_normalization(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """nnU-Net's CT scheme: clip to the training foreground's 0.5 / 99.5 percentiles, then z-score with its mean
    and standard deviation (``clip_zscore``)."""
    stats = fingerprint["foreground_intensity"]
    return validate_normalization({
        "scheme": "clip_zscore", "clip": [stats["percentile_00_5"], stats["percentile_99_5"]],
        "mean": stats["mean"], "std": max(float(stats["std"]), 1e-8),
    })


def _median_shape_at(fingerprint: Mapping[str, Any], target_spacing: Sequence[float]) -> np.ndarray:
    """Median body-cropped image size in voxels at ``target_spacing`` (the median extent in mm per axis)."""
    shapes = np.asarray(fingerprint.get("cropped_shapes") or fingerprint["shapes"], dtype=float)
    extents = shapes * np.asarray(fingerprint["spacings"], dtype=float)
    return np.maximum(np.median(extents, axis=0) / np.asarray(target_spacing, dtype=float), 1.0)


def _plan_patch(median_shape: np.ndarray, spacing: Sequence[float], voxels: int, min_feature_map: int) -> list[int]:
    """A patch shaped like the median image (in mm), at most ``voxels`` voxels and the median shape, made
    divisible by the planned network's total stride."""
    from kidneytumorseg.networks.planning import _divisible_patch  # the adjustment plan_network's error suggests

    scale = min(1.0, (voxels / float(np.prod(median_shape))) ** (1.0 / 3.0))
    patch = [max(1, int(math.floor(n * scale))) for n in median_shape]
    down = _divisible_patch(patch, spacing, min_feature_map, round_up=False)
    up = _divisible_patch(patch, spacing, min_feature_map, round_up=True)
    if up is not None and math.prod(up) <= voxels and all(u <= n for u, n in zip(up, median_shape, strict=True)):
        return up
    if down is not None and all(d >= 1 for d in down):
        return down
    return up if up is not None else patch


def plan_experiment(
    fingerprint: Mapping[str, Any],
    budget: str = "cpu",
    target_spacing: Sequence[float] | None = None,
    patch_size: Sequence[int] | None = None,
    base_features: int | None = None,
    block: str = "plain",
    name: str = "3d_fullres",
    **network_options: Any,
) -> dict[str, Any]:
    """The plans.json dict of docs/training-contracts.md for a dataset ``fingerprint`` and compute ``budget``.

    ``network_options`` go to the engine's ``plan_network`` (``squeeze_excitation``, ``dropout``, ...);
    ``deep_supervision`` defaults to True.
    """
    from kidneytumorseg.networks import plan_network

    if budget not in BUDGETS:
        raise ValueError(f"Unknown budget {budget!r}; use one of {sorted(BUDGETS)}.")
    settings = BUDGETS[budget]
    spacing = planned_target_spacing(fingerprint) if target_spacing is None else [float(s) for s in target_spacing]
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"target_spacing must be 3 positive numbers [si, ap, lr] in mm, got {target_spacing!r}.")
    features = settings["base_features"] if base_features is None else int(base_features)
    network_options.setdefault("deep_supervision", True)
    if patch_size is None:
        median_shape = _median_shape_at(fingerprint, spacing)
        patch = _plan_patch(median_shape, spacing, settings["voxels"], network_options.get("min_feature_map", 4))
    else:
        patch = [int(p) for p in patch_size]
    try:
        network = plan_network(patch, spacing, num_classes=NUM_CLASSES, base_features=features, block=block,
                               **network_options)
    except ValueError as error:
        raise ValueError(f"Cannot plan a network for patch {patch} at spacing {spacing}: {error} Give patch_size "
                         f"(or a finer target_spacing) explicitly.") from error
    normalization = foreground_normalization(fingerprint)
    plans = {
        "format_version": FORMAT_VERSION, "name": name, "dataset": str(fingerprint.get("dataset", "")),
        "budget": budget, "target_spacing": spacing, "normalization": normalization,
        "image_interpolation": "linear", "patch_size": patch, "batch_size": settings["batch_size"],
        "network": network.to_dict(), "num_classes": NUM_CLASSES, "fingerprint": dict(fingerprint),
    }
    logger.info("Plan %s (%s): spacing %s, patch %s (%d voxels), %d stages", name, budget, spacing, patch,
                math.prod(patch), network.num_stages)
    return validate_plans(plans)


def _positive_numbers(plans: Mapping[str, Any], key: str, integer: bool) -> list[Any]:
    value = plans[key]
    kind = int if integer else (int, float)
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in value)):
        raise PlansError(f"plans.json: {key!r} must be 3 positive {'integers' if integer else 'numbers'} "
                         f"[si, ap, lr], got {value!r}. Re-run planning.")
    return [int(v) if integer else float(v) for v in value]


def validate_plans(plans: Mapping[str, Any], check_network: bool = True) -> dict[str, Any]:
    """Check a plans dict; return a JSON-safe copy. Raises PlansError saying what is wrong."""
    if not isinstance(plans, Mapping):
        raise PlansError(f"plans must be a JSON object, got {type(plans).__name__}. Re-run planning.")
    missing = [key for key in REQUIRED_KEYS if key not in plans]
    if missing:
        raise PlansError(f"plans.json is missing {missing}; re-run planning to write a complete one.")
    if plans["format_version"] != FORMAT_VERSION:
        raise PlansError(f"plans.json has format_version {plans['format_version']!r}; this version reads "
                         f"{FORMAT_VERSION}. Re-run planning (or update KidneyTumorSeg).")
    out = json.loads(json.dumps(dict(plans), default=_json_default))
    out["target_spacing"] = _positive_numbers(plans, "target_spacing", integer=False)
    out["patch_size"] = _positive_numbers(plans, "patch_size", integer=True)
    try:
        out["normalization"] = validate_normalization(plans["normalization"])
    except ValueError as error:
        raise PlansError(f"plans.json: {error}") from error
    if plans["image_interpolation"] not in INTERPOLATORS:
        raise PlansError(f"plans.json: image_interpolation must be one of {sorted(INTERPOLATORS)}, got "
                         f"{plans['image_interpolation']!r}.")
    if plans.get("label_interpolation", "linear") not in LABEL_INTERPOLATIONS:
        raise PlansError(f"plans.json: label_interpolation must be one of {list(LABEL_INTERPOLATIONS)}, got "
                         f"{plans['label_interpolation']!r}.")
    batch = plans["batch_size"]
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise PlansError(f"plans.json: batch_size must be an integer >= 1, got {batch!r}.")
    if plans["num_classes"] != NUM_CLASSES:
        raise PlansError(f"plans.json: num_classes must be {NUM_CLASSES} (background, kidney, tumor, cyst), got "
                         f"{plans['num_classes']!r}.")
    if check_network:
        from kidneytumorseg.networks import NetworkConfig

        try:
            network = NetworkConfig.from_dict(plans["network"])
        except (KidneyTumorSegError, ValueError, TypeError) as error:
            raise PlansError(f"plans.json: invalid network ({error}).") from error
        if network.num_classes != NUM_CLASSES or network.in_channels != 1 or network.dimension != 3:
            raise PlansError("plans.json: the network must be 3D with 1 input channel and 4 classes; re-run planning.")
        if any(p % s for p, s in zip(out["patch_size"], network.total_strides, strict=True)):
            raise PlansError(f"plans.json: patch_size {out['patch_size']} is not divisible by the network's total "
                             f"stride {network.total_strides}; re-run planning.")
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_plans(plans: Mapping[str, Any], folder: str | os.PathLike[str]) -> Path:
    """Validate ``plans`` and write ``folder/plans.json`` atomically."""
    checked = validate_plans(plans)
    return write_text_atomic(Path(folder) / PLANS_NAME, json.dumps(checked, indent=2))


def load_plans(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``folder/plans.json`` (``folder`` may also be the file itself)."""
    path = Path(folder)
    if path.is_dir() or not path.name.endswith(".json"):
        path = path / PLANS_NAME
    if not path.is_file():
        raise MissingInputError(f"{path}: no such file. Preprocess the dataset first "
                                f"(`kidneytumorseg-train preprocess`), then use that folder.")
    try:
        plans = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PlansError(f"{path} cannot be read as JSON ({error}); re-run planning.") from error
    try:
        return validate_plans(plans)
    except PlansError as error:
        raise PlansError(f"{path}: {error}") from error
