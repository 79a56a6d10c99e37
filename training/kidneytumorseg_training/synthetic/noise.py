"""Smooth random fields for textures and organ shapes, cheap at any grid size.

A field with a correlation length of several mm is drawn on a coarse grid and interpolated up to the
target grid, so its cost does not grow with the number of voxels of the white noise.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(
    shape: tuple[int, ...], spacing: tuple[float, ...], scale_mm: float, rng: np.random.Generator
) -> np.ndarray:
    """A zero-mean, unit-variance random field (float32) with a correlation length of about ``scale_mm``."""
    coarse_step = max(scale_mm / 2.0, min(spacing))
    coarse_shape = tuple(int(np.ceil(n * s / coarse_step)) + 3 for n, s in zip(shape, spacing, strict=True))
    coarse = rng.standard_normal(coarse_shape).astype(np.float32)
    coarse = ndimage.gaussian_filter(coarse, sigma=1.0, mode="wrap")
    coarse /= max(float(coarse.std()), 1e-6)
    # Sample the coarse field at the fine grid's positions (trilinear), straight into one float32 array:
    # fine index i sits at coarse coordinate i * spacing / coarse_step + 1.
    scale = [s / coarse_step for s in spacing]
    field = ndimage.affine_transform(
        coarse, scale, offset=1.0, output_shape=tuple(shape), output=np.float32, order=1, mode="nearest"
    )
    _standardise(field)
    return field


def _standardise(field: np.ndarray) -> None:
    """Zero mean, unit variance, in place. The moments come from a fixed strided sample of about a million
    values: a full-size float64 std would need 16 bytes per voxel of temporaries."""
    sample = field.reshape(-1)[:: max(1, field.size // 1_000_000)].astype(np.float64)
    field -= np.float32(sample.mean())
    field /= np.float32(max(float(sample.std()), 1e-6))


def correlated_noise(
    shape: tuple[int, ...], sigma_voxels: tuple[float, ...], rng: np.random.Generator
) -> np.ndarray:
    """White noise blurred by a Gaussian (correlation in voxels per axis), rescaled to unit variance."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if any(s > 0 for s in sigma_voxels):
        ndimage.gaussian_filter(noise, sigma=sigma_voxels, mode="reflect", output=noise)
        # The variance of blurred white noise is known in closed form; it avoids a pass over the volume.
        gain = 1.0
        for s in sigma_voxels:
            if s > 0:
                kernel = _gaussian_kernel(s)
                gain *= float(np.sum(kernel**2))
        noise /= np.float32(np.sqrt(gain))
    return noise


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()
