"""What the scanner adds: partial-volume blur, correlated noise, metal streaks, HU calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kidneytumorseg_training.synthetic.frame import AnatomicalFrame
from kidneytumorseg_training.synthetic.noise import correlated_noise

HU_MIN, HU_MAX = -1024, 3071


@dataclass(frozen=True)
class ScannerSettings:
    """Per-case acquisition and reconstruction, drawn from the case's random generator."""

    noise_hu: float  # noise standard deviation in soft tissue
    noise_correlation: float  # in-plane correlation (Gaussian sigma, voxels)
    in_plane_blur: float  # reconstruction kernel (Gaussian sigma, voxels)
    slice_profile: float  # partial-volume blur across slices (Gaussian sigma, slices)
    calibration_offset: float  # HU
    metal: bool


def draw_scanner(rng: np.random.Generator) -> ScannerSettings:
    return ScannerSettings(
        noise_hu=float(rng.uniform(6, 28)),
        noise_correlation=float(rng.uniform(0.3, 1.3)),
        in_plane_blur=float(rng.uniform(0.35, 0.8)),
        slice_profile=float(rng.uniform(0.35, 0.65)),
        calibration_offset=float(rng.uniform(-6, 6)),
        metal=bool(rng.random() < 0.12),
    )


def acquire(
    hu: np.ndarray, frame: AnatomicalFrame, settings: ScannerSettings, rng: np.random.Generator,
    metal_sites: list[tuple[float, float, float]] | None = None,
) -> np.ndarray:
    """Turn an ideal HU volume (LPS grid, float32) into a scanner image (int16 HU), in place where possible."""
    if settings.metal and metal_sites:
        _add_metal(hu, frame, metal_sites, rng)
    # Partial volume: each slice averages its slab; the reconstruction kernel blurs in-plane.
    sigma = (settings.slice_profile, settings.in_plane_blur, settings.in_plane_blur)
    ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest", output=hu)  # line-buffered: in place is exact
    noise = correlated_noise(hu.shape, (0.0, settings.noise_correlation, settings.noise_correlation), rng)
    hu += np.float32(settings.noise_hu) * noise
    del noise
    hu += np.float32(settings.calibration_offset)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    np.rint(hu, out=hu)
    return hu.astype(np.int16)


def _add_metal(
    hu: np.ndarray, frame: AnatomicalFrame, sites: list[tuple[float, float, float]], rng: np.random.Generator
) -> None:
    """Dense implants with the bright and dark streaks that beam hardening and photon starvation cause."""
    extent = float(rng.uniform(8, 40))
    for centre in sites:
        radius = float(rng.uniform(2, 4))
        slab = frame.index_slices((-1e9, -1e9, centre[2] - extent / 2), (1e9, 1e9, centre[2] + extent / 2))
        if slab[0].stop <= slab[0].start:
            continue
        du, dv = frame.u - centre[0], frame.v - centre[1]
        distance = np.sqrt(du**2 + dv**2)
        angle = np.arctan2(dv, du)
        streaks = np.zeros(distance.shape, dtype=np.float32)
        for _ in range(3):
            frequency = int(rng.integers(3, 9))
            streaks += np.cos(frequency * angle + rng.uniform(0, 2 * np.pi)).astype(np.float32) ** 9
        streaks -= streaks.mean()
        amplitude = float(rng.uniform(120, 400))
        implant = distance <= radius
        pattern = np.where(implant, 0.0, amplitude * streaks / (1 + distance / 40.0)).astype(np.float32)
        target = hu[slab]
        target += pattern
        target[np.broadcast_to(implant, target.shape)] = float(rng.uniform(2500, 3000))
