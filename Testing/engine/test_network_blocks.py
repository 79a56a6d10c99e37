"""Building blocks: shapes, strides, dilation padding, norms and nonlinearities, SE width, attention gates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kidneytumorseg.networks.blocks import (
    AttentionGate,
    ConvNormAct,
    LayerFactory,
    PlainConvStage,
    PreActResidualBlock,
    ResidualBlock,
    ResidualStage,
    SqueezeExcitation,
)

LAYERS_3D = LayerFactory(dimension=3)
LAYERS_2D = LayerFactory(dimension=2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_layer_factory_makes_instance_norm_with_affine_and_leaky_relu():
    norm = LAYERS_3D.norm_layer(8)
    assert isinstance(norm, nn.InstanceNorm3d)
    assert norm.affine and norm.eps == 1e-5
    act = LAYERS_3D.activation()
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.01
    assert isinstance(LAYERS_2D.norm_layer(8), nn.InstanceNorm2d)


def test_layer_factory_alternatives():
    layers = LayerFactory(dimension=2, norm="batch", nonlinearity="relu", dropout=0.3)
    assert isinstance(layers.norm_layer(4), nn.BatchNorm2d)
    assert isinstance(layers.activation(), nn.ReLU)
    dropout = layers.dropout_layer()
    assert isinstance(dropout, nn.Dropout2d) and dropout.p == 0.3
    assert isinstance(LAYERS_3D.dropout_layer(), nn.Identity)


def test_conv_padding_keeps_size_with_anisotropic_kernels_and_dilation():
    x = torch.randn(1, 2, 6, 10, 10)
    conv = LAYERS_3D.conv(2, 3, [1, 3, 3], dilation=3)
    assert conv.kernel_size == (1, 3, 3)
    assert conv.dilation == (1, 3, 3)  # a 1-wide axis has nothing to dilate
    assert conv(x).shape == (1, 3, 6, 10, 10)
    strided = LAYERS_3D.conv(2, 3, 3, stride=[1, 2, 2])
    assert strided(x).shape == (1, 3, 6, 5, 5)


def test_transposed_conv_upsamples_by_its_stride():
    up = LAYERS_3D.transposed_conv(4, 2, [1, 2, 2])
    assert up.kernel_size == (1, 2, 2)
    assert up(torch.randn(1, 4, 3, 5, 5)).shape == (1, 2, 3, 10, 10)


def test_conv_norm_act_order_and_shape():
    block = ConvNormAct(LayerFactory(dropout=0.1), 2, 4, 3, stride=2)
    assert [name for name, _ in block.named_children()] == ["conv", "dropout", "norm", "act"]
    assert block(torch.randn(2, 2, 8, 8, 8)).shape == (2, 4, 4, 4, 4)


def test_squeeze_excitation_width_and_shape():
    assert SqueezeExcitation(LAYERS_3D, 128).reduce.out_channels == 8  # 128 / 16
    assert SqueezeExcitation(LAYERS_3D, 16).reduce.out_channels == 4  # at least 4
    x = torch.randn(2, 16, 4, 4, 4)
    assert SqueezeExcitation(LAYERS_3D, 16)(x).shape == x.shape
    assert SqueezeExcitation(LAYERS_2D, 16)(torch.randn(2, 16, 4, 4)).shape == (2, 16, 4, 4)


def test_plain_stage_counts_convs_including_dilated_ones():
    stage = PlainConvStage(LAYERS_3D, 2, 4, num_convs=2, kernel=[3, 3, 3], stride=[1, 2, 2], dilations=[2, 3],
                           squeeze_excitation=True)
    assert len(stage.convs) == 4
    assert [c.conv.dilation for c in stage.convs] == [(1, 1, 1), (1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert stage.convs[0].conv.stride == (1, 2, 2)
    assert isinstance(stage.se, SqueezeExcitation)
    assert stage(torch.randn(1, 2, 4, 8, 8)).shape == (1, 4, 4, 4, 4)


@pytest.mark.parametrize("block_type", [ResidualBlock, PreActResidualBlock])
@pytest.mark.parametrize(("in_channels", "stride"), [(4, 1), (2, 1), (2, 2)])
def test_residual_blocks_shape_and_shortcut(block_type, in_channels, stride):
    block = block_type(LAYERS_3D, in_channels, 4, [3, 3, 3], stride, squeeze_excitation=True)
    x = torch.randn(2, in_channels, 8, 8, 8)
    out = block(x)
    assert out.shape == (2, 4, 8 // stride, 8 // stride, 8 // stride)
    assert isinstance(block.shortcut, nn.Identity) == (in_channels == 4 and stride == 1)


def test_basic_residual_block_starts_as_its_shortcut():
    block = ResidualBlock(LAYERS_3D, 4, 4, [3, 3, 3])
    assert torch.all(block.norm2.weight == 0)
    x = torch.randn(1, 4, 6, 6, 6)
    torch.testing.assert_close(block(x), nn.functional.leaky_relu(x, 0.01))


def test_residual_block_dilation_keeps_size():
    block = PreActResidualBlock(LAYERS_2D, 4, 4, [3, 3], dilation=5)
    assert block.conv1.dilation == (5, 5)
    assert block(torch.randn(1, 4, 12, 12)).shape == (1, 4, 12, 12)


@pytest.mark.parametrize("preact", [False, True])
def test_residual_stage_with_stem_and_dilations(preact):
    stage = ResidualStage(LAYERS_3D, 1, 4, num_blocks=3, kernel=[1, 3, 3], stem=True, preact=preact,
                          dilations=[2, 3])
    assert len(stage.blocks) == 5
    assert isinstance(stage.stem, nn.Conv3d if preact else ConvNormAct)
    assert stage(torch.randn(2, 1, 4, 8, 8)).shape == (2, 4, 4, 8, 8)


def test_residual_stage_first_block_carries_the_stride():
    stage = ResidualStage(LAYERS_3D, 4, 8, num_blocks=2, kernel=[3, 3, 3], stride=[1, 2, 2])
    assert isinstance(stage.stem, nn.Identity)
    assert stage.blocks[0].conv1.stride == (1, 2, 2)
    assert stage.blocks[1].conv1.stride == (1, 1, 1)
    assert stage(torch.randn(1, 4, 4, 8, 8)).shape == (1, 8, 4, 4, 4)


def test_attention_gate_scales_the_skip_by_coefficients_in_zero_one():
    gate = AttentionGate(LAYERS_3D, skip_channels=4, gate_channels=6, inter_channels=2)
    skip = torch.rand(2, 4, 4, 8, 8) + 0.1
    out = gate(skip, torch.randn(2, 6, 4, 8, 8))
    assert out.shape == skip.shape
    ratio = out / skip
    assert torch.all(ratio > 0) and torch.all(ratio < 1)
    # One coefficient per voxel, shared by all channels.
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))


def test_blocks_in_two_dimensions():
    x = torch.randn(2, 3, 16, 16)
    assert PlainConvStage(LAYERS_2D, 3, 4, 2, [3, 3], stride=2)(x).shape == (2, 4, 8, 8)
    assert ResidualBlock(LAYERS_2D, 3, 4, [3, 3], 2)(x).shape == (2, 4, 8, 8)
    gate = AttentionGate(LAYERS_2D, 3, 3, 2)
    assert gate(x, x).shape == x.shape
