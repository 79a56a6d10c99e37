"""The coarse-to-fine rows: a localizer that returns the case's reference mask, and the check of its labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peer_comparison.agreement import agreement


class ReferenceMaskLocalizer(torch.nn.Module):
    """A stand-in localizer returning a fixed foreground mask (on the localizer's grid) as logits.

    It takes only a tile the size of its mask: the localizer's patch must be the whole coarse volume.
    """

    def __init__(self, foreground: np.ndarray, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"A localizer needs at least 2 classes, got {num_classes}.")
        self.register_buffer("foreground", torch.from_numpy(np.asarray(foreground, dtype=np.float32)))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != tuple(self.foreground.shape):
            raise ValueError(f"The reference-mask localizer needs the whole coarse volume "
                             f"{tuple(self.foreground.shape)} as one tile, got {tuple(x.shape[2:])}.")
        foreground = self.foreground.expand(x.shape[0], 1, *self.foreground.shape).to(x.dtype)
        others = torch.full_like(foreground, -20.0).expand(-1, self.num_classes - 2, *self.foreground.shape)
        return torch.cat([20.0 * (1.0 - 2.0 * foreground), torch.zeros_like(foreground), others], dim=1)


@dataclass
class CascadeCheck:
    """How the coarse-to-fine run compares with our full run."""

    boxes: list[list[list[int]]]
    box_voxels: int
    voxels: int
    kidney_voxels: int
    in_boxes: tuple[float, float, float]
    on_kidney: tuple[float, float, float]


def check_cascade(workdir: Path, boxes: list[list[list[int]]], ours: np.ndarray) -> CascadeCheck:
    """Compare ``workdir/cascade-probabilities.npy`` with ``ours`` in the boxes and on ``workdir/kidney.npy``.

    ``boxes`` are ``[[start, stop]] * 3`` voxel ranges, as the cascade measurement reports them.
    """
    if not boxes:
        raise RuntimeError("The reference-mask localizer gave no box; is the case's segmentation empty?")
    probabilities = np.load(workdir / "cascade-probabilities.npy")
    kidney = np.load(workdir / "kidney.npy")
    inside = np.zeros(kidney.shape, dtype=bool)
    for box in boxes:
        inside[tuple(slice(start, stop) for start, stop in box)] = True
    return CascadeCheck(boxes=boxes, box_voxels=int(inside.sum()), voxels=int(inside.size),
                        kidney_voxels=int(kidney.sum()), in_boxes=agreement(probabilities, ours, inside),
                        on_kidney=agreement(probabilities, ours, kidney))


def cascade_totals(results: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Coarse-to-fine plus localizer-network seconds, per repeat."""
    return [c["seconds"] + loc["seconds"] for c, loc in zip(results["cascade"], results["localizer"], strict=True)]
