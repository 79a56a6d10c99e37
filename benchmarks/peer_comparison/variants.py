"""The sliding-window parameters all peers share, and how each peer runs (a :class:`Variant`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

SIGMA_SCALE = 0.125  # nnU-Net's fixed Gaussian: sigma = tile / 8
PEERS = ("ours", "nnunet", "monai")
PEER_NAMES = {"ours": "ours", "nnunet": "nnU-Net v2", "monai": "MONAI"}
ACCUMULATIONS = ("logits", "softmax")
WEIGHTINGS = ("own", "shared")
PRECISIONS = ("fp16", "fp32", "half", "eager")
# "half": ours with --precision half (bfloat16 autocast on a CPU); "eager": ours in float32 with the CPU fast path
# off (kidneytumorseg.cpu_inference), the plain PyTorch network as the peers run it
TASKS = ("cascade", "localizer", "forward", "profile")  # the measurements that are not a variant


@dataclass(frozen=True)
class SlidingWindowConfig:
    """The parameters all peers share."""

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    num_classes: int = 4

    def __post_init__(self) -> None:
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive integers (S, P, L), got {self.patch_size}.")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}.")
        if any(axis not in (0, 1, 2) for axis in self.mirror_axes):
            raise ValueError(f"mirror_axes must be spatial axes 0, 1, 2, got {self.mirror_axes}.")


@dataclass(frozen=True)
class Variant:
    """How a peer runs: what it averages, whose Gaussian it blends with, nnU-Net's buffer precision.

    ``Variant("nnunet")`` and ``Variant("monai")`` are the peers as shipped; ours always averages softmax with
    its own Gaussian in float32.
    """

    peer: str
    accumulate: str = "logits"  # "logits": the bare network (as shipped); "softmax": wrapped, as ours averages
    weights: str = "own"  # "own" Gaussian or "shared" (ours)
    precision: str = "fp16"  # nnU-Net's sums: "fp16" as shipped or "fp32"; the others are float32 anyway

    def __post_init__(self) -> None:
        for name, value, allowed in (("peer", self.peer, PEERS), ("accumulate", self.accumulate, ACCUMULATIONS),
                                     ("weights", self.weights, WEIGHTINGS), ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        if self.peer == "ours" and (self.accumulate, self.weights) != ("softmax", "own"):
            raise ValueError("Ours averages softmax with its own Gaussian; use Variant('ours', 'softmax').")
        if self.precision in ("half", "eager") and self.peer != "ours":
            raise ValueError(f"precision {self.precision!r} is a setting of our predictor; the peers run float32 "
                             f"networks.")
        if self.peer != "nnunet" and self.precision == "fp16":
            object.__setattr__(self, "precision", "fp32")

    @property
    def key(self) -> str:
        """``peer-accumulate-weights-precision``: the task name of its measurement and its output file's stem."""
        return "-".join((self.peer, self.accumulate, self.weights, self.precision))

    @classmethod
    def from_key(cls, key: str) -> Variant:
        parts = key.split("-")
        if len(parts) != 4:
            raise ValueError(f"A variant key is peer-accumulate-weights-precision, got {key!r}.")
        return cls(*parts)

    @property
    def as_shipped(self) -> bool:
        return self.peer != "ours" and (self.accumulate, self.weights, self.precision) == (
            "logits", "own", "fp16" if self.peer == "nnunet" else "fp32")

    def describe(self) -> str:
        """The ``settings`` column of its row."""
        if self.peer == "ours":
            return "softmax averaged, own Gaussian, " + {
                "half": "network in bfloat16 (--precision half)",
                "eager": "fp32, eager PyTorch network (CPU fast path off)",
            }.get(self.precision, "fp32 (channels-last oneDNN fast path)")
        if self.as_shipped:
            return f"as shipped: logits averaged, own Gaussian, {self.precision}"
        return (f"{self.accumulate} averaged, {'our' if self.weights == 'shared' else 'own'} Gaussian, "
                f"{self.precision}")


OURS = Variant("ours", "softmax", "own", "fp32")
OURS_HALF = Variant("ours", "softmax", "own", "half")  # not identical settings: a row of its own, for speed
OURS_EAGER = Variant("ours", "softmax", "own", "eager")  # what the fast path gains, side by side
AS_SHIPPED = (Variant("nnunet"), Variant("monai"))
AGREEMENT_VARIANTS = (Variant("nnunet", "softmax", "shared", "fp16"), Variant("nnunet", "softmax", "shared", "fp32"),
                      Variant("monai", "softmax", "shared"))
EXTRA_VARIANTS = (Variant("nnunet", "softmax", "own", "fp16"), Variant("monai", "softmax", "own"))


def flip_sets(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of mirrored axes, the unmirrored one first."""
    axes = sorted(set(mirror_axes))
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]
