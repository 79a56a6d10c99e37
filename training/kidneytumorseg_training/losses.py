"""Segmentation losses: logits ``(B, C, S, P, L)`` against integer targets ``(B, S, P, L)``.

- :class:`DiceCELoss`: nnU-Net's soft Dice (foreground classes, smooth 1e-5, optional batch Dice) plus
  cross-entropy, 1:1. The Dice part is reported as ``1 - Dice`` (nnU-Net logs ``-Dice``; same gradient).
- :class:`ExpLogLoss`: exponential logarithmic loss (Wong et al., MICCAI 2018) with the class weights of
  Zhao & Zeng, "Multi scale supervised 3D U-Net for kidney and tumor segmentation" (KiTS19, 2019).
- :class:`FocalWeightedDiceLoss`: focal loss (gamma 2) plus class-weighted soft Dice (the KiTS19 two-stage
  tumor network; the paper gives no weights, so they default to Zhao & Zeng's).
- :class:`RegionLoss`: region-based training on the KiTS regions with sigmoid outputs: BCE + soft Dice.
- :class:`DeepSupervisionLoss`: wraps any of them for a list of outputs, full resolution first.
- :class:`DecayingDeepSupervisionLoss`: the same with auxiliary weights that decay over the epochs (the KiTS19
  two-stage kidney network: 0.33, times 0.8 every 15 epochs).

Every loss takes integer labels, so :class:`DeepSupervisionLoss` can downsample the target once for any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from kidneytumorseg.labels import KITS_REGIONS

logger = logging.getLogger(__name__)

# Zhao & Zeng 2019, eq. (2) and (3): Dice weights kidney 0.4, tumor 0.6; cross-entropy weights background 0.28,
# kidney 0.28, tumor 0.44. KiTS19 had no cyst label; with 4 classes the cyst (a renal mass, rare and hard like
# the tumor) takes the tumor's weight, and the weights are renormalised to sum 1 as the paper's do.
_PAPER_DICE_WEIGHTS = {3: (0.4, 0.6), 4: (0.4, 0.6, 0.6)}
_PAPER_CE_WEIGHTS = {3: (0.28, 0.28, 0.44), 4: (0.28, 0.28, 0.44, 0.44)}


def _check(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if logits.ndim < 3 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits (B, C, *spatial) and target (B, *spatial), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    if target.is_floating_point():
        raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
    return target.long()


def _one_hot(target: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``(B, *spatial)`` labels -> ``(B, C, *spatial)`` one-hot in ``like``'s dtype."""
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"target labels must lie in [0, {num_classes - 1}], got {int(target.min())}.."
                         f"{int(target.max())}")
    return torch.zeros_like(like).scatter_(1, target[:, None], 1.0)


def soft_dice(probs: torch.Tensor, onehot: torch.Tensor, smooth: float = 1e-5, batch_dice: bool = False
              ) -> torch.Tensor:
    """Soft Dice per channel, nnU-Net style: ``(2 tp + smooth) / (2 tp + fp + fn + smooth)``.

    Returns ``(C,)`` with ``batch_dice`` (sums over batch and space), else ``(B, C)``.
    """
    axes = tuple(range(2, probs.ndim))
    intersect = (probs * onehot).sum(axes)
    total = probs.sum(axes) + onehot.sum(axes)
    if batch_dice:
        intersect, total = intersect.sum(0), total.sum(0)
    return (2 * intersect + smooth) / (total + smooth).clamp_min(1e-8)


def _normalised(weights: Sequence[float] | None, default: dict[int, tuple[float, ...]], num_classes: int,
                count: int, what: str, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        weights = default.get(num_classes, (1.0,) * count)
    w = torch.as_tensor(list(weights), dtype=like.dtype, device=like.device)
    if w.numel() != count or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"{what} needs {count} non-negative weights (not all 0) for {num_classes} classes, "
                         f"got {list(weights)}")
    return w / w.sum()


class DiceCELoss(nn.Module):
    """nnU-Net's ``DC_and_CE_loss``: ``weight_ce * CE + weight_dice * (1 - mean foreground soft Dice)``."""

    def __init__(self, batch_dice: bool = False, smooth: float = 1e-5, weight_ce: float = 1.0,
                 weight_dice: float = 1.0, include_background: bool = False) -> None:
        super().__init__()
        self.batch_dice, self.smooth = batch_dice, smooth
        self.weight_ce, self.weight_dice = weight_ce, weight_dice
        self.include_background = include_background

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        onehot = _one_hot(target, logits.shape[1], logits)
        probs = torch.softmax(logits, 1)
        first = 0 if self.include_background else 1
        dice = soft_dice(probs[:, first:], onehot[:, first:], self.smooth, self.batch_dice).mean()
        return self.weight_ce * F.cross_entropy(logits, target) + self.weight_dice * (1 - dice)


class ExpLogLoss(nn.Module):
    """Exponential logarithmic loss, ``w_dice * L_dice + w_cross * L_cross``.

    Wong, Moradi, Tang, Syeda-Mahmood, "3D segmentation with exponential logarithmic loss for highly unbalanced
    object sizes", MICCAI 2018, as used by Zhao & Zeng (KiTS19, 7th place; /work/shared/seeds/000_*.txt):

    - ``L_dice = sum_c dice_weights[c] * (-ln Dice_c) ** gamma_dice`` over the foreground classes (eq. 2:
      0.4 kidney, 0.6 tumor, gamma 0.3);
    - ``L_cross = sum_c ce_weights[c] * CE_c`` (eq. 3: 0.28 background, 0.28 kidney, 0.44 tumor), where ``CE_c``
      is the mean of ``(-ln p_c) ** gamma_cross`` over the voxels labelled ``c`` (0 when there are none);
    - ``Loss = DICE + CE`` (eq. 1), so ``w_dice = w_cross = 1``. The paper's eq. 3 has no exponent on the
      cross-entropy, hence ``gamma_cross = 1``. Wong et al.'s own setting is ``w_dice=0.8, w_cross=0.2,
      gamma_cross=0.3``.

    Weights default to the paper's for 3 classes and to the paper's with the cyst weighted as the tumor for 4
    (normalised to sum 1), uniform otherwise. Dice is a batch Dice with Wong's additive smoothing 1.
    """

    def __init__(self, dice_weights: Sequence[float] | None = None, ce_weights: Sequence[float] | None = None,
                 gamma_dice: float = 0.3, gamma_cross: float = 1.0, w_dice: float = 1.0, w_cross: float = 1.0,
                 smooth: float = 1.0, batch_dice: bool = True) -> None:
        super().__init__()
        self.dice_weights, self.ce_weights = dice_weights, ce_weights
        self.gamma_dice, self.gamma_cross = gamma_dice, gamma_cross
        self.w_dice, self.w_cross = w_dice, w_cross
        self.smooth, self.batch_dice = smooth, batch_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        num_classes = logits.shape[1]
        onehot = _one_hot(target, num_classes, logits)
        dw = _normalised(self.dice_weights, _PAPER_DICE_WEIGHTS, num_classes, num_classes - 1, "dice_weights",
                         logits)
        cw = _normalised(self.ce_weights, _PAPER_CE_WEIGHTS, num_classes, num_classes, "ce_weights", logits)
        dice = soft_dice(torch.softmax(logits, 1)[:, 1:], onehot[:, 1:], self.smooth, self.batch_dice)
        # clamp: d/dx x**0.3 is infinite at 0 (a perfect Dice)
        l_dice = ((-torch.log(dice.clamp_min(1e-8))).clamp_min(1e-6) ** self.gamma_dice * dw).sum(-1).mean()
        nll = -torch.log_softmax(logits, 1).gather(1, target[:, None])[:, 0]  # (B, *spatial)
        if self.gamma_cross != 1.0:
            nll = nll.clamp_min(1e-6) ** self.gamma_cross
        spatial = tuple(range(2, onehot.ndim))
        counts = onehot.sum((0, *spatial))
        per_class = (onehot * nll[:, None]).sum((0, *spatial)) / counts.clamp_min(1)
        l_cross = (per_class * cw).sum()
        return self.w_dice * l_dice + self.w_cross * l_cross


class FocalWeightedDiceLoss(nn.Module):
    """Focal loss (Lin et al. 2017, ``-alpha_t (1 - p_t) ** gamma ln p_t``, mean over voxels) plus
    ``1 - sum_c dice_weights[c] * Dice_c`` over the foreground classes.

    ``alpha`` (one weight per class) is off by default; ``dice_weights`` default as :class:`ExpLogLoss`'s.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None,
                 dice_weights: Sequence[float] | None = None, smooth: float = 1e-5, batch_dice: bool = True,
                 weight_focal: float = 1.0, weight_dice: float = 1.0) -> None:
        super().__init__()
        self.gamma, self.alpha, self.dice_weights = gamma, alpha, dice_weights
        self.smooth, self.batch_dice = smooth, batch_dice
        self.weight_focal, self.weight_dice = weight_focal, weight_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        num_classes = logits.shape[1]
        onehot = _one_hot(target, num_classes, logits)
        log_p = torch.log_softmax(logits, 1)
        log_pt = log_p.gather(1, target[:, None])[:, 0]
        focal = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.alpha is not None:
            alpha = torch.as_tensor(list(self.alpha), dtype=logits.dtype, device=logits.device)
            if alpha.numel() != num_classes:
                raise ValueError(f"alpha needs {num_classes} weights, got {list(self.alpha)}")
            focal = focal * alpha[target]
        dw = _normalised(self.dice_weights, _PAPER_DICE_WEIGHTS, num_classes, num_classes - 1, "dice_weights",
                         logits)
        dice = soft_dice(log_p.exp()[:, 1:], onehot[:, 1:], self.smooth, self.batch_dice)
        return self.weight_focal * focal.mean() + self.weight_dice * (1 - (dice * dw).sum(-1).mean())


def regions_from_labels(target: torch.Tensor) -> torch.Tensor:
    """Integer labels ``(B, *spatial)`` -> float ``(B, 3, *spatial)`` masks of the KiTS regions, in order
    kidney_and_mass ({1, 2, 3}), mass ({2, 3}), tumor ({2})."""
    return torch.stack([torch.isin(target, torch.tensor(r.labels, device=target.device)) for r in KITS_REGIONS],
                       dim=1).float()


class RegionLoss(nn.Module):
    """Region-based training (nnU-Net's ``DC_and_BCE_loss``): one sigmoid channel per KiTS region,
    ``weight_bce * BCE + weight_dice * (1 - mean soft Dice over the 3 regions)``. Targets are integer labels."""

    def __init__(self, batch_dice: bool = True, smooth: float = 1e-5, weight_bce: float = 1.0,
                 weight_dice: float = 1.0) -> None:
        super().__init__()
        self.batch_dice, self.smooth = batch_dice, smooth
        self.weight_bce, self.weight_dice = weight_bce, weight_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = _check(logits, target)
        if logits.shape[1] != len(KITS_REGIONS):
            raise ValueError(f"RegionLoss needs {len(KITS_REGIONS)} output channels (one per KiTS region: "
                             f"{[r.name for r in KITS_REGIONS]}), got {logits.shape[1]}")
        regions = regions_from_labels(target).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, regions)
        dice = soft_dice(torch.sigmoid(logits), regions, self.smooth, self.batch_dice).mean()
        return self.weight_bce * bce + self.weight_dice * (1 - dice)


def deep_supervision_weights(num_levels: int) -> list[float]:
    """nnU-Net's weights: ``1 / 2**i`` per level (0 = full resolution), the coarsest set to 0, normalised to
    sum 1. A single level gets weight 1."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if num_levels == 1:
        return [1.0]
    weights = [1 / 2**i for i in range(num_levels)]
    weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


class DeepSupervisionLoss(nn.Module):
    """``sum_i weights[i] * base_loss(outputs[i], target_i)`` over a list of outputs, full resolution first.

    ``target_i`` is the integer target brought to ``outputs[i]``'s spatial shape by nearest-neighbour
    (``nearest-exact``) picking, as nnU-Net downsamples segmentations for deep supervision. Weights follow
    :func:`deep_supervision_weights` (levels of weight 0 are not computed). A single tensor is accepted as a
    one-level list when ``num_levels == 1``.
    """

    def __init__(self, base_loss: nn.Module, num_levels: int) -> None:
        super().__init__()
        self.base_loss = base_loss
        self.num_levels = num_levels
        self.weights = deep_supervision_weights(num_levels)

    def forward(self, outputs: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        if len(outputs) != self.num_levels:
            raise ValueError(f"DeepSupervisionLoss was built for {self.num_levels} output level(s) but got "
                             f"{len(outputs)}; build it with num_levels={len(outputs)}")
        total = outputs[0].new_zeros(())
        for weight, output in zip(self.weights, outputs, strict=True):
            if weight == 0:
                continue
            level_target = target
            if tuple(output.shape[2:]) != tuple(target.shape[1:]):
                level_target = F.interpolate(target[:, None].float(), size=tuple(output.shape[2:]),
                                             mode="nearest-exact")[:, 0].to(target.dtype)
            total = total + weight * self.base_loss(output, level_target)
        return total


def decayed_auxiliary_weight(epoch: int, initial: float, factor: float, every_epochs: int) -> float:
    """``initial * factor ** (epoch // every_epochs)`` (epochs counted from 0)."""
    return float(initial) * float(factor) ** (int(epoch) // int(every_epochs))


class DecayingDeepSupervisionLoss(DeepSupervisionLoss):
    """Deep supervision with weight 1 on the full-resolution output and ``w(epoch)`` on every other level,
    ``w(epoch) = initial * factor ** (epoch // every_epochs)``: ``L = L_0 + w * sum_{i >= 1} L_i``.

    The KiTS19 two-stage paper (seed 002) gives the schedule (p = 0.33 at first, reduced to 80 % every 15
    epochs) but its formula did not survive extraction; this is the deeply-supervised-net form (auxiliary
    losses added with a decaying weight, the main loss at weight 1, not renormalised). Call
    :meth:`set_epoch` at the start of every epoch (the trainer does).
    """

    def __init__(self, base_loss: nn.Module, num_levels: int, initial: float = 0.33, factor: float = 0.8,
                 every_epochs: int = 15) -> None:
        super().__init__(base_loss, num_levels)
        if initial < 0 or not 0 < factor <= 1 or int(every_epochs) < 1:
            raise ValueError(f"decaying deep supervision needs initial >= 0, 0 < factor <= 1, every_epochs >= 1; "
                             f"got {initial}, {factor}, {every_epochs}")
        self.initial, self.factor, self.every_epochs = float(initial), float(factor), int(every_epochs)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        weight = decayed_auxiliary_weight(epoch, self.initial, self.factor, self.every_epochs)
        self.weights = [1.0] + [weight] * (self.num_levels - 1)


LOSSES: dict[str, type[nn.Module]] = {
    "dice_ce": DiceCELoss,
    "exp_log": ExpLogLoss,
    "focal_dice": FocalWeightedDiceLoss,
    "regions": RegionLoss,
}


def build_loss(name: str, **kwargs: object) -> nn.Module:
    """The loss called ``name`` (one of :data:`LOSSES`), built with ``kwargs``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**kwargs)
