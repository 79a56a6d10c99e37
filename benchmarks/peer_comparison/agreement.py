"""How far a row's probabilities are from ours: the columns ``max |dp| vs ours``, ``99.9% |dp|``, ``labels = ours``."""

from __future__ import annotations

import numpy as np


def agreement(
    probabilities: np.ndarray, ours: np.ndarray, where: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Largest |dp| over voxels and classes, its 99.9th percentile over voxels, share of equal argmax labels.

    ``probabilities`` and ``ours`` are ``(C, S, P, L)``; ``where`` (a boolean ``(S, P, L)`` mask) restricts all
    three to its voxels.
    """
    if probabilities.shape != ours.shape:
        raise RuntimeError(f"Probabilities of shape {probabilities.shape} cannot be compared with ours {ours.shape}.")
    per_voxel = np.abs(probabilities - ours).max(axis=0)
    same = probabilities.argmax(0) == ours.argmax(0)
    if where is not None:
        per_voxel, same = per_voxel[where], same[where]
    return float(per_voxel.max()), float(np.percentile(per_voxel, 99.9)), float(same.mean())


def agreement_text(values: tuple[float, float, float], suffix: str = "") -> tuple[str, str, str]:
    """The three table cells of :func:`agreement`'s values; ``suffix`` (e.g. " in boxes") after the first and last."""
    return f"{values[0]:.1e}{suffix}", f"{values[1]:.1e}", f"{100 * values[2]:.3f}%{suffix}"
