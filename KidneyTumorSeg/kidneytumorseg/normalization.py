"""CT intensity normalisation, as a model package's ``preprocessing.normalization`` describes it.

Schemes:

- ``clip_zscore`` ``{"clip": [lo, hi], "mean": m, "std": s}``: clip to fixed HU bounds, then subtract the
  mean and divide by the standard deviation, all measured on the training set's foreground (Isensee 2019,
  nnU-Net's CT scheme).
- ``percentile_zscore`` ``{"percentiles": [0.5, 99.5]}``: clip to this case's own percentiles, then z-score
  with the clipped case's own mean and standard deviation (Zhao 2019, Zang 2021).

:func:`resolve_normalization` turns a per-case scheme into the fixed ``clip_zscore`` numbers of one case,
so that crops of a volume (the cascade) are normalised exactly as the whole volume would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SCHEMES: tuple[str, ...] = ("clip_zscore", "percentile_zscore")
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)
_MIN_STD = 1e-8


def _error(message: str) -> ValueError:
    return ValueError(f"Normalization settings: {message}")


def _pair(value: Any, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as error:
        raise _error(f"{name!r} must be two numbers [low, high], got {value!r}.") from error
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise _error(f"{name!r} must be finite with low < high, got {value!r}.")
    return low, high


def validate_normalization(normalization: Mapping[str, Any]) -> dict[str, Any]:
    """Check a normalisation description and return it with defaults filled in and numbers as floats."""
    if not isinstance(normalization, Mapping):
        raise _error(f"expected a mapping like {{'scheme': 'clip_zscore', ...}}, got {normalization!r}.")
    scheme = normalization.get("scheme")
    if scheme == "clip_zscore":
        missing = [key for key in ("clip", "mean", "std") if key not in normalization]
        if missing:
            raise _error(f"scheme 'clip_zscore' needs 'clip', 'mean' and 'std'; {missing} missing. "
                         f"Add them to the model package's preprocessing.normalization.")
        clip = _pair(normalization["clip"], "clip")
        mean, std = float(normalization["mean"]), float(normalization["std"])
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise _error(f"'mean' must be finite and 'std' finite and > 0, got mean={mean}, std={std}.")
        return {"scheme": scheme, "clip": list(clip), "mean": mean, "std": std}
    if scheme == "percentile_zscore":
        low, high = _pair(normalization.get("percentiles", DEFAULT_PERCENTILES), "percentiles")
        if not (0.0 <= low < high <= 100.0):
            raise _error(f"'percentiles' must lie in 0..100, got {[low, high]}.")
        return {"scheme": scheme, "percentiles": [low, high]}
    raise _error(f"unknown scheme {scheme!r}; use one of {list(SCHEMES)} (the model package may need a newer "
                 f"KidneyTumorSeg).")


def resolve_normalization(volume: np.ndarray, normalization: Mapping[str, Any]) -> dict[str, Any]:
    """The fixed ``clip_zscore`` numbers that normalise this ``volume`` as ``normalization`` says."""
    settings = validate_normalization(normalization)
    if settings["scheme"] == "clip_zscore":
        return settings
    values = np.asarray(volume)
    if values.size == 0:
        raise _error("the volume is empty; nothing to compute percentiles of.")
    low, high = (float(v) for v in np.percentile(values, settings["percentiles"]))
    clipped = np.clip(values, low, high)
    mean = float(np.mean(clipped, dtype=np.float64))
    std = float(np.std(clipped, dtype=np.float64))
    return {"scheme": "clip_zscore", "clip": [low, high], "mean": mean, "std": max(std, _MIN_STD)}


def normalize(volume: np.ndarray, normalization: Mapping[str, Any]) -> np.ndarray:
    """A normalised float32 copy of ``volume``."""
    settings = resolve_normalization(volume, normalization)
    low, high = settings["clip"]
    out = np.clip(np.asarray(volume, dtype=np.float32), low, high)
    out -= np.float32(settings["mean"])
    out /= np.float32(settings["std"])
    return out
