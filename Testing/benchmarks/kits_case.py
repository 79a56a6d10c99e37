"""A tiny case in KiTS layout for the benchmark-logic tests (imported by name: ``from kits_case import ...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

SHAPE = (8, 24, 24)  # z, y, x
SPACING = (1.5, 1.5, 3.0)  # x, y, z in SimpleITK's order


def write_case(folder: Path, seed: int) -> None:
    """A case in KiTS layout: a CT-like int16 image and a kidney with a tumor and a cyst."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 6:18, 4 + seed % 3:16 + seed % 3] = 1
    labels[3:5, 8:12, 8:11] = 2
    labels[3:5, 13:16, 9:12] = 3
    image = (rng.normal(0, 20, SHAPE) + np.where(labels > 0, 150, -100)).astype(np.int16)
    folder.mkdir(parents=True)
    for array, name in ((image, "imaging.nii.gz"), (labels, "segmentation.nii.gz")):
        volume = sitk.GetImageFromArray(array)
        volume.SetSpacing(SPACING)
        sitk.WriteImage(volume, str(folder / name))
