"""The input of a second-stage network (a "refiner" member): the image, masked with the first stage's kidney
region and/or joined by first-stage probability channels. One function, :func:`build_stage_input`, builds it
for inference (from the first stage's probabilities) and for training (from perturbed reference labels), so a
refiner is trained on exactly the input it is run on.

A refiner's ``preprocessing.stage_input`` in model.json (all keys optional)::

    {"mask_image": true,            # image outside the dilated stage-1 region set to `fill`
     "mask_dilation_mm": 5.0,       # the region is grown by this many mm before masking
     "fill": 0.0,                   # normalised value outside (0 = the training foreground mean)
     "probability_channels": [],    # stage-1 probabilities appended as channels, by region name
     "crop_margin_mm": 20.0}        # the refiner runs only in the box of the region plus this margin

Region names: ``kidney_and_mass`` (labels 1-3, probability ``1 - p0``), ``kidney`` (1), ``mass`` (2-3),
``tumor`` (2), ``cyst`` (3). The stage-1 region itself is always ``kidney_and_mass``. Channel order: the
(masked) image first, then the probability channels in the order listed; 2.5D members then stack
neighbouring slices of every channel (:mod:`kidneytumorseg.slices`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

from kidneytumorseg.labels import CYST, KIDNEY, TUMOR

REGION_LABELS: dict[str, tuple[int, ...]] = {
    "kidney_and_mass": (KIDNEY, TUMOR, CYST),
    "kidney": (KIDNEY,),
    "mass": (TUMOR, CYST),
    "tumor": (TUMOR,),
    "cyst": (CYST,),
}
STAGE_REGION = "kidney_and_mass"


def _error(message: str) -> ValueError:
    return ValueError(f"Stage input settings: {message}")


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _error(f"'{name}' must be a number >= 0, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class StageInputSpec:
    """How a refiner's input is built from the image and the first stage (see the module docstring)."""

    mask_image: bool = True
    mask_dilation_mm: float = 5.0
    fill: float = 0.0
    probability_channels: tuple[str, ...] = ()
    crop_margin_mm: float = 20.0

    def __post_init__(self) -> None:
        if not isinstance(self.mask_image, bool):
            raise _error(f"'mask_image' must be true or false, got {self.mask_image!r}.")
        object.__setattr__(self, "mask_dilation_mm", _non_negative("mask_dilation_mm", self.mask_dilation_mm))
        object.__setattr__(self, "crop_margin_mm", _non_negative("crop_margin_mm", self.crop_margin_mm))
        if isinstance(self.fill, bool) or not isinstance(self.fill, (int, float)) or not math.isfinite(self.fill):
            raise _error(f"'fill' must be a finite number (a normalised intensity), got {self.fill!r}.")
        object.__setattr__(self, "fill", float(self.fill))
        channels = self.probability_channels
        if isinstance(channels, str) or not isinstance(channels, (list, tuple)):
            raise _error(f"'probability_channels' must be a list of region names, got {channels!r}.")
        unknown = [name for name in channels if name not in REGION_LABELS]
        if unknown:
            raise _error(f"unknown region(s) {unknown} in 'probability_channels'; use {sorted(REGION_LABELS)}.")
        object.__setattr__(self, "probability_channels", tuple(channels))
        if self.mask_image and self.crop_margin_mm < self.mask_dilation_mm:
            raise _error(f"'crop_margin_mm' ({self.crop_margin_mm}) must be at least 'mask_dilation_mm' "
                         f"({self.mask_dilation_mm}), or the crop would cut the masked region.")

    @property
    def channels(self) -> int:
        """Channels per slice of the refiner's input: the image plus the probability channels."""
        return 1 + len(self.probability_channels)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> StageInputSpec:
        """The spec of a model.json / TrainingConfig ``stage_input`` dict; missing keys take the defaults."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise _error(f"expected an object such as {{'mask_image': true}}, got {data!r}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise _error(f"unknown key(s) {unknown}; the known ones are {known}.")
        values = dict(data)
        if "probability_channels" in values and isinstance(values["probability_channels"], list):
            values["probability_channels"] = tuple(values["probability_channels"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe dict that :meth:`from_dict` reads back."""
        return {"mask_image": self.mask_image, "mask_dilation_mm": self.mask_dilation_mm, "fill": self.fill,
                "probability_channels": list(self.probability_channels), "crop_margin_mm": self.crop_margin_mm}


def region_probability(kits_probabilities: np.ndarray, name: str) -> np.ndarray:
    """Probability of region ``name`` from ``(4, *spatial)`` KiTS probabilities (float32)."""
    if name not in REGION_LABELS:
        raise _error(f"unknown region {name!r}; use {sorted(REGION_LABELS)}.")
    if kits_probabilities.shape[0] != 4:
        raise _error(f"stage-1 probabilities must have the 4 KiTS classes, got {kits_probabilities.shape[0]}; "
                     f"give the stage-1 members 'output_labels' in model.json.")
    if name == STAGE_REGION:
        return (1.0 - kits_probabilities[0]).astype(np.float32)
    return np.sum(kits_probabilities[list(REGION_LABELS[name])], axis=0, dtype=np.float32)


def region_from_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Boolean mask of region ``name`` in a KiTS label map."""
    if name not in REGION_LABELS:
        raise _error(f"unknown region {name!r}; use {sorted(REGION_LABELS)}.")
    return np.isin(labels, REGION_LABELS[name])


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """``mask`` grown by every voxel whose centre lies within ``radius_mm`` of a mask voxel's centre."""
    mask = np.asarray(mask, dtype=bool)
    if radius_mm <= 0 or not mask.any() or mask.all():
        return mask.copy()
    distance = ndimage.distance_transform_edt(~mask, sampling=[float(s) for s in spacing])
    return distance <= radius_mm


def build_stage_input(image: np.ndarray, region: np.ndarray, priors: Sequence[np.ndarray], spec: StageInputSpec,
                      spacing: Sequence[float]) -> np.ndarray:
    """The refiner input ``(spec.channels, S, P, L)`` float32.

    ``image``: the normalised (and, where the member says so, median-filtered) image ``(S, P, L)`` at the
    member's spacing ``spacing``; ``region``: the stage-1 kidney_and_mass mask on the same grid; ``priors``: one
    array per ``spec.probability_channels`` entry, in that order (probabilities in inference, perturbed reference
    masks in training). Channel 0 is the image, set to ``spec.fill`` outside ``region`` grown by
    ``spec.mask_dilation_mm`` when ``spec.mask_image``; then the priors.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or np.shape(region) != image.shape:
        raise _error(f"image and region must be 3D arrays on one grid, got {image.shape} and {np.shape(region)}.")
    if len(priors) != len(spec.probability_channels):
        raise _error(f"{len(priors)} prior arrays for the {len(spec.probability_channels)} probability channels "
                     f"{list(spec.probability_channels)}; give one per channel, in that order.")
    channels = [image]
    if spec.mask_image:
        keep = dilate_mm(region, spec.mask_dilation_mm, spacing)
        channels[0] = np.where(keep, image, np.float32(spec.fill)).astype(np.float32)
    for name, prior in zip(spec.probability_channels, priors, strict=True):
        if np.shape(prior) != image.shape:
            raise _error(f"the {name} channel has shape {np.shape(prior)}, the image {image.shape}.")
        channels.append(np.asarray(prior, dtype=np.float32))
    return np.stack(channels)


def priors_from_probabilities(kits_probabilities: np.ndarray, spec: StageInputSpec) -> list[np.ndarray]:
    """The probability channels of ``spec`` from stage-1 KiTS probabilities (inference)."""
    return [region_probability(kits_probabilities, name) for name in spec.probability_channels]
