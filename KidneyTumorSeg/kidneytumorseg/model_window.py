"""Windows of the whole volume's model grid: a crop resampled exactly as the whole volume would be.

The whole-volume run resamples the input (``N`` voxels at spacing ``s`` per axis) onto the model grid of
``M = round(N s / t)`` voxels at the model spacing ``t`` that shares the input's first-voxel corner
(:mod:`kidneytumorseg.geometry`), and its probabilities back the same way. A crop resampled on its own starts a
new model grid at the crop's corner: unless the crop starts at a multiple of ``t / s`` voxels that grid is
shifted by a fraction of a voxel, so the network sees slightly different intensities and its labels shift at
the borders. The coarse-to-fine cascade therefore resamples a *window* of the whole volume's model grid
instead: :func:`model_window` says which model voxels a box needs and which input voxels they read,
:func:`resample_into_window` gives the model voxels' values (the same float32 numbers the whole-volume
resampling gives there) and :func:`resample_from_window` brings the window's probabilities back onto the
box's input voxels, as the whole-volume run brings its own back.

Linear interpolation only, the predictor's default; boxes are LPS slices ``(S, P, L)`` on the input grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kidneytumorseg.geometry import grid_positions, linear_at, resampled_shape, resampling_axis_order

Box = tuple[slice, slice, slice]
__all__ = ["ModelWindow", "grow_about_centre", "model_window", "resample_from_window", "resample_into_window"]


@dataclass(frozen=True)
class ModelWindow:
    """``window``: model-grid voxels (indices on the whole volume's model grid) covering a box and what
    bringing the box back needs; ``source``: the input voxels those model voxels are interpolated from."""

    window: Box
    source: Box


def _needed(positions: np.ndarray, count: int) -> slice:
    """The voxels linear interpolation at ``positions`` reads (the one below and the one above each)."""
    below = np.floor(positions).astype(np.intp)
    return slice(int(below.min()), int(min(below.max() + 1, count - 1)) + 1)


def grow_about_centre(cut: slice, size: int, count: int) -> slice:
    """``cut`` grown about its centre to at least ``size`` voxels, inside ``0 .. count`` (as far as it allows)."""
    wanted = min(count, size)
    extent = cut.stop - cut.start
    if extent >= wanted:
        return cut
    start = min(max(0, cut.start - (wanted - extent) // 2), count - wanted)
    return slice(start, start + wanted)


def model_window(box: Box, shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float],
                 minimum: Sequence[int] | None = None) -> ModelWindow:
    """The model-grid window whose probabilities, brought back, cover every input voxel of ``box``, grown about
    its centre to at least ``minimum`` model voxels per axis (e.g. the network's patch, so that the box is
    segmented with its real surroundings in one tile, not padded), and the input voxels the window reads
    (``shape``/``spacing``: the whole input volume's)."""
    model_shape = resampled_shape(shape, spacing, target_spacing)
    minimum = minimum if minimum is not None else (1, 1, 1)
    window, source = [], []
    for cut, n, m, s, t, least in zip(box, shape, model_shape, spacing, target_spacing, minimum, strict=True):
        if not 0 <= cut.start < cut.stop <= n:
            raise ValueError(f"The box {box} does not lie inside the volume {tuple(shape)}.")
        back = grow_about_centre(_needed(grid_positions(cut.start, cut.stop - cut.start, s / t, m), m), int(least), m)
        window.append(back)
        source.append(_needed(grid_positions(back.start, back.stop - back.start, t / s, n), n))
    return ModelWindow(window=tuple(window), source=tuple(source))  # type: ignore[arg-type]


def _resample(array: np.ndarray, offsets: Sequence[int], targets: Sequence[slice], old_shape: Sequence[int],
              new_shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]) -> np.ndarray:
    out = np.asarray(array, dtype=np.float32)
    for axis in resampling_axis_order(old_shape, new_shape):
        cut = targets[axis]
        if old_shape[axis] == new_shape[axis] and np.isclose(old_spacing[axis], new_spacing[axis], rtol=1e-6):
            index = [slice(None)] * 3
            index[axis] = slice(cut.start - offsets[axis], cut.stop - offsets[axis])
            out = out[tuple(index)]
            continue
        positions = grid_positions(cut.start, cut.stop - cut.start, float(new_spacing[axis]) / float(old_spacing[axis]),
                               int(old_shape[axis]))
        out = linear_at(out, axis, positions, int(old_shape[axis]), offsets[axis])
    return np.ascontiguousarray(out)


def resample_into_window(crop: np.ndarray, window: ModelWindow, shape: Sequence[int], spacing: Sequence[float],
                         target_spacing: Sequence[float]) -> np.ndarray:
    """The model-grid window's values (float32), from ``crop`` = the input volume's ``window.source`` voxels."""
    expected = tuple(cut.stop - cut.start for cut in window.source)
    if tuple(crop.shape) != expected:
        raise ValueError(f"The crop has shape {tuple(crop.shape)} but the window reads {expected} input voxels.")
    model_shape = resampled_shape(shape, spacing, target_spacing)
    return _resample(crop, [cut.start for cut in window.source], window.window, shape, model_shape, spacing,
                     target_spacing)


def resample_from_window(values: np.ndarray, window: ModelWindow, box: Box, shape: Sequence[int],
                         spacing: Sequence[float], target_spacing: Sequence[float]) -> np.ndarray:
    """Channels-first model-grid ``values`` of ``window`` brought back onto the input voxels of ``box``."""
    model_shape = resampled_shape(shape, spacing, target_spacing)
    offsets = [cut.start for cut in window.window]
    out = np.empty((values.shape[0], *(cut.stop - cut.start for cut in box)), dtype=np.float32)
    for channel in range(values.shape[0]):
        out[channel] = _resample(values[channel], offsets, box, model_shape, shape, target_spacing, spacing)
    return out

