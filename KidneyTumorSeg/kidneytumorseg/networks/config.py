"""The description of a U-Net: a JSON-safe, validated dataclass that model packages store next to the weights.

The per-stage lists follow nnU-Net's dynamic-network-architectures: stage ``s`` of the encoder works at
resolution level ``s``; its first convolution carries ``strides[s]`` (all ones for stage 0), every
convolution of the stage uses ``kernel_sizes[s]`` and produces ``features_per_stage[s]`` channels. The decoder
has one stage per level above the bottleneck; ``decoder_convs_per_stage[s]`` is the number of convolutions of
the decoder stage at level ``s`` (finest level first, like every other list here).

Axes are in the engine's array order (``S, P, L`` for 3D; ``P, L`` for 2D slices).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any

from kidneytumorseg.errors import KidneyTumorSegError

BLOCK_TYPES = ("plain", "residual", "preact")
NORM_TYPES = ("instance", "batch")
NONLINEARITIES = ("leaky_relu", "relu")


class NetworkConfigError(KidneyTumorSegError, ValueError):
    """A network description is incomplete or inconsistent; the message names the field to fix."""


def _fail(name: str, problem: str) -> NetworkConfigError:
    return NetworkConfigError(f"Network config field '{name}' {problem}.")


def _is_int(value: Any) -> bool:
    """Python or numpy integers, not booleans (``True`` is an int to Python but never a valid size)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_list(name: str, value: Any, minimum: int) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
        raise _fail(name, f"must be a list of integers, got {value!r}")
    if any(v < minimum for v in value):
        raise _fail(name, f"must hold integers >= {minimum}, got {list(value)}")
    return [int(v) for v in value]


def _per_axis_lists(name: str, value: Any, stages: int, dimension: int, minimum: int) -> list[list[int]]:
    if not isinstance(value, (list, tuple)) or len(value) != stages:
        raise _fail(name, f"must be a list with one entry per stage ({stages} stages), got {value!r}")
    result = []
    for stage, entry in enumerate(value):
        axes = _int_list(f"{name}[{stage}]", entry, minimum)
        if len(axes) != dimension:
            raise _fail(f"{name}[{stage}]", f"must have one value per axis ({dimension}), got {axes}")
        result.append(axes)
    return result


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(name, f"must be true or false, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(name, f"must be one of {', '.join(choices)}; got {value!r}")


@dataclass
class NetworkConfig:
    """Topology and options of a U-Net; ``build_network(config)`` turns it into a ``torch.nn.Module``.

    - ``dimension``: 3 (volumes ``B, C, S, P, L``) or 2 (slices ``B, C, P, L``; 2.5D is dimension 2 with
      several adjacent slices as ``in_channels``).
    - ``encoder_blocks_per_stage``: convolutions per stage for ``block="plain"``, residual blocks per stage
      for ``"residual"`` (basic block: conv-norm-act-conv-norm + shortcut) and ``"preact"`` (pre-activation).
    - ``squeeze_excitation``: channel re-weighting (Hu et al.) at the end of each plain stage / inside each
      residual block; the squeezed width is ``max(4, channels // 16)``.
    - ``attention_gates``: additive attention gates (Oktay et al.) on the skip connections.
    - ``bottleneck_dilations``: hybrid dilated convolutions: the bottom stage gets one extra convolution
      (plain) or residual block per entry, with that dilation, after its regular ones.
    - ``inject_input``: the input image, average-pooled to the resolution of each encoder stage's input, is
      concatenated to that input (stages 1 and deeper; stage 0's input is the image itself).
    - ``dropout``: channel dropout probability after every encoder/decoder convolution that precedes a norm.
    """

    dimension: int
    in_channels: int
    num_classes: int
    features_per_stage: list[int]
    strides: list[list[int]]
    kernel_sizes: list[list[int]]
    encoder_blocks_per_stage: list[int]
    decoder_convs_per_stage: list[int]
    block: str = "plain"
    norm: str = "instance"
    nonlinearity: str = "leaky_relu"
    deep_supervision: bool = True
    squeeze_excitation: bool = False
    attention_gates: bool = False
    bottleneck_dilations: list[int] | None = None
    inject_input: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_stages(self) -> int:
        """Number of encoder stages (resolution levels), bottleneck included."""
        return len(self.features_per_stage)

    @property
    def total_strides(self) -> list[int]:
        """Product of the strides per axis: input sizes must be divisible by these."""
        return [math.prod(stage[axis] for stage in self.strides) for axis in range(self.dimension)]

    def validate(self) -> None:
        """Check every field and normalise sequences to lists; raises NetworkConfigError naming the field."""
        if not _is_int(self.dimension) or self.dimension not in (2, 3):
            raise _fail("dimension", f"must be 2 (slices) or 3 (volumes), got {self.dimension!r}")
        self.dimension = int(self.dimension)
        for name in ("in_channels", "num_classes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise _fail(name, f"must be an integer >= 1, got {value!r}")
            setattr(self, name, int(value))
        self.features_per_stage = _int_list("features_per_stage", self.features_per_stage, 1)
        stages = len(self.features_per_stage)
        if stages < 2:
            raise _fail("features_per_stage", f"must list at least 2 stages (encoder + bottleneck), got {stages}")
        self.strides = _per_axis_lists("strides", self.strides, stages, self.dimension, 1)
        if any(s != 1 for s in self.strides[0]):
            raise _fail("strides", f"must start with all ones (the first stage keeps full resolution), "
                        f"got {self.strides[0]}")
        self.kernel_sizes = _per_axis_lists("kernel_sizes", self.kernel_sizes, stages, self.dimension, 1)
        if any(k % 2 == 0 for stage in self.kernel_sizes for k in stage):
            raise _fail("kernel_sizes", f"must hold odd sizes (1, 3, 5...) so padding keeps the size, "
                        f"got {self.kernel_sizes}")
        self.encoder_blocks_per_stage = _int_list("encoder_blocks_per_stage", self.encoder_blocks_per_stage, 1)
        if len(self.encoder_blocks_per_stage) != stages:
            raise _fail("encoder_blocks_per_stage", f"must have one entry per stage ({stages}), "
                        f"got {self.encoder_blocks_per_stage}")
        self.decoder_convs_per_stage = _int_list("decoder_convs_per_stage", self.decoder_convs_per_stage, 1)
        if len(self.decoder_convs_per_stage) != stages - 1:
            raise _fail("decoder_convs_per_stage", f"must have one entry per decoder stage (stages - 1 = "
                        f"{stages - 1}), got {self.decoder_convs_per_stage}")
        _check_choice("block", self.block, BLOCK_TYPES)
        _check_choice("norm", self.norm, NORM_TYPES)
        _check_choice("nonlinearity", self.nonlinearity, NONLINEARITIES)
        for name in ("deep_supervision", "squeeze_excitation", "attention_gates", "inject_input"):
            _check_bool(name, getattr(self, name))
        if self.bottleneck_dilations is not None:
            self.bottleneck_dilations = _int_list("bottleneck_dilations", self.bottleneck_dilations, 1)
            if not self.bottleneck_dilations:
                raise _fail("bottleneck_dilations", "must be null or a non-empty list such as [2, 3, 5]")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise _fail("dropout", f"must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise _fail("dropout", f"must be in [0, 1), got {self.dropout}")
        self.dropout = float(self.dropout)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists, ints, floats, strings, bools, null) that ``from_dict`` reads back."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Build and validate a config from ``to_dict()`` output (e.g. a model package's ``network`` entry)."""
        if not isinstance(data, Mapping):
            raise NetworkConfigError(f"A network config must be a JSON object (dict), got {type(data).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise NetworkConfigError(
                f"Network config has unknown field(s) {unknown}; the known fields are {known}. "
                "Remove or rename them (was the package written by a newer version?)."
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise NetworkConfigError(f"Network config is missing required field(s) {missing}; add them.")
        return cls(**copy.deepcopy(dict(data)))
