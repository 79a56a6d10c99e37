"""Distillation from the parent on replayed patches, while fine-tuning.

A fine-tune mixes the corrections with replayed cases of the original training data so that the network does not
forget the original domain. Replay alone gives those patches their reference labels; this module adds, for them
only, the parent's own output as a target (Li and Hoiem, "Learning without Forgetting", 2017; Buzzega et al.,
"Dark Experience for General Continual Learning", NeurIPS 2020): the loss gains

    weight x mean over the replayed patches' voxels of KL(parent softmax || member softmax)

so the member keeps the parent's whole output on the original domain (its confidence and its second choices),
not only its argmax. The corrections' patches are left to the ordinary loss: there the parent is what is being
corrected. The parent is a frozen copy of the network taken when training starts from the parent's weights.

    distillation = ReplayDistillation(model, weight=1.0, case_ids=replayed_ids)   # after the weights are loaded
    loss = loss + distillation.loss(image, batch["case_id"], outputs)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch

__all__ = ["ReplayDistillation", "check_weight"]


def check_weight(weight: float) -> float:
    """``weight`` as a float; ValueError unless it is a finite number >= 0 (0: no distillation)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight < float("inf"):
        raise ValueError(f"The distillation weight must be a number >= 0 (0 = off), got {weight!r}.")
    return float(weight)


def _full_resolution(outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The full-resolution logits of a network's output (the first of the deep-supervision outputs)."""
    return outputs[0] if isinstance(outputs, (list, tuple)) else outputs


class ReplayDistillation:
    """A frozen copy of ``model`` (the parent) and the ids of the replayed cases whose patches are distilled."""

    def __init__(self, model: torch.nn.Module, weight: float, case_ids: Iterable[str]) -> None:
        self.weight = check_weight(weight)
        self.case_ids = frozenset(str(i) for i in case_ids)
        if self.weight and not self.case_ids:
            raise ValueError("Distillation needs the ids of the replayed cases; give the replay data, or weight 0.")
        self.parent = copy.deepcopy(model).eval()
        for parameter in self.parent.parameters():
            parameter.requires_grad_(False)

    def mask(self, case_ids: Sequence[str]) -> torch.Tensor:
        """Boolean per sample of the batch: whether it comes from a replayed case."""
        return torch.tensor([str(i) in self.case_ids for i in case_ids], dtype=torch.bool)

    def loss(self, image: torch.Tensor, case_ids: Sequence[str],
             outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """``weight x`` the mean voxel KL(parent || member) over the batch's replayed samples (0 if none)."""
        student = _full_resolution(outputs)
        chosen = self.mask(case_ids).to(student.device)
        if not self.weight or not bool(chosen.any()):
            return student.new_zeros(())
        with torch.no_grad():
            target = torch.log_softmax(_full_resolution(self.parent(image[chosen])).float(), dim=1)
        predicted = torch.log_softmax(student[chosen].float(), dim=1)
        divergence = (target.exp() * (target - predicted)).sum(dim=1)  # per voxel
        return self.weight * divergence.mean()
