"""Resampling a KiTS mask to a coarser grid given in anatomical terms (left-right, anterior-posterior,
superior-inferior), whatever the file's axis order."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def anatomical_axes(image: sitk.Image) -> list[int]:
    """For each image index axis (SimpleITK order), the LPS axis (0 LR, 1 AP, 2 SI) it runs along."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    axes = [int(np.argmax(np.abs(direction[:, d]))) for d in range(3)]
    if sorted(axes) != [0, 1, 2]:
        raise ValueError(f"direction {image.GetDirection()} is too oblique to tell the anatomical axes apart")
    return axes


def target_spacing(image: sitk.Image, spacing_lr_ap_si: tuple[float, float, float]) -> tuple[float, float, float]:
    """The anatomical spacing (LR, AP, SI mm) expressed along the image's own index axes."""
    return tuple(float(spacing_lr_ap_si[a]) for a in anatomical_axes(image))


def resample_to_spacing(image: sitk.Image, spacing_lr_ap_si: tuple[float, float, float], is_label: bool) -> sitk.Image:
    """Resample so that the physical box covered by the voxels stays the same.

    Label maps use SimpleITK's label-Gaussian interpolation (each label smoothed separately, then the
    most likely label kept), which keeps thin structures better than nearest neighbour.
    """
    new_spacing = np.asarray(target_spacing(image, spacing_lr_ap_si))
    old_spacing = np.asarray(image.GetSpacing())
    old_size = np.asarray(image.GetSize())
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    # Keep the outer corner of the first voxel where it was.
    corner = np.asarray(image.GetOrigin()) - direction @ (old_spacing / 2)
    origin = corner + direction @ (new_spacing / 2)
    interpolator = sitk.sitkLabelGaussian if is_label else sitk.sitkLinear
    return sitk.Resample(
        image, [int(s) for s in new_size], sitk.Transform(), interpolator, tuple(origin.tolist()),
        tuple(new_spacing.tolist()), image.GetDirection(), 0, image.GetPixelID(),
    )
