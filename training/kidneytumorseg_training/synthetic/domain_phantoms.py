"""Two CT "domains" of tiny kidney phantoms, for fine-tuning checks that must finish in minutes on a CPU.

Each case is a 6 mm volume of a body (soft tissue, air around it) holding one ellipsoid kidney (label 1) with a
tumor (2) at its edge and, in odd cases, a cyst (3). In the ``original`` domain the tumor enhances less than the
kidney (a portal-venous look); in the ``shifted`` domain it enhances more (an arterial-phase look: a
hyper-enhancing tumor), the noise is higher and the calibration is off by +15 HU. A network trained on the
original domain takes the shifted tumor for kidney, which is what fine-tuning on corrected shifted cases must fix.

Cases are written as "Export correction" writes them (imaging.nii.gz, segmentation.nii.gz, correction.json),
which is also a KiTS-layout dataset the fine-tuning can replay.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (24, 40, 40)  # z, y, x voxels at 6 mm
SPACING = 6.0
# HU of background (soft tissue), kidney, tumor, cyst; noise sd; calibration offset
DOMAINS = {
    "original": {"hu": (0.0, 180.0, 90.0, 10.0), "noise": 12.0, "offset": 0.0},
    "shifted": {"hu": (0.0, 180.0, 290.0, 10.0), "noise": 30.0, "offset": 15.0},
}
AIR_HU = -1000.0


def phantom(seed: int, domain: str) -> tuple[sitk.Image, sitk.Image]:
    """The CT (HU, int16) and label map of case ``seed`` in ``domain``; the geometry is the same for every case."""
    settings = DOMAINS[domain]
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = np.array([12.0, 20.0, 20.0]) + rng.uniform(-3, 3, size=3)
    radii = np.array([5.0, 9.0, 6.5]) * rng.uniform(0.85, 1.15, size=3)

    def ball(middle: np.ndarray, axes: np.ndarray) -> np.ndarray:
        return sum(((grid[i] - middle[i]) / axes[i]) ** 2 for i in range(3)) <= 1

    label = np.zeros(SHAPE, np.uint8)
    label[ball(centre, radii)] = 1
    side = 1 if seed % 2 else -1
    label[ball(centre + np.array([0.0, side * 0.6 * radii[1], 0.0]), np.full(3, rng.uniform(3.2, 4.2)))] = 2
    if seed % 2:
        label[ball(centre - np.array([0.0, 0.5 * radii[1], -1.5]), np.full(3, 1.8))] = 3
    image = np.choose(label, settings["hu"]).astype(np.float32) + settings["offset"]
    body = ((grid[1] - 20.0) / 19.0) ** 2 + ((grid[2] - 20.0) / 19.5) ** 2 <= 1
    image[~body] = AIR_HU
    image += rng.normal(0.0, settings["noise"], SHAPE).astype(np.float32)
    ct = sitk.GetImageFromArray(np.round(image).astype(np.int16))
    mask = sitk.GetImageFromArray(label)
    for item in (ct, mask):
        item.SetSpacing((SPACING,) * 3)
        item.SetOrigin((-120.0, -120.0, -70.0))
    return ct, mask


def write_cases(folder: Path, seeds: range | list[int], domain: str) -> Path:
    """Write the cases ``case_<seed>`` of ``domain`` into ``folder`` as exported corrections; returns it."""
    for seed in seeds:
        case = folder / f"case_{seed:05d}"
        case.mkdir(parents=True)
        ct, mask = phantom(seed, domain)
        sitk.WriteImage(ct, str(case / "imaging.nii.gz"))
        sitk.WriteImage(mask, str(case / "segmentation.nii.gz"))
        (case / "correction.json").write_text(json.dumps(
            {"model": "tiny", "version": "test", "time": "2026-01-01T00:00:00+00:00", "note": f"{domain} phantom"}))
    return folder
