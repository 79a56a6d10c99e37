"""Checks on a CT volume before prediction, so a bad input fails at once with a message saying what to do.

The checks work on the LPS array and its spacing (what the predictor gets): a 3D array, finite values,
not empty nor constant, a plausible voxel spacing, CT-like intensities (Hounsfield units), and enough
memory for the run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from kidneytumorseg.errors import InputImageError, NotCTError
from kidneytumorseg.resources import require_memory

logger = logging.getLogger(__name__)

MIN_SPACING_MM = 0.1
MAX_SPACING_MM = 20.0
AIR_THRESHOLD_HU = -500.0
# Percentiles of big volumes are taken on an evenly strided sample of at most this many voxels.
_PERCENTILE_SAMPLE = 2_000_000
NON_CT_ADVICE = "pass allow_non_ct=True / --allow-non-ct to go on if you know it is CT"


def check_array(volume: np.ndarray, name: str = "input image") -> None:
    """Raise InputImageError unless ``volume`` is a non-empty, finite, non-constant 3D array."""
    if volume.ndim != 3:
        raise InputImageError(
            f"{name} has {volume.ndim} dimensions (shape {volume.shape}); a 3D CT volume is needed. "
            f"For a 4D series pick one time point; a 2D slice cannot be segmented in 3D."
        )
    if volume.size == 0:
        raise InputImageError(f"{name} is empty (shape {volume.shape}): load a CT volume with voxels in it.")
    if not np.issubdtype(volume.dtype, np.number) or np.issubdtype(volume.dtype, np.complexfloating):
        raise InputImageError(f"{name} has voxel type {volume.dtype}; a real-valued (integer or float) CT is needed.")
    if np.issubdtype(volume.dtype, np.floating):
        not_finite = int(volume.size - np.count_nonzero(np.isfinite(volume)))
        if not_finite:
            raise InputImageError(
                f"{name} has {not_finite} voxels that are NaN or infinite; the file is damaged or was "
                f"computed wrongly. Re-export the CT from its source (or replace those voxels) and try again."
            )
    low, high = volume.min(), volume.max()
    if low == high:
        raise InputImageError(
            f"{name} is constant (every voxel is {low}); there is nothing to segment. Check that the right "
            f"series was loaded and that it is not blank."
        )


def check_spacing(spacing: Sequence[float], name: str = "input image") -> None:
    """Raise InputImageError unless each of the three spacings is within 0.1..20 mm."""
    values = [float(s) for s in spacing]
    if len(values) != 3:
        raise InputImageError(f"{name}: expected 3 voxel spacings, got {values}.")
    bad = [s for s in values if not (math.isfinite(s) and MIN_SPACING_MM <= s <= MAX_SPACING_MM)]
    if bad:
        raise InputImageError(
            f"{name} has an absurd spacing {values} mm (each must be within {MIN_SPACING_MM:g}..{MAX_SPACING_MM:g} "
            f"mm). The file's header is probably wrong (e.g. spacing in m or cm, or lost on conversion): fix "
            f"the spacing in the header, e.g. re-export the DICOM series with 3D Slicer."
        )


def _sample(volume: np.ndarray) -> np.ndarray:
    flat = volume.reshape(-1)
    step = max(1, flat.size // _PERCENTILE_SAMPLE)
    return flat[::step]


def check_ct_intensities(volume: np.ndarray, name: str = "input image") -> None:
    """Raise NotCTError unless intensities look like CT in Hounsfield units (air below -500 HU).

    MR volumes and CT stored without its rescale slope/intercept (0..4095) have no negative values, so
    their 1st percentile is >= 0 and nothing is as dark as air.
    """
    first_percentile = float(np.percentile(_sample(volume), 1.0))
    minimum = float(volume.min())
    if first_percentile >= 0 or minimum > AIR_THRESHOLD_HU:
        raise NotCTError(
            f"{name} does not look like a CT in Hounsfield units: its intensities run from {minimum:g} to "
            f"{float(volume.max()):g} (1st percentile {first_percentile:g}) with nothing below "
            f"{AIR_THRESHOLD_HU:g} HU (air), as in MR or in CT stored without its rescale intercept. The "
            f"models are trained on CT only. If it is a CT without rescaling, re-export it in HU; "
            f"{NON_CT_ADVICE}."
        )


def estimate_prediction_bytes(
    shape: Sequence[int],
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    num_classes: int = 4,
) -> int:
    """Peak host memory of one prediction, roughly: input copies, resampled volume, accumulators, outputs."""
    voxels = math.prod(int(n) for n in shape)
    ratio = math.prod(float(s) / float(t) for s, t in zip(spacing, target_spacing, strict=True))
    low_res_voxels = voxels * ratio
    float_bytes = 4
    full_res = voxels * float_bytes * (2 + 2 * num_classes) + voxels  # input, normalised, probabilities x2, labels
    low_res = low_res_voxels * float_bytes * (1 + 2 * num_classes + 1)  # volume, accumulator, member sum, weights
    return int(full_res + low_res)


def check_prediction_memory(
    shape: Sequence[int],
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    num_classes: int = 4,
    available: int | None = None,
) -> None:
    """Raise InsufficientMemoryError before a prediction that would not fit in the available memory."""
    needed = estimate_prediction_bytes(shape, spacing, target_spacing, num_classes)
    require_memory(
        needed,
        f"Segmenting a {'x'.join(str(int(n)) for n in shape)} volume",
        "Crop the CT to the abdomen first (e.g. with Slicer's Crop Volume), close other programs, or use a "
        "machine with more memory.",
        available=available,
    )


def check_ct_volume(
    volume: np.ndarray,
    spacing: Sequence[float],
    allow_non_ct: bool = False,
    name: str = "input image",
) -> None:
    """All input checks except memory: array, spacing and, unless ``allow_non_ct``, CT-like intensities."""
    check_array(volume, name)
    check_spacing(spacing, name)
    if allow_non_ct:
        logger.info("Not checking that %s is CT (allow_non_ct).", name)
    else:
        check_ct_intensities(volume, name)
