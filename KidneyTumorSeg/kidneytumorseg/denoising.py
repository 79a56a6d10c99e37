"""Optional median denoising of the network input (TuNet, seed 003: "denoised the data using a 3 x 3 x 3 median
filter"), a member's ``preprocessing.median_filter`` in model.json (0 or absent: off).

It is applied to the normalised image at the member's target spacing, in inference and in training alike.
Normalisation is monotonic, so filtering before or after it gives the same voxels. Borders repeat the edge
voxel (``mode="nearest"``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def check_median_size(size: int) -> int:
    """``size`` as int: 0 (off) or an odd width >= 3; ValueError otherwise."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0 or (size and size % 2 == 0) \
            or size == 1:
        raise ValueError(f"median_filter must be 0 (off) or an odd width >= 3 such as 3 (a 3x3x3 median), "
                         f"got {size!r}.")
    return int(size)


def median_denoise(volume: np.ndarray, size: int) -> np.ndarray:
    """``size``-wide cubic median of a 3D volume (float32 copy); ``size`` 0 returns the volume unchanged."""
    size = check_median_size(size)
    if size == 0:
        return volume
    if np.ndim(volume) != 3:
        raise ValueError(f"median_denoise needs a 3D volume (S, P, L), got shape {np.shape(volume)}.")
    return ndimage.median_filter(np.asarray(volume, dtype=np.float32), size=size, mode="nearest")
