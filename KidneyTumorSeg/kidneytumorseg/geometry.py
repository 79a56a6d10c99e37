"""Voxel grids: re-orientation to LPS and back, and resampling to a model's spacing and back.

The predictor works on arrays in LPS order ``(S, P, L)`` (see docs/engine-contracts.md). Re-orientation
is a pure permutation and flip of the voxel array, the same one ``sitk.DICOMOrient(image, "LPS")`` does
(training data is re-oriented with it), so going back restores the exact input array and geometry.

Resampling keeps the outer corner of the first voxel fixed (as the training package does): a grid of
``round(n * spacing / target)`` voxels at exactly the target spacing. Linear resampling is done separably
in numpy: it equals SimpleITK's linear interpolation inside the grid, and beyond the outer voxel centres
(the far border when going back onto the input grid) it clamps per axis instead of falling off the grid.
B-spline and nearest-neighbour go through SimpleITK.
Spacings of arrays are in the array's axis order; spacings of SimpleITK images in SimpleITK (x, y, z) order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.errors import InputImageError

INTERPOLATORS: dict[str, int] = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
}

# Letter of a DICOM orientation code -> (physical LPS axis, +1 if the index runs towards L, P or S).
_CODE_LETTERS: dict[str, tuple[int, int]] = {
    "L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1),
}


@dataclass(frozen=True)
class Orientation:
    """How an image's voxel array maps onto the LPS array ``(S, P, L)``, and the image's exact geometry."""

    code: str
    axes: tuple[int, int, int]  # for each LPS array axis, the image array axis it comes from
    flips: tuple[bool, bool, bool]  # for each LPS array axis, whether it is reversed
    size: tuple[int, int, int]  # SimpleITK (x, y, z) order, as the image has them
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @property
    def lps_spacing(self) -> tuple[float, float, float]:
        """Spacing of the LPS array, in its axis order ``(si, ap, lr)``."""
        array_spacing = self.spacing[::-1]
        return tuple(float(array_spacing[axis]) for axis in self.axes)  # type: ignore[return-value]

    @property
    def lps_shape(self) -> tuple[int, int, int]:
        """Shape of the LPS array ``(S, P, L)``."""
        array_shape = self.size[::-1]
        return tuple(int(array_shape[axis]) for axis in self.axes)  # type: ignore[return-value]


def orientation_of(image: sitk.Image) -> Orientation:
    """The permutation and flips that bring ``image``'s array to LPS order (as sitk.DICOMOrient does)."""
    if image.GetDimension() != 3:
        raise InputImageError(f"Re-orientation needs a 3D image, got {image.GetDimension()}D: give a 3D volume.")
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    physical = [_CODE_LETTERS[letter] for letter in code]  # per SimpleITK axis
    axes, flips = [], []
    for lps_array_axis in range(3):
        wanted = 2 - lps_array_axis  # array axis 0 is S (physical 2), axis 2 is L (physical 0)
        image_axis = next(i for i, (axis, _) in enumerate(physical) if axis == wanted)
        axes.append(2 - image_axis)
        flips.append(physical[image_axis][1] < 0)
    return Orientation(
        code=code,
        axes=tuple(axes),  # type: ignore[arg-type]
        flips=tuple(flips),  # type: ignore[arg-type]
        size=tuple(int(s) for s in image.GetSize()),  # type: ignore[arg-type]
        spacing=tuple(float(s) for s in image.GetSpacing()),  # type: ignore[arg-type]
        origin=tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
        direction=tuple(float(d) for d in image.GetDirection()),
    )


def array_to_lps(array: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Permute and flip the last three axes of an image array (numpy order) into LPS order (a view)."""
    lead = array.ndim - 3
    moved = np.transpose(array, [*range(lead), *(lead + axis for axis in orientation.axes)])
    flipped = [lead + axis for axis, flip in enumerate(orientation.flips) if flip]
    return np.flip(moved, axis=flipped) if flipped else moved


def array_from_lps(array_lps: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Inverse of :func:`array_to_lps`: the last three axes back in the image's own array order (a view)."""
    lead = array_lps.ndim - 3
    flipped = [lead + axis for axis, flip in enumerate(orientation.flips) if flip]
    unflipped = np.flip(array_lps, axis=flipped) if flipped else array_lps
    inverse = [0, 0, 0]
    for lps_axis, image_axis in enumerate(orientation.axes):
        inverse[image_axis] = lps_axis
    return np.transpose(unflipped, [*range(lead), *(lead + axis for axis in inverse)])


def to_lps(image: sitk.Image) -> tuple[np.ndarray, tuple[float, float, float], Orientation]:
    """The image's voxels as a contiguous LPS array ``(S, P, L)``, its spacing ``(si, ap, lr)``, and how to go back.

    The array is always a copy: for an image already stored in LPS order a view would share the image's
    buffer and dangle once a temporary image (``to_lps(sitk.Cast(...))``) is freed.
    """
    orientation = orientation_of(image)
    array = np.array(array_to_lps(sitk.GetArrayViewFromImage(image), orientation), order="C", copy=True)
    return array, orientation.lps_spacing, orientation


def image_from_lps(array_lps: np.ndarray, orientation: Orientation) -> sitk.Image:
    """An image on the original grid (exact size, spacing, origin, direction) from an LPS array of its voxels."""
    if tuple(array_lps.shape) != orientation.lps_shape:
        raise InputImageError(
            f"The LPS array has shape {tuple(array_lps.shape)} but the image grid needs {orientation.lps_shape}: "
            f"resample predictions back onto the input grid before writing them."
        )
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_from_lps(array_lps, orientation)))
    image.SetSpacing(orientation.spacing)
    image.SetOrigin(orientation.origin)
    image.SetDirection(orientation.direction)
    return image


def lps_image(array_lps: np.ndarray, orientation: Orientation) -> sitk.Image:
    """The LPS array as an image with the geometry sitk.DICOMOrient(image, "LPS") would give (for debugging)."""
    direction = np.asarray(orientation.direction).reshape(3, 3)
    spacing = np.asarray(orientation.spacing)
    first_voxel = np.zeros(3)
    new_direction = np.zeros((3, 3))
    for lps_array_axis, (array_axis, flip) in enumerate(zip(orientation.axes, orientation.flips, strict=True)):
        image_axis, new_axis = 2 - array_axis, 2 - lps_array_axis
        if flip:
            first_voxel[image_axis] = orientation.size[image_axis] - 1
        new_direction[:, new_axis] = direction[:, image_axis] * (-1.0 if flip else 1.0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_lps))
    image.SetSpacing(tuple(float(s) for s in orientation.lps_spacing[::-1]))
    image.SetOrigin(tuple((np.asarray(orientation.origin) + direction @ (first_voxel * spacing)).tolist()))
    image.SetDirection(tuple(new_direction.ravel().tolist()))
    return image


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> tuple[int, ...]:
    """Grid size at ``target_spacing`` covering the same extent: ``max(1, round(n * spacing / target))``."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing, strict=True))


def _interpolator(interpolation: str) -> int:
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"Unknown interpolation {interpolation!r}; use one of {sorted(INTERPOLATORS)}.")
    return INTERPOLATORS[interpolation]


def grid_positions(first: int, size: int, ratio: float, count: int) -> np.ndarray:
    """Where voxels ``first .. first + size - 1`` of one grid fall on another grid of ``count`` voxels that
    shares its first-voxel corner (``ratio`` = this grid's spacing / the other's), clamped to the other grid's
    outer voxel centres."""
    return np.clip((np.arange(first, first + size, dtype=np.float64) + 0.5) * ratio - 0.5, 0.0, count - 1)


def linear_at(array: np.ndarray, axis: int, positions: np.ndarray, count: int, offset: int = 0) -> np.ndarray:
    """Linear interpolation along ``axis`` at ``positions`` (voxel coordinates of a ``count``-voxel axis, as
    :func:`grid_positions` gives them) of ``array``, which holds that axis from voxel ``offset`` on."""
    below = np.floor(positions).astype(np.intp)
    above = np.minimum(below + 1, count - 1)
    shape = [1] * array.ndim
    shape[axis] = positions.size
    weight = (positions - below).astype(np.float32).reshape(shape)
    out = np.take(array, below - offset, axis=axis)
    out *= 1.0 - weight
    out += np.take(array, above - offset, axis=axis) * weight
    return out


def resampling_axis_order(old_shape: Sequence[int], new_shape: Sequence[int]) -> list[int]:
    """The order in which separable resampling treats the axes: shrinking axes first keeps the intermediate
    arrays small (and a window of the grid, :mod:`kidneytumorseg.model_window`, sums in the same order)."""
    return sorted(range(3), key=lambda axis: new_shape[axis] / old_shape[axis])


def _linear_along_axis(array: np.ndarray, axis: int, size: int, ratio: float) -> np.ndarray:
    """Linear interpolation along one axis onto ``size`` voxels, ``ratio`` = new spacing / old spacing.

    Both grids share the outer corner of their first voxel; positions past the outer voxel centres take
    the border value (clamped per axis, so a border voxel is still interpolated along the other axes).
    """
    count = array.shape[axis]
    return linear_at(array, axis, grid_positions(0, size, ratio, count), count)


def _resample_3d(
    array: np.ndarray,
    spacing: Sequence[float],
    shape: Sequence[int],
    new_spacing: Sequence[float],
    interpolation: str,
) -> np.ndarray:
    """Resample one 3D array between two grids sharing the outer corner of their first voxel."""
    if interpolation == "linear":
        out = np.asarray(array, dtype=np.float32)
        for axis in resampling_axis_order(out.shape, shape):
            if shape[axis] != out.shape[axis] or not np.isclose(spacing[axis], new_spacing[axis], rtol=1e-6):
                out = _linear_along_axis(out, axis, int(shape[axis]), float(new_spacing[axis]) / float(spacing[axis]))
        return np.ascontiguousarray(out)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    image.SetOrigin(tuple(float(s) / 2 for s in spacing[::-1]))
    resampled = sitk.Resample(
        image,
        [int(n) for n in shape[::-1]],
        sitk.Transform(),
        _interpolator(interpolation),
        [float(s) / 2 for s in new_spacing[::-1]],
        [float(s) for s in new_spacing[::-1]],
        [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        0.0,
        sitk.sitkFloat32,
        True,  # nearest-neighbour extrapolation: far-border voxels beyond the last centre keep a value
    )
    return sitk.GetArrayFromImage(resampled)


def _same_grid(
    shape: Sequence[int], spacing: Sequence[float], new_shape: Sequence[int], new_spacing: Sequence[float]
) -> bool:
    return tuple(shape) == tuple(new_shape) and np.allclose(spacing, new_spacing, rtol=1e-6, atol=0.0)


def resample_array(
    array: np.ndarray,
    spacing: Sequence[float],
    target_spacing: Sequence[float],
    interpolation: str = "linear",
) -> np.ndarray:
    """Resample a 3D array (or channels-first 4D) to ``target_spacing``; float32; unchanged if already there."""
    new_shape = resampled_shape(array.shape[-3:], spacing, target_spacing)
    return resample_to_shape(array, spacing, new_shape, target_spacing, interpolation)


def resample_to_shape(
    array: np.ndarray,
    spacing: Sequence[float],
    shape: Sequence[int],
    new_spacing: Sequence[float],
    interpolation: str = "linear",
) -> np.ndarray:
    """Resample a 3D array (or each channel of a channels-first 4D one) onto the grid ``shape`` x ``new_spacing``.

    Use it to bring a low-resolution prediction back onto the exact input grid: pass the input's shape and
    spacing. Returns float32; returns the array itself (as float32) when the grids are the same.
    """
    if array.ndim not in (3, 4):
        raise ValueError(f"Resampling needs a 3D array or channels-first 4D array, got shape {array.shape}.")
    if _same_grid(array.shape[-3:], spacing, shape, new_spacing):
        return np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        return _resample_3d(array, spacing, shape, new_spacing, interpolation)
    out = np.empty((array.shape[0], *(int(n) for n in shape)), dtype=np.float32)
    for channel in range(array.shape[0]):
        out[channel] = _resample_3d(array[channel], spacing, shape, new_spacing, interpolation)
    return out


def resample_image_to_spacing(
    image: sitk.Image, target_spacing: Sequence[float], interpolation: str = "linear"
) -> sitk.Image:
    """Resample a SimpleITK image to ``target_spacing`` (its own x, y, z order), keeping the first voxel's corner."""
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    new_spacing = np.asarray(target_spacing, dtype=float)
    size = resampled_shape(image.GetSize(), spacing, new_spacing)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    corner = np.asarray(image.GetOrigin(), dtype=float) - direction @ (spacing / 2)
    origin = corner + direction @ (new_spacing / 2)
    return sitk.Resample(
        image, [int(n) for n in size], sitk.Transform(), _interpolator(interpolation), origin.tolist(),
        new_spacing.tolist(), image.GetDirection(), 0.0, image.GetPixelID(), True,
    )


def resample_image_onto(image: sitk.Image, reference: sitk.Image, interpolation: str = "linear") -> sitk.Image:
    """Resample ``image`` onto ``reference``'s exact grid (size, spacing, origin and direction copied)."""
    resampled = sitk.Resample(image, reference, sitk.Transform(), _interpolator(interpolation), 0.0,
                              image.GetPixelID(), True)
    resampled.CopyInformation(reference)
    return resampled
