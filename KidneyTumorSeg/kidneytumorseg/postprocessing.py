"""Anatomical post-processing of a predicted label map (0 background, 1 kidney, 2 tumor, 3 cyst).

Rules, each switchable from the model package's ``postprocessing`` dict, applied in this order:

1. ``hysteresis`` ``{"high": h, "low": l}`` (TuNet, Algorithm 1): labels are decoded from the KiTS regions
   of the probabilities instead of the argmax. For each region (kidney_and_mass = 1 - p0, mass = p2 + p3,
   tumor = p2) voxels with p >= h are seeds and connected voxels with p >= l are grown from them; mass
   is kept inside kidney_and_mass and tumor inside mass. Mass without tumor is cyst.
   ``adaptive_threshold`` (TuNet's Algorithm 1, :mod:`kidneytumorseg.adaptive_threshold`) decodes the labels
   from the probabilities instead, with thresholds that adapt to what the tumor map holds; at most one of
   the two may be on.
2. ``max_kidney_components`` N: keep only the N largest connected components of kidney_and_mass
   (at most two kidneys; Zhao 2019, seed 000).
   ``max_tumor_components`` N (off by default): keep only the N largest tumor components; the others become
   kidney (KiTS19 two-stage, seed 002: "the maximum connectivity component").
3. ``remove_masses_not_touching_kidney``: a connected component of mass (tumor and cyst together) that
   touches no kidney voxel is removed ("the tumor should be attached with kidney"). When no kidney voxel
   is predicted at all the rule is skipped, so a whole-kidney tumor is not erased.
4. ``min_component_ml``: components of each label smaller than this volume take the most common label
   around them (a speck of tumor inside kidney becomes kidney; a speck in the background disappears).
5. ``min_cyst_component_ml`` (off by default): the same for cyst components only, with a threshold of its
   own. A network that has just learned cysts marks small false cyst blobs in kidney and tumor; a real cyst
   worth reporting is larger (``benchmarks/cyst_component_filter.py`` measures where the line falls).

Connectivity is 26 (face, edge and corner neighbours) throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from kidneytumorseg.adaptive_threshold import AdaptiveThresholdSettings, adaptive_threshold_labels
from kidneytumorseg.labels import BACKGROUND, CYST, KIDNEY, TUMOR

logger = logging.getLogger(__name__)

CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)
_KEYS = ("max_kidney_components", "remove_masses_not_touching_kidney", "min_component_ml", "hysteresis",
         "adaptive_threshold", "max_tumor_components", "min_cyst_component_ml")


def _error(message: str) -> ValueError:
    return ValueError(f"Post-processing settings: {message}")


@dataclass(frozen=True)
class HysteresisSettings:
    """Seed threshold ``high`` and growth threshold ``low`` (0 < low <= high <= 1)."""

    high: float = 0.5
    low: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 < self.low <= self.high <= 1.0:
            raise _error(f"hysteresis needs 0 < low <= high <= 1, got high={self.high}, low={self.low}.")


@dataclass(frozen=True)
class PostprocessingSettings:
    """Which rules to apply; ``None``/0/False switches a rule off."""

    max_kidney_components: int | None = 2
    remove_masses_not_touching_kidney: bool = True
    min_component_ml: float = 0.0
    hysteresis: HysteresisSettings | Mapping[str, float] | None = None  # a mapping becomes HysteresisSettings
    adaptive_threshold: AdaptiveThresholdSettings | Mapping[str, Any] | bool | None = None
    max_tumor_components: int | None = None
    min_cyst_component_ml: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "adaptive_threshold", AdaptiveThresholdSettings.from_value(self.adaptive_threshold))
        if self.adaptive_threshold is not None and self.hysteresis is not None:
            raise _error("hysteresis and adaptive_threshold both decode labels from the probabilities; "
                         "switch one of them off (null).")
        tumors = self.max_tumor_components
        if tumors is not None and (isinstance(tumors, bool) or not isinstance(tumors, int) or tumors < 0):
            raise _error(f"max_tumor_components must be a whole number >= 1 (or null/0 for off), got {tumors!r}.")
        hysteresis = self.hysteresis
        if isinstance(hysteresis, Mapping):
            if set(hysteresis) != {"high", "low"}:
                raise _error(f"hysteresis must be null or {{'high': h, 'low': l}}, got {dict(hysteresis)!r}.")
            hysteresis = HysteresisSettings(high=float(hysteresis["high"]), low=float(hysteresis["low"]))
            object.__setattr__(self, "hysteresis", hysteresis)
        elif hysteresis is not None and not isinstance(hysteresis, HysteresisSettings):
            raise _error(f"hysteresis must be null or {{'high': h, 'low': l}}, got {hysteresis!r}.")
        count = self.max_kidney_components
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise _error(f"max_kidney_components must be a whole number >= 1 (or null/0 for off), got {count!r}.")
        if not isinstance(self.remove_masses_not_touching_kidney, bool):
            raise _error("remove_masses_not_touching_kidney must be true or false, "
                         f"got {self.remove_masses_not_touching_kidney!r}.")
        if not (isinstance(self.min_component_ml, (int, float)) and self.min_component_ml >= 0):
            raise _error(f"min_component_ml must be a number >= 0 (0 for off), got {self.min_component_ml!r}.")
        cyst_ml = self.min_cyst_component_ml
        if isinstance(cyst_ml, bool) or not (isinstance(cyst_ml, (int, float)) and cyst_ml >= 0):
            raise _error(f"min_cyst_component_ml must be a number >= 0 (0 for off), got {cyst_ml!r}.")

    @classmethod
    def disabled(cls) -> PostprocessingSettings:
        """Every rule off: the argmax labels pass through unchanged."""
        return cls(max_kidney_components=None, remove_masses_not_touching_kidney=False, min_component_ml=0.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PostprocessingSettings:
        """Settings from a model package's ``postprocessing`` dict; missing keys take the defaults."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise _error(f"expected a mapping with keys {list(_KEYS)}, got {data!r}.")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise _error(f"unknown keys {unknown}; the known ones are {list(_KEYS)}.")
        min_ml = data.get("min_component_ml", 0.0)
        return cls(
            max_kidney_components=data.get("max_kidney_components", 2),
            remove_masses_not_touching_kidney=data.get("remove_masses_not_touching_kidney", True),
            min_component_ml=0.0 if min_ml is None else min_ml,
            hysteresis=data.get("hysteresis"),
            adaptive_threshold=data.get("adaptive_threshold"),
            max_tumor_components=data.get("max_tumor_components"),
            min_cyst_component_ml=data.get("min_cyst_component_ml") or 0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe ``postprocessing`` dict (the newer rules only when they are on)."""
        out = {
            "max_kidney_components": self.max_kidney_components,
            "remove_masses_not_touching_kidney": self.remove_masses_not_touching_kidney,
            "min_component_ml": float(self.min_component_ml),
            "hysteresis": None if self.hysteresis is None else {"high": self.hysteresis.high,
                                                                 "low": self.hysteresis.low},
        }
        if self.adaptive_threshold is not None:
            out["adaptive_threshold"] = self.adaptive_threshold.to_dict()
        if self.max_tumor_components:
            out["max_tumor_components"] = self.max_tumor_components
        if self.min_cyst_component_ml:
            out["min_cyst_component_ml"] = float(self.min_cyst_component_ml)
        return out


def hysteresis_mask(probability: np.ndarray, high: float, low: float) -> np.ndarray:
    """Voxels with ``probability >= low`` connected to a seed with ``probability >= high``."""
    candidates = probability >= low
    components, count = ndimage.label(candidates, structure=CONNECTIVITY_26)
    if count == 0:
        return candidates
    seeded = np.unique(components[probability >= high])
    seeded = seeded[seeded > 0]
    keep = np.zeros(count + 1, dtype=bool)
    keep[seeded] = True
    return keep[components]


def labels_from_regions_hysteresis(probabilities: np.ndarray, high: float, low: float) -> np.ndarray:
    """Label map decoded from hysteresis masks of the KiTS regions of ``(4, S, P, L)`` probabilities."""
    if probabilities.ndim != 4 or probabilities.shape[0] != 4:
        raise ValueError(f"Hysteresis needs probabilities of shape (4, S, P, L), got {probabilities.shape}.")
    kidney_and_mass = hysteresis_mask(1.0 - probabilities[BACKGROUND], high, low)
    mass = hysteresis_mask(probabilities[TUMOR] + probabilities[CYST], high, low) & kidney_and_mass
    tumor = hysteresis_mask(probabilities[TUMOR], high, low) & mass
    labels = kidney_and_mass.astype(np.uint8) * KIDNEY
    labels[mass] = CYST
    labels[tumor] = TUMOR
    return labels


def keep_largest_components(mask: np.ndarray, count: int) -> np.ndarray:
    """``mask`` with only its ``count`` largest 26-connected components."""
    components, found = ndimage.label(mask, structure=CONNECTIVITY_26)
    if found <= count:
        return mask.astype(bool)
    sizes = np.bincount(components.ravel())[1:]
    largest = np.argsort(-sizes, kind="stable")[:count] + 1
    keep = np.zeros(found + 1, dtype=bool)
    keep[largest] = True
    return keep[components]


def keep_largest_tumors(labels: np.ndarray, count: int) -> np.ndarray:
    """Labels with only the ``count`` largest tumor components kept as tumor; the others become kidney."""
    out = labels.copy()
    tumor = labels == TUMOR
    removed = tumor & ~keep_largest_components(tumor, count)
    if removed.any():
        logger.info("Relabelled %d voxels of smaller tumor components as kidney.", int(removed.sum()))
    out[removed] = KIDNEY
    return out


def remove_masses_not_touching_kidney(labels: np.ndarray) -> np.ndarray:
    """Labels with every mass component (tumor and cyst together) that touches no kidney voxel set to 0."""
    out = labels.copy()
    kidney = labels == KIDNEY
    mass = (labels == TUMOR) | (labels == CYST)
    if not mass.any():
        return out
    if not kidney.any():
        logger.info("No kidney voxel predicted; keeping the masses rather than erasing them all.")
        return out
    components, _ = ndimage.label(mass, structure=CONNECTIVITY_26)
    near_kidney = ndimage.binary_dilation(kidney, structure=CONNECTIVITY_26)
    touching = np.unique(components[near_kidney & mass])
    removed = mass & ~np.isin(components, touching[touching > 0])
    if removed.any():
        logger.info("Removed %d mass voxels not touching the kidney.", int(removed.sum()))
    out[removed] = BACKGROUND
    return out


def remove_small_components(labels: np.ndarray, spacing: Sequence[float], min_ml: float,
                            which: Sequence[int] = (KIDNEY, TUMOR, CYST)) -> np.ndarray:
    """Components of each label in ``which`` under ``min_ml`` millilitres relabelled to the most common label
    around them."""
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    out = labels.copy()
    for label in which:
        components, found = ndimage.label(out == label, structure=CONNECTIVITY_26)
        if found == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        boxes = ndimage.find_objects(components)
        for index in np.flatnonzero(sizes * voxel_ml < min_ml):
            box = boxes[index]
            padded = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
            component = components[padded] == index + 1
            ring = ndimage.binary_dilation(component, structure=CONNECTIVITY_26) & ~component
            around = out[padded][ring]
            fill = int(np.bincount(around).argmax()) if around.size else BACKGROUND
            out[padded][component] = fill
    return out


def postprocess(
    labels: np.ndarray,
    spacing: Sequence[float],
    settings: PostprocessingSettings,
    probabilities: np.ndarray | None = None,
) -> np.ndarray:
    """Apply the switched-on rules to ``labels`` (uint8, same shape); ``probabilities`` only for hysteresis
    and adaptive thresholds."""
    out = np.asarray(labels).astype(np.uint8, copy=True)
    if (settings.hysteresis is not None or settings.adaptive_threshold is not None) and probabilities is None:
        raise ValueError("Hysteresis (or adaptive-threshold) post-processing needs the probabilities; pass "
                         "probabilities=... too.")
    if settings.hysteresis is not None:
        out = labels_from_regions_hysteresis(probabilities, settings.hysteresis.high, settings.hysteresis.low)
    if settings.adaptive_threshold is not None:
        out = adaptive_threshold_labels(probabilities, out, settings.adaptive_threshold)
    if settings.max_kidney_components:
        keep = keep_largest_components(out > 0, settings.max_kidney_components)
        out[~keep] = BACKGROUND
    if settings.max_tumor_components:
        out = keep_largest_tumors(out, settings.max_tumor_components)
    if settings.remove_masses_not_touching_kidney:
        out = remove_masses_not_touching_kidney(out)
    if settings.min_component_ml > 0:
        out = remove_small_components(out, spacing, settings.min_component_ml)
    if settings.min_cyst_component_ml > 0:
        out = remove_small_components(out, spacing, settings.min_cyst_component_ml, which=(CYST,))
    return out
