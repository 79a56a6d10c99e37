"""2.5D members: a dimension-2 network run slice by slice along the axial (S) axis, each slice seen together
with its ``k`` neighbours above and below as channels (``2k + 1`` slices; k = 0 is plain 2D).

A member is 2.5D when its ``network.dimension`` is 2; ``preprocessing.context_slices`` in model.json is ``k``
(default 0), ``patch_size`` is in-plane ``[P, L]``, and ``network.in_channels`` must be
``channels * (2k + 1)`` (``channels`` = 1, or the refiner's stage-input channels).

Channel order, the same in training (:func:`centre_slab`) and inference (:func:`slab_channels`): input channel
``c`` at slice offset ``j - k`` (``j = 0 .. 2k``) is network channel ``c * (2k + 1) + j``. Beyond the first and
last slice the edge slice is repeated. Inference runs the in-plane sliding window (Gaussian weights,
mirroring about P and L) on chunks of slices, so memory stays bounded whatever the number of slices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from kidneytumorseg.sliding_window import CancelEvent, ProgressCallback, sliding_window_predict

CHUNK_SLICES = 16


def _channels_first(volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim == 3:
        return volume[None]
    if volume.ndim != 4:
        raise ValueError(f"expected a volume (S, P, L) or (C, S, P, L), got shape {volume.shape}.")
    return volume


def _check_context(context: int) -> int:
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 0:
        raise ValueError(f"context_slices must be an integer >= 0 (k neighbours on each side), got {context!r}.")
    return int(context)


def _slabs(padded: np.ndarray, context: int) -> np.ndarray:
    """``(C, T + 2k, P, L)`` -> ``(C * (2k + 1), T, P, L)`` without padding."""
    width = 2 * context + 1
    count = padded.shape[1] - 2 * context
    stacked = np.stack([padded[:, j:j + count] for j in range(width)], axis=1)  # (C, 2k+1, T, P, L)
    return stacked.reshape(padded.shape[0] * width, count, *padded.shape[2:])


def slab_channels(volume: np.ndarray, context: int) -> np.ndarray:
    """The 2.5D input of every slice: ``(C, S, P, L)`` (or ``(S, P, L)``) -> ``(C * (2k + 1), S, P, L)``, where
    slice ``s`` holds slices ``s - k .. s + k`` of each channel (edge slices repeated)."""
    context = _check_context(context)
    volume = _channels_first(volume)
    padded = np.pad(volume, ((0, 0), (context, context), (0, 0), (0, 0)), mode="edge")
    return np.ascontiguousarray(_slabs(padded, context), dtype=np.float32)


def centre_slab(patch: np.ndarray, context: int) -> np.ndarray:
    """The 2.5D input of a patch's centre slice (training): ``(C, 2k + 1, P, L)`` -> ``(C * (2k + 1), P, L)``."""
    context = _check_context(context)
    patch = _channels_first(patch)
    if patch.shape[1] != 2 * context + 1:
        raise ValueError(f"a 2.5D patch with context {context} needs {2 * context + 1} slices, got {patch.shape[1]}.")
    return np.ascontiguousarray(patch.reshape(patch.shape[0] * patch.shape[1], *patch.shape[2:]))


class SliceNetwork(nn.Module):
    """A 2D network seen as a 3D one: ``(B, C, T, P, L)`` -> logits ``(B, K, T, P, L)``, every slice on its own."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, count = x.shape[:3]
        flat = x.permute(0, 2, 1, 3, 4).reshape(batch * count, channels, *x.shape[3:])
        logits = self.network(flat)
        if isinstance(logits, (list, tuple)):  # deep supervision: full resolution first
            logits = logits[0]
        return logits.reshape(batch, count, logits.shape[1], *logits.shape[2:]).permute(0, 2, 1, 3, 4)


def slice_mirror_axes(mirror_axes: Sequence[int]) -> tuple[int, ...]:
    """The mirror axes a 2.5D member can use: in-plane only (P = 1, L = 2)."""
    return tuple(int(axis) for axis in mirror_axes if int(axis) in (1, 2))


def predict_slices(
    network: nn.Module,
    volume: np.ndarray,
    context: int,
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
    chunk_slices: int = CHUNK_SLICES,
) -> torch.Tensor:
    """Softmax probabilities ``(K, S, P, L)`` of a 2D ``network`` applied slice by slice with ``context``
    neighbouring slices as channels. ``volume``: ``(S, P, L)`` or ``(C, S, P, L)`` normalised input;
    ``patch_size``: in-plane ``(P, L)`` (a leading 1 is accepted). The rest as
    :func:`kidneytumorseg.sliding_window.sliding_window_predict`; mirroring about S is ignored."""
    context = _check_context(context)
    patch = tuple(int(p) for p in patch_size)
    patch = patch[1:] if len(patch) == 3 and patch[0] == 1 else patch
    if len(patch) != 2:
        raise ValueError(f"a 2.5D member's patch_size is in-plane (P, L), got {list(patch_size)}.")
    volume = _channels_first(volume)
    padded = np.pad(volume, ((0, 0), (context, context), (0, 0), (0, 0)), mode="edge")
    count = volume.shape[1]
    starts = list(range(0, count, max(1, int(chunk_slices))))
    adapter = SliceNetwork(network)
    parts = []
    for index, first in enumerate(starts):
        last = min(count, first + chunk_slices)
        slabs = np.ascontiguousarray(_slabs(padded[:, first:last + 2 * context], context), dtype=np.float32)

        def report(name: str, fraction: float, index: int = index) -> None:
            if progress is not None:
                progress(name, (index + fraction) / len(starts))

        parts.append(sliding_window_predict(
            adapter, slabs, (1, *patch), tile_overlap, slice_mirror_axes(mirror_axes), gaussian_sigma_scale,
            batch_size, device, accumulation_device, half_precision, report, cancel, stage))
    return torch.cat(parts, dim=1)
