"""Training a refiner (stage 2) without a trained stage 1: the stage-1 region and probability channels are taken
from the reference labels of the patch and randomly perturbed, so that the refiner learns to cope with the
imperfect regions stage 1 will hand it (the usual way cascades are trained when stage-1 predictions on the
training cases are not at hand). The perturbed region and channels then go through the engine's own
:func:`kidneytumorseg.stage_inputs.build_stage_input`, as in inference.

Per patch, with its own random generator:

- with ``p_drop_component`` (when the patch holds two or more components of kidney_and_mass) one component,
  chosen at random, is dropped: a kidney stage 1 missed;
- with ``p_dilate`` the region is grown, else with ``p_erode`` shrunk, by a radius uniform between one voxel
  (the smallest spacing) and ``max_radius_mm`` (erosion never empties it);
- each probability channel is its reference region perturbed the same way and kept inside the perturbed
  kidney_and_mass region (the kidney_and_mass channel is that region itself), then, with
  ``prior_blur_mm > 0``, smoothed by a Gaussian of that sigma to resemble soft probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

from kidneytumorseg.postprocessing import CONNECTIVITY_26
from kidneytumorseg.stage_inputs import STAGE_REGION, StageInputSpec, dilate_mm, region_from_labels


@dataclass(frozen=True)
class StagePerturbation:
    """Probabilities and sizes of the perturbations (TrainingConfig ``stage_perturbation``)."""

    p_drop_component: float = 0.1
    p_dilate: float = 0.3
    p_erode: float = 0.3
    max_radius_mm: float = 4.0
    prior_blur_mm: float = 0.0

    def __post_init__(self) -> None:
        for name in ("p_drop_component", "p_dilate", "p_erode"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"stage_perturbation.{name} must be a probability in [0, 1], got {value!r}.")
        for name in ("max_radius_mm", "prior_blur_mm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"stage_perturbation.{name} must be a number >= 0 (mm), got {value!r}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> StagePerturbation:
        if data is None:
            return cls()
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown stage_perturbation key(s) {unknown}; the known ones are {known}.")
        return cls(**dict(data))

    @classmethod
    def none(cls) -> StagePerturbation:
        """No perturbation: the reference region as it is."""
        return cls(p_drop_component=0.0, p_dilate=0.0, p_erode=0.0, prior_blur_mm=0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def erode_mm(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """``mask`` without the voxels within ``radius_mm`` of its outside."""
    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    return ~dilate_mm(~mask, radius_mm, spacing)


def _reshape(mask: np.ndarray, settings: StagePerturbation, spacing: Sequence[float],
             rng: np.random.Generator) -> np.ndarray:
    if not mask.any():
        return mask
    smallest = min(float(s) for s in spacing)  # at least one voxel, or the perturbation would change nothing
    high = max(smallest, settings.max_radius_mm)
    if rng.random() < settings.p_dilate:
        return dilate_mm(mask, float(rng.uniform(smallest, high)), spacing)
    if rng.random() < settings.p_erode:
        eroded = erode_mm(mask, float(rng.uniform(smallest, high)), spacing)
        return eroded if eroded.any() else mask
    return mask


def perturbed_region(labels: np.ndarray, settings: StagePerturbation, spacing: Sequence[float],
                     rng: np.random.Generator) -> np.ndarray:
    """The kidney_and_mass region of ``labels``, perturbed."""
    region = region_from_labels(labels, STAGE_REGION)
    components, count = ndimage.label(region, structure=CONNECTIVITY_26)
    if count >= 2 and rng.random() < settings.p_drop_component:
        region = region & (components != int(rng.integers(1, count + 1)))
    return _reshape(region, settings, spacing, rng)


def stage_one_from_labels(labels: np.ndarray, spec: StageInputSpec, settings: StagePerturbation,
                          spacing: Sequence[float], rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(region, priors)`` for :func:`kidneytumorseg.stage_inputs.build_stage_input` from reference labels."""
    region = perturbed_region(labels, settings, spacing, rng)
    priors = []
    for name in spec.probability_channels:
        mask = region if name == STAGE_REGION else _reshape(region_from_labels(labels, name), settings, spacing,
                                                               rng) & region
        prior = mask.astype(np.float32)
        if settings.prior_blur_mm > 0:
            sigma = [settings.prior_blur_mm / float(s) for s in spacing]
            prior = np.clip(ndimage.gaussian_filter(prior, sigma, mode="nearest"), 0.0, 1.0).astype(np.float32)
        priors.append(prior)
    return region, priors
