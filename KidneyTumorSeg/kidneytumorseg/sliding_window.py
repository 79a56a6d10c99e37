"""Sliding-window inference of one network over a volume, with Gaussian tile weighting and mirroring.

Tiles are placed as nnU-Net places them: along each axis ``ceil((size - patch) / (patch * (1 - overlap))) + 1``
evenly spaced starts, the first at 0 and the last flush with the end. A volume smaller than the patch is
padded (with 0, the mean of the normalised intensities), predicted and cropped back.

What is accumulated is the *softmax* of each tile (averaged over the mirrored copies), weighted by a
Gaussian importance map that trusts tile centres more than borders, in a float32 buffer; dividing by the
summed weights gives probabilities that sum to 1 at every voxel. Softmax (not logits) is accumulated so
that tiles, mirrorings and ensemble members are all averaged the same way, as probabilities.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from kidneytumorseg.cpu_inference import cpu_inference_network
from kidneytumorseg.errors import Cancelled
from kidneytumorseg.precision import autocast_context

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]


class CancelEvent(Protocol):
    """Anything with ``is_set()``, e.g. a ``threading.Event``."""

    def is_set(self) -> bool: ...


def gaussian_importance_map(patch_size: Sequence[int], sigma_scale: float = 0.125) -> np.ndarray:
    """Separable Gaussian over a patch: sigma = ``sigma_scale`` * patch size, max 1 at the centre, all > 0."""
    if sigma_scale <= 0:
        raise ValueError(f"gaussian_sigma_scale must be > 0, got {sigma_scale}; nnU-Net uses 0.125.")
    weights = np.ones((), dtype=np.float64)
    for size in patch_size:
        coordinates = np.arange(int(size), dtype=np.float64) - (int(size) - 1) / 2.0
        sigma = sigma_scale * int(size)
        profile = np.exp(-0.5 * (coordinates / sigma) ** 2)
        weights = np.multiply.outer(weights, profile / profile.max())
    weights = weights.astype(np.float32)
    # Far from the centre float32 can underflow to 0, and a voxel covered only by such borders would get
    # no weight at all: clamp to the smallest positive weight.
    positive = weights[weights > 0]
    floor = positive.min() if positive.size else np.float32(1.0)
    return np.maximum(weights, max(floor, np.finfo(np.float32).tiny))


def tile_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Evenly spaced tile starts along one axis, first at 0, last at ``size - patch`` (nnU-Net's rule)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile_overlap must be in [0, 1), got {overlap}; 0.5 is usual.")
    if patch <= 0:
        raise ValueError(f"patch size must be positive, got {patch}.")
    if size <= patch:
        return [0]
    step = patch * (1.0 - overlap)
    count = int(math.ceil((size - patch) / step)) + 1
    spacing = (size - patch) / (count - 1)
    return [int(round(spacing * i)) for i in range(count)]


def tile_slices(shape: Sequence[int], patch_size: Sequence[int], overlap: float) -> list[tuple[slice, ...]]:
    """Every tile of ``patch_size`` over a volume of ``shape`` (>= patch_size on each axis), as slices."""
    starts = [tile_starts(int(n), int(p), overlap) for n, p in zip(shape, patch_size, strict=True)]
    return [
        tuple(slice(start, start + int(p)) for start, p in zip(corner, patch_size, strict=True))
        for corner in itertools.product(*starts)
    ]


def _pad_widths(shape: Sequence[int], patch_size: Sequence[int]) -> list[tuple[int, int]]:
    widths = []
    for n, p in zip(shape, patch_size, strict=True):
        missing = max(0, int(p) - int(n))
        widths.append((missing // 2, missing - missing // 2))
    return widths


def _flip_sets(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of mirrored spatial axes, the unmirrored one first."""
    axes = sorted({int(a) for a in mirror_axes})
    bad = [a for a in axes if a not in (0, 1, 2)]
    if bad:
        raise ValueError(f"mirror_axes must be spatial axes 0, 1 or 2 (S, P, L), got {list(mirror_axes)}.")
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def _batches(tiles: list[tuple[slice, ...]], batch_size: int) -> Iterator[list[tuple[slice, ...]]]:
    for first in range(0, len(tiles), batch_size):
        yield tiles[first:first + batch_size]


def _forward_softmax(
    network: torch.nn.Module,
    batch: torch.Tensor,
    flip_sets: list[tuple[int, ...]],
    half_precision: bool,
) -> torch.Tensor:
    """Softmax of the network on a batch, averaged over all mirrorings (each flipped back), float32."""
    total = None
    for flip in flip_sets:
        dims = [2 + axis for axis in flip]
        inputs = torch.flip(batch, dims) if dims else batch
        with autocast_context(batch.device, half_precision):
            logits = network(inputs)
        if isinstance(logits, (list, tuple)):  # deep supervision: full resolution first
            logits = logits[0]
        probabilities = torch.softmax(logits.float(), dim=1)
        if dims:
            probabilities = torch.flip(probabilities, dims)
        total = probabilities if total is None else total + probabilities
    return total / len(flip_sets)


def sliding_window_predict(
    network: torch.nn.Module,
    volume: np.ndarray | torch.Tensor,
    patch_size: Sequence[int],
    tile_overlap: float = 0.5,
    mirror_axes: Sequence[int] = (),
    gaussian_sigma_scale: float = 0.125,
    batch_size: int = 1,
    device: torch.device | str = "cpu",
    accumulation_device: torch.device | str | None = None,
    half_precision: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelEvent | None = None,
    stage: str = "predicting",
) -> torch.Tensor:
    """Softmax probabilities ``(num_classes, S, P, L)`` (float32, on ``accumulation_device``) of ``network``.

    ``volume`` is the normalised volume, ``(S, P, L)`` or ``(channels, S, P, L)``. Tiles go to ``device`` in
    batches of ``batch_size``; the weighted sums are kept on ``accumulation_device`` (default: ``device``).
    ``half_precision``: the network runs under autocast, float16 on CUDA and bfloat16 on a CPU
    (:mod:`kidneytumorseg.precision`); softmax and sums stay float32. In float32 on a CPU the network runs
    channels-last with prepacked oneDNN convolutions (:mod:`kidneytumorseg.cpu_inference`).
    ``progress(stage, fraction)`` is called after every batch, the last time with 1.0; ``cancel.is_set()``
    is checked before every batch and raises Cancelled.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    device = torch.device(device)
    accumulation_device = device if accumulation_device is None else torch.device(accumulation_device)
    tensor = torch.as_tensor(volume, dtype=torch.float32)
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4:
        raise ValueError(f"volume must be (S, P, L) or (channels, S, P, L), got shape {tuple(tensor.shape)}.")
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3:
        raise ValueError(f"patch_size must have 3 entries (S, P, L), got {list(patch_size)}.")
    shape = tuple(tensor.shape[1:])
    widths = _pad_widths(shape, patch)
    if any(sum(w) for w in widths):
        flat_widths = [w for pair in reversed(widths) for w in pair]  # torch pads the last axis first
        tensor = torch.nn.functional.pad(tensor, flat_widths, value=0.0)
    padded_shape = tuple(tensor.shape[1:])
    tensor = tensor.to(accumulation_device)

    tiles = tile_slices(padded_shape, patch, tile_overlap)
    flip_sets = _flip_sets(mirror_axes)
    weights = torch.from_numpy(gaussian_importance_map(patch, gaussian_sigma_scale)).to(accumulation_device)
    weight_sum = torch.zeros(padded_shape, dtype=torch.float32, device=accumulation_device)
    accumulator: torch.Tensor | None = None
    network = cpu_inference_network(network.to(device).eval(), device, half_precision)
    logger.debug("Sliding window: %d tiles of %s over %s, %d mirrorings, batch %d on %s.",
                 len(tiles), patch, padded_shape, len(flip_sets), batch_size, device)

    done = 0
    with torch.no_grad():
        for batch_tiles in _batches(tiles, batch_size):
            if cancel is not None and cancel.is_set():
                raise Cancelled("Prediction cancelled; nothing was written.")
            batch = torch.stack([tensor[(slice(None), *tile)] for tile in batch_tiles]).to(device)
            probabilities = _forward_softmax(network, batch, flip_sets, half_precision).to(accumulation_device)
            if accumulator is None:
                accumulator = torch.zeros((probabilities.shape[1], *padded_shape), dtype=torch.float32,
                                          device=accumulation_device)
            for tile, tile_probabilities in zip(batch_tiles, probabilities, strict=True):
                accumulator[(slice(None), *tile)] += tile_probabilities * weights
                weight_sum[tile] += weights
            done += len(batch_tiles)
            if progress is not None:
                progress(stage, done / len(tiles))

    accumulator /= weight_sum
    crop = tuple(slice(before, before + n) for (before, _), n in zip(widths, shape, strict=True))
    return accumulator[(slice(None), *crop)]
