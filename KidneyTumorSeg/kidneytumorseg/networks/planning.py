"""nnU-Net-style planning of a U-Net topology from the patch size and the voxel spacing.

Rules (after Isensee et al. 2021 and dynamic-network-architectures; our own implementation):

- Features double per stage from ``base_features``, capped at ``max_features``.
- Stage after stage, an axis is downsampled (stride 2) when its current size is at least
  ``2 * min_feature_map`` and its current spacing is at most twice the smallest current spacing among the
  axes still large enough to be downsampled. Stages are added until no axis qualifies, so the bottleneck is
  at least ``min_feature_map`` voxels on every axis that was downsampled.
- Kernels are 3 on axes whose spacing is at most twice the smallest current spacing and 1 elsewhere
  (anisotropic data: no in-slice-axis context until the in-plane resolution has caught up); once an axis
  has kernel 3 it keeps it in deeper stages, so no stride ever lands on a 1-wide kernel.
- The patch must be divisible by the total stride on every axis; otherwise the error suggests patch sizes
  that are.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from kidneytumorseg.networks.config import NetworkConfig

logger = logging.getLogger(__name__)

ANISOTROPY_FACTOR = 2.0
_RATIO_TOLERANCE = 1e-6
RESIDUAL_ENCODER_BLOCKS = (1, 3, 4, 6)  # Isensee 2019 (KiTS19): 1, 3, 4, 6, 6, 6, ...
PLANNED_FIELDS = ("dimension", "in_channels", "num_classes", "features_per_stage", "strides", "kernel_sizes",
                  "block")


def _within_factor(value: float, smallest: float) -> bool:
    return value <= ANISOTROPY_FACTOR * smallest * (1 + _RATIO_TOLERANCE)


def _topology(
    patch_size: Sequence[int], spacing: Sequence[float], min_feature_map: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Strides and kernel sizes per stage for one patch size (no divisibility check)."""
    dimension = len(patch_size)
    size = [float(s) for s in patch_size]
    current_spacing = [float(s) for s in spacing]
    kernel = [1] * dimension
    strides: list[list[int]] = [[1] * dimension]
    kernels: list[list[int]] = []
    while True:
        smallest = min(current_spacing)
        kernel = [3 if k == 3 or _within_factor(sp, smallest) else 1
                  for k, sp in zip(kernel, current_spacing, strict=True)]
        kernels.append(list(kernel))
        large_enough = [axis for axis in range(dimension) if size[axis] >= 2 * min_feature_map]
        if not large_enough:
            break
        smallest_valid = min(current_spacing[axis] for axis in large_enough)
        axes = [axis for axis in large_enough if _within_factor(current_spacing[axis], smallest_valid)]
        stride = [2 if axis in axes else 1 for axis in range(dimension)]
        strides.append(stride)
        size = [s / st for s, st in zip(size, stride, strict=True)]
        current_spacing = [sp * st for sp, st in zip(current_spacing, stride, strict=True)]
    return strides, kernels


def _total_strides(strides: list[list[int]]) -> list[int]:
    return [math.prod(stage[axis] for stage in strides) for axis in range(len(strides[0]))]


def _divisible_patch(
    patch_size: Sequence[int], spacing: Sequence[float], min_feature_map: int, round_up: bool
) -> list[int] | None:
    """The nearest patch (rounding up or down) that its own plan divides; None if there is none nearby."""
    candidate = [int(s) for s in patch_size]
    for _ in range(8):
        totals = _total_strides(_topology(candidate, spacing, min_feature_map)[0])
        if all(size % total == 0 for size, total in zip(candidate, totals, strict=True)):
            return candidate
        rounding = math.ceil if round_up else math.floor
        candidate = [int(rounding(size / total)) * total for size, total in zip(candidate, totals, strict=True)]
        if any(size < 1 for size in candidate):
            return None
    return None


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, (str, bytes)):
        return None
    try:
        return list(value)
    except TypeError:
        return None


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _normalised_inputs(
    patch_size: Any, spacing: Any, dimension: Any, counts: dict[str, Any]
) -> tuple[list[int], list[float]]:
    """Check the planning arguments; return the patch size and spacing as plain Python lists."""
    if not _is_integer(dimension) or dimension not in (2, 3):
        raise ValueError(f"dimension must be 2 or 3, got {dimension!r}.")
    patch = _as_list(patch_size)
    if patch is None or len(patch) != dimension or not all(_is_integer(s) and s >= 1 for s in patch):
        raise ValueError(f"patch_size must be {dimension} positive integers (one per axis of a {dimension}D "
                         f"network), got {patch_size!r}.")
    spacings = _as_list(spacing)
    if (spacings is None or len(spacings) != dimension
            or not all(isinstance(s, numbers.Real) and not isinstance(s, bool) and s > 0 for s in spacings)):
        raise ValueError(f"spacing must be {dimension} positive numbers in the patch's axis order, got {spacing!r}.")
    for name, value in counts.items():
        if not _is_integer(value) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    if counts["max_features"] < counts["base_features"]:
        raise ValueError(f"max_features ({counts['max_features']}) must be >= base_features "
                         f"({counts['base_features']}).")
    return [int(s) for s in patch], [float(s) for s in spacings]


def plan_network(
    patch_size: Sequence[int],
    spacing: Sequence[float],
    dimension: int = 3,
    in_channels: int = 1,
    num_classes: int = 4,
    base_features: int = 32,
    max_features: int = 320,
    block: str = "plain",
    min_feature_map: int = 4,
    **options: Any,
) -> NetworkConfig:
    """Plan a U-Net for patches of ``patch_size`` voxels at ``spacing`` (both in array axis order).

    ``options`` sets any other :class:`NetworkConfig` field (``deep_supervision``, ``squeeze_excitation``,
    ``attention_gates``, ``bottleneck_dilations``, ``inject_input``, ``dropout``, ``norm``, ``nonlinearity``,
    ``encoder_blocks_per_stage``, ``decoder_convs_per_stage``). Defaults: ``plain`` has 2 convolutions per
    encoder and decoder stage; ``residual`` / ``preact`` have 1, 3, 4, 6, 6, ... blocks per encoder stage and
    1 convolution per decoder stage (Isensee & Maier-Hein 2019).

    Raises ValueError when the inputs are malformed or the patch is not divisible by the planned total
    stride (the message suggests patch sizes that are), TypeError for an unknown option.
    """
    patch_size, spacing = _normalised_inputs(patch_size, spacing, dimension, {
        "in_channels": in_channels, "num_classes": num_classes, "base_features": base_features,
        "max_features": max_features, "min_feature_map": min_feature_map,
    })
    settable = [f.name for f in fields(NetworkConfig) if f.name not in PLANNED_FIELDS]
    unknown = sorted(set(options) - set(settable))
    if unknown:
        raise TypeError(f"plan_network got unknown option(s) {unknown}; it accepts {settable}. To set strides, "
                        "kernels or features by hand, build a NetworkConfig directly.")

    strides, kernels = _topology(patch_size, spacing, min_feature_map)
    if len(strides) < 2:
        raise ValueError(f"patch_size {list(patch_size)} is too small to downsample: at least one axis needs "
                         f"{2 * min_feature_map} voxels or more (2 x min_feature_map).")
    totals = _total_strides(strides)
    if any(size % total for size, total in zip(patch_size, totals, strict=True)):
        suggestions = [p for p in (_divisible_patch(patch_size, spacing, min_feature_map, round_up)
                                   for round_up in (False, True)) if p is not None]
        hint = " or ".join(str(p) for p in suggestions) or "a multiple of the total stride on every axis"
        raise ValueError(f"patch_size {list(patch_size)} is not divisible by the planned network's total stride "
                         f"{totals} per axis; use a patch size such as {hint}.")

    stages = len(strides)
    if block in ("residual", "preact"):
        default_encoder = [RESIDUAL_ENCODER_BLOCKS[min(s, len(RESIDUAL_ENCODER_BLOCKS) - 1)] for s in range(stages)]
        default_decoder = [1] * (stages - 1)
    else:
        default_encoder, default_decoder = [2] * stages, [2] * (stages - 1)
    options.setdefault("encoder_blocks_per_stage", default_encoder)
    options.setdefault("decoder_convs_per_stage", default_decoder)
    config = NetworkConfig(
        dimension=dimension,
        in_channels=in_channels,
        num_classes=num_classes,
        features_per_stage=[min(base_features * 2**s, max_features) for s in range(stages)],
        strides=strides,
        kernel_sizes=kernels,
        block=block,
        **options,
    )
    logger.info("Planned a %d-stage %s U-Net for patch %s at spacing %s: strides %s, kernels %s",
                stages, block, list(patch_size), list(spacing), strides, kernels)
    return config
