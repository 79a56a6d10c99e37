"""The configurable U-Net: encoder of plain or residual stages, transposed-convolution decoder with skip
concatenation, 1x1 heads at every decoder level (deep supervision)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from kidneytumorseg.networks.blocks import (
    LEAKY_RELU_SLOPE,
    AttentionGate,
    LayerFactory,
    PlainConvStage,
    ResidualStage,
)
from kidneytumorseg.networks.config import NetworkConfig, NetworkConfigError

logger = logging.getLogger(__name__)


def _encoder_stage(config: NetworkConfig, layers: LayerFactory, stage: int, in_channels: int) -> nn.Module:
    out_channels = config.features_per_stage[stage]
    is_bottom = stage == config.num_stages - 1
    dilations = (config.bottleneck_dilations or []) if is_bottom else []
    kernel = config.kernel_sizes[stage]
    stride = config.strides[stage]
    blocks = config.encoder_blocks_per_stage[stage]
    if config.block == "plain":
        return PlainConvStage(layers, in_channels, out_channels, blocks, kernel, stride, dilations,
                              config.squeeze_excitation)
    return ResidualStage(layers, in_channels, out_channels, blocks, kernel, stride,
                         preact=config.block == "preact", stem=stage == 0, dilations=dilations,
                         squeeze_excitation=config.squeeze_excitation)


class UNet(nn.Module):
    """U-Net built from a :class:`NetworkConfig`.

    ``forward(x)`` takes ``(B, in_channels, *spatial)`` with every spatial size divisible by
    ``config.total_strides`` and returns logits ``(B, num_classes, *spatial)``; while the attribute
    ``deep_supervision`` is True it returns a list instead, one logits tensor per decoder level, full
    resolution first. All heads exist whatever that attribute says, so the state dict never depends on it.
    Lists of modules are indexed by resolution level (0 = full resolution).
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        # A private copy: the network's description must keep matching its weights if the caller's changes.
        self.config = NetworkConfig.from_dict(config.to_dict())
        self.deep_supervision = config.deep_supervision
        layers = LayerFactory(config.dimension, config.norm, config.nonlinearity, config.dropout)
        features = config.features_per_stage
        levels = config.num_stages - 1

        self.encoder = nn.ModuleList()
        for stage in range(config.num_stages):
            in_channels = config.in_channels if stage == 0 else features[stage - 1]
            if stage > 0 and config.inject_input:
                in_channels += config.in_channels
            self.encoder.append(_encoder_stage(config, layers, stage, in_channels))
        # input_pools[level] takes the image from level - 1 to level; it feeds the input of stage level + 1.
        self.input_pools = nn.ModuleList(layers.avg_pool(config.strides[level]) for level in range(levels))

        self.upsamplers = nn.ModuleList(
            layers.transposed_conv(features[level + 1], features[level], config.strides[level + 1])
            for level in range(levels)
        )
        self.attention = nn.ModuleList(
            AttentionGate(layers, features[level], features[level], max(features[level] // 2, 1))
            for level in range(levels)
        ) if config.attention_gates else None
        self.decoder = nn.ModuleList(
            PlainConvStage(layers, 2 * features[level], features[level], config.decoder_convs_per_stage[level],
                           config.kernel_sizes[level], squeeze_excitation=config.squeeze_excitation)
            for level in range(levels)
        )
        self.heads = nn.ModuleList(layers.conv(features[level], config.num_classes, 1) for level in range(levels))
        initialize_weights(self, LEAKY_RELU_SLOPE if config.nonlinearity == "leaky_relu" else 0.0)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError when ``x`` has the wrong rank, channel count, or a size the strides cannot divide."""
        config = self.config
        if x.ndim != config.dimension + 2 or x.shape[1] != config.in_channels:
            axes = "(B, C, S, P, L)" if config.dimension == 3 else "(B, C, P, L)"
            raise ValueError(
                f"The network expects a {config.dimension + 2}D tensor {axes} with C = {config.in_channels}, "
                f"got shape {tuple(x.shape)}."
            )
        spatial = list(x.shape[2:])
        totals = config.total_strides
        if any(size % total for size, total in zip(spatial, totals, strict=True)):
            suggestion = [-(-size // total) * total for size, total in zip(spatial, totals, strict=True)]
            raise ValueError(
                f"Spatial size {spatial} is not divisible by the network's total strides {totals}; pad the "
                f"input to e.g. {suggestion}."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        skips = []
        features = x
        image = x
        for stage, encoder_stage in enumerate(self.encoder):
            if stage > 0 and self.config.inject_input:
                image = self.input_pools[stage - 1](image)
                features = torch.cat([features, image], dim=1)
            features = encoder_stage(features)
            skips.append(features)

        outputs = []
        for level in reversed(range(len(self.decoder))):
            upsampled = self.upsamplers[level](features)
            skip = skips[level]
            if self.attention is not None:
                skip = self.attention[level](skip, upsampled)
            features = self.decoder[level](torch.cat([upsampled, skip], dim=1))
            if self.deep_supervision or level == 0:
                outputs.append(self.heads[level](features))
        if not self.deep_supervision:
            return outputs[-1]
        return outputs[::-1]


def initialize_weights(module: nn.Module, negative_slope: float) -> None:
    """nnU-Net's initialisation: He (kaiming) normal for every (transposed) convolution, zero biases.

    Norm layers keep their own initialisation (so the zeroed last norm of residual blocks stays zero).
    """
    conv_types = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    for layer in module.modules():
        if isinstance(layer, conv_types):
            nn.init.kaiming_normal_(layer.weight, a=negative_slope)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def build_network(config: NetworkConfig | Mapping[str, Any]) -> UNet:
    """Build the U-Net a config (or its ``to_dict()`` form, e.g. from a model package) describes.

    Construction is deterministic under ``torch.manual_seed`` and the state dict's keys depend only on the
    config, so weights saved from one build load with ``strict=True`` into another.
    """
    if isinstance(config, Mapping):
        config = NetworkConfig.from_dict(config)
    elif not isinstance(config, NetworkConfig):
        raise NetworkConfigError(
            f"build_network needs a NetworkConfig or its dict form, got {type(config).__name__}."
        )
    network = UNet(config)
    logger.debug("Built a %dD %s U-Net with %d stages and %d parameters", config.dimension, config.block,
                 config.num_stages, count_parameters(network))
    return network


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
