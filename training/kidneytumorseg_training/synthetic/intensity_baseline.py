"""An intensity-only voxel classifier: the best Hounsfield interval for a label, fitted on training cases.

It is the yardstick of the synthetic data's realism: if one HU interval separated tumor from everything
else, a network could learn a threshold instead of anatomy. Fitting is exact over 5-HU bins: for every
interval [low, high) the Dice on the pooled training voxels is computed from cumulative histograms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

BIN_HU = 5
LOW_HU, HIGH_HU = -1025, 3075
EDGES = np.arange(LOW_HU, HIGH_HU + BIN_HU, BIN_HU)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    training_dice: float

    def predict(self, ct: np.ndarray) -> np.ndarray:
        return (ct >= self.low) & (ct < self.high)


def _histograms(cases: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    positive = np.zeros(len(EDGES) - 1)
    negative = np.zeros(len(EDGES) - 1)
    for ct, target in cases:
        positive += np.histogram(ct[target], bins=EDGES)[0]
        negative += np.histogram(ct[~target], bins=EDGES)[0]
    return positive, negative


def fit_interval(cases: Iterable[tuple[np.ndarray, np.ndarray]]) -> Interval:
    """Best HU interval for the boolean targets of ``cases`` (pairs of CT array and target mask)."""
    positive, negative = _histograms(cases)
    total_positive = positive.sum()
    if total_positive == 0:
        raise ValueError("the training cases hold no voxel of the target label")
    cum_pos = np.concatenate([[0.0], np.cumsum(positive)])
    cum_neg = np.concatenate([[0.0], np.cumsum(negative)])
    # Interval [edge i, edge j) for all i < j: TP = cum_pos[j] - cum_pos[i], FP likewise.
    tp = cum_pos[None, :] - cum_pos[:, None]
    fp = cum_neg[None, :] - cum_neg[:, None]
    dice = np.where(np.triu(np.ones_like(tp, dtype=bool), 1), 2 * tp / (tp + fp + total_positive + 1e-12), -1)
    i, j = np.unravel_index(int(np.argmax(dice)), dice.shape)
    return Interval(low=float(EDGES[i]), high=float(EDGES[j]), training_dice=float(dice[i, j]))


def dice(prediction: np.ndarray, target: np.ndarray) -> float:
    denominator = int(prediction.sum()) + int(target.sum())
    return 1.0 if denominator == 0 else 2.0 * int((prediction & target).sum()) / denominator
