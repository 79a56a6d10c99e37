"""L2-SP: while fine-tuning, pull every weight back toward the weights training started from.

Li, Grandvalet and Davoine (ICML 2018, "Explicit inductive bias for transfer learning with convolutional
networks") replace weight decay toward zero by a penalty ``strength / 2 * ||w - w0||^2`` toward the starting
point ``w0`` (the parent's weights), so that a fine-tune moves only as far from the parent as the new data pay
for. The penalty's gradient, ``strength * (w - w0)``, is added to each parameter's gradient after the backward
pass (before clipping and the optimiser step), which is the same as adding the penalty to the loss without
building a graph over every weight.

    anchor = WeightAnchor(model, strength=0.1)   # after the starting weights are loaded
    loss.backward(); anchor.pull(model); optimizer.step()
"""

from __future__ import annotations

import torch

__all__ = ["WeightAnchor", "check_strength"]


def check_strength(strength: float) -> float:
    """``strength`` as a float; ValueError unless it is a finite number >= 0 (0: no anchor)."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength < float("inf"):
        raise ValueError(f"The anchor strength (L2-SP) must be a number >= 0 (0 = off), got {strength!r}.")
    return float(strength)


class WeightAnchor:
    """A copy of the model's trainable weights at creation; :meth:`pull` adds ``strength * (w - w0)`` to the
    gradients, :meth:`distance` is ``||w - w0||`` over all of them."""

    def __init__(self, model: torch.nn.Module, strength: float) -> None:
        self.strength = check_strength(strength)
        self.start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def pull(self, model: torch.nn.Module) -> None:
        """Add the penalty's gradient to every parameter that has a gradient (call after backward)."""
        if not self.strength:
            return
        for name, parameter in model.named_parameters():
            if parameter.grad is not None and name in self.start:
                parameter.grad.add_(parameter.detach() - self.start[name], alpha=self.strength)

    @torch.no_grad()
    def distance(self, model: torch.nn.Module) -> float:
        """Euclidean distance of the model's weights from the starting weights."""
        total = sum(float(((p.detach() - self.start[n]) ** 2).sum()) for n, p in model.named_parameters()
                    if n in self.start)
        return total ** 0.5
