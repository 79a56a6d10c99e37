"""TuNet's post-processing (seed 003, Algorithm 1): adaptive thresholds and region growing on the whole-region
and tumor probabilities, switched on by ``"adaptive_threshold": {...}`` in a package's ``postprocessing``.

With the paper's defaults (every key optional)::

    {"threshold": 0.5, "whole_low": 0.4, "empty_low": 0.1,
     "small_tumor_voxels": 100, "small_tumor_low": 0.2, "tumor_low": 0.3, "empty_tumor_is_whole": true}

- Whole region (probability ``1 - p0``): if nothing reaches ``threshold`` it is binarised at ``empty_low``;
  otherwise it is refined by region growing: the components of ``p >= whole_low`` that touch ``p >= threshold``.
- Tumor (``p2``): if nothing reaches ``threshold`` it is binarised at ``empty_low``, and if still empty the
  tumor becomes the whole region when ``empty_tumor_is_whole`` (the paper's line; false leaves it empty);
  otherwise it is grown from ``p >= threshold`` into ``p >= small_tumor_low`` when fewer than
  ``small_tumor_voxels`` voxels reached ``threshold``, else into ``p >= tumor_low``.
  The paper's "refine based on T and T_tumor" after a binarisation at 0.1 has no seed at T; we read it as
  "use the binarisation at ``empty_low``".
- Merge: the whole region is kidney; inside it, voxels whose argmax label was cyst stay cyst, and the tumor
  (kept inside the whole region) is tumor. The paper's multiplication by the L-Net mask is what the
  coarse-to-fine cascade already does (nothing outside the localizer's boxes is segmented).

Voxel counts are on the grid the post-processing runs on (the input image's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from kidneytumorseg.labels import BACKGROUND, CYST, KIDNEY, TUMOR


def _error(message: str) -> ValueError:
    return ValueError(f"Post-processing settings: adaptive_threshold {message}")


@dataclass(frozen=True)
class AdaptiveThresholdSettings:
    """Thresholds of TuNet's Algorithm 1 (the paper's values by default)."""

    threshold: float = 0.5
    whole_low: float = 0.4
    empty_low: float = 0.1
    small_tumor_voxels: int = 100
    small_tumor_low: float = 0.2
    tumor_low: float = 0.3
    empty_tumor_is_whole: bool = True

    def __post_init__(self) -> None:
        for name in ("threshold", "whole_low", "empty_low", "small_tumor_low", "tumor_low"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                raise _error(f"'{name}' must be a probability in (0, 1], got {value!r}.")
            if name != "threshold" and value > self.threshold:
                raise _error(f"'{name}' ({value}) must not exceed 'threshold' ({self.threshold}).")
        count = self.small_tumor_voxels
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _error(f"'small_tumor_voxels' must be a whole number >= 0, got {count!r}.")
        if not isinstance(self.empty_tumor_is_whole, bool):
            raise _error(f"'empty_tumor_is_whole' must be true or false, got {self.empty_tumor_is_whole!r}.")

    @classmethod
    def from_value(cls, value: Any) -> AdaptiveThresholdSettings | None:
        """From a package's value: null/false (off), true (the paper's values) or an object of overrides."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise _error(f"must be null, true or an object of thresholds, got {value!r}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise _error(f"has unknown key(s) {unknown}; the known ones are {known}.")
        return cls(**dict(value))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _grow(probability: np.ndarray, high: float, low: float) -> np.ndarray:
    from kidneytumorseg.postprocessing import hysteresis_mask  # the same region growing as the hysteresis rule

    return hysteresis_mask(probability, high, low)


def whole_region(probability: np.ndarray, settings: AdaptiveThresholdSettings) -> np.ndarray:
    """The whole (kidney + masses) region of Algorithm 1."""
    if not (probability >= settings.threshold).any():
        return probability >= settings.empty_low
    return _grow(probability, settings.threshold, settings.whole_low)


def tumor_region(probability: np.ndarray, whole: np.ndarray, settings: AdaptiveThresholdSettings,
                 cyst: np.ndarray | None = None) -> np.ndarray:
    """The tumor region of Algorithm 1 (before it is kept inside ``whole``). The empty-tumor fallback fills the
    whole region except ``cyst``: KiTS19 had no cyst label, and a found cyst is not to be turned into tumor."""
    seeds = int(np.count_nonzero(probability >= settings.threshold))
    if seeds == 0:
        tumor = probability >= settings.empty_low
        if not tumor.any() and settings.empty_tumor_is_whole:
            return whole & ~cyst if cyst is not None else whole.copy()
        return tumor
    low = settings.small_tumor_low if seeds < settings.small_tumor_voxels else settings.tumor_low
    return _grow(probability, settings.threshold, low)


def adaptive_threshold_labels(probabilities: np.ndarray, labels: np.ndarray,
                              settings: AdaptiveThresholdSettings) -> np.ndarray:
    """Labels from ``(4, S, P, L)`` probabilities by Algorithm 1; ``labels`` (the argmax) supplies the cysts."""
    if probabilities.ndim != 4 or probabilities.shape[0] != 4:
        raise ValueError(f"Adaptive thresholds need probabilities of shape (4, S, P, L), got {probabilities.shape}.")
    whole = whole_region(1.0 - probabilities[BACKGROUND], settings)
    cyst = whole & (labels == CYST)
    tumor = tumor_region(probabilities[TUMOR], whole, settings, cyst) & whole
    out = whole.astype(np.uint8) * KIDNEY
    out[cyst] = CYST
    out[tumor] = TUMOR
    return out
