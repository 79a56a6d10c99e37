"""Building blocks of the U-Net family: convolution-norm-activation, plain and residual stages, squeeze-and-
excitation and attention gates, for 2D and 3D alike.

``LayerFactory`` holds the choices that every layer of one network shares (dimension, norm, nonlinearity,
dropout), so the blocks do not each repeat them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

LEAKY_RELU_SLOPE = 1e-2
NORM_EPS = 1e-5
SE_REDUCTION = 16
SE_MIN_CHANNELS = 4

Size = Sequence[int]


def _per_axis(value: int | Size, dimension: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dimension
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class LayerFactory:
    """Makes the layers of one network: ``dimension`` 2 or 3, ``norm`` "instance" | "batch",
    ``nonlinearity`` "leaky_relu" | "relu", channel ``dropout`` probability (0 disables it)."""

    dimension: int = 3
    norm: str = "instance"
    nonlinearity: str = "leaky_relu"
    dropout: float = 0.0

    def conv(
        self, in_channels: int, out_channels: int, kernel: int | Size, stride: int | Size = 1,
        dilation: int | Size = 1, bias: bool = True,
    ) -> nn.Module:
        """A convolution whose padding keeps the size (up to the stride): ``dilation * (kernel - 1) / 2``."""
        kernel = _per_axis(kernel, self.dimension)
        dilation = tuple(d if k > 1 else 1 for k, d in zip(kernel, _per_axis(dilation, self.dimension), strict=True))
        padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
        conv_type = nn.Conv3d if self.dimension == 3 else nn.Conv2d
        return conv_type(in_channels, out_channels, kernel, _per_axis(stride, self.dimension), padding,
                         dilation, bias=bias)

    def transposed_conv(self, in_channels: int, out_channels: int, stride: int | Size) -> nn.Module:
        """Learned upsampling by ``stride`` (kernel = stride, so outputs never overlap)."""
        stride = _per_axis(stride, self.dimension)
        conv_type = nn.ConvTranspose3d if self.dimension == 3 else nn.ConvTranspose2d
        return conv_type(in_channels, out_channels, stride, stride, bias=True)

    def norm_layer(self, channels: int) -> nn.Module:
        if self.norm == "batch":
            norm_type = nn.BatchNorm3d if self.dimension == 3 else nn.BatchNorm2d
            return norm_type(channels, eps=NORM_EPS)
        norm_type = nn.InstanceNorm3d if self.dimension == 3 else nn.InstanceNorm2d
        return norm_type(channels, eps=NORM_EPS, affine=True)

    def activation(self) -> nn.Module:
        if self.nonlinearity == "relu":
            return nn.ReLU(inplace=True)
        return nn.LeakyReLU(LEAKY_RELU_SLOPE, inplace=True)

    def dropout_layer(self) -> nn.Module:
        if self.dropout <= 0:
            return nn.Identity()
        return (nn.Dropout3d if self.dimension == 3 else nn.Dropout2d)(self.dropout)

    def avg_pool(self, stride: int | Size) -> nn.Module:
        stride = _per_axis(stride, self.dimension)
        if all(s == 1 for s in stride):
            return nn.Identity()
        return (nn.AvgPool3d if self.dimension == 3 else nn.AvgPool2d)(stride, stride)


class ConvNormAct(nn.Module):
    """conv -> dropout -> norm -> nonlinearity (nnU-Net's ConvDropoutNormReLU)."""

    def __init__(
        self, layers: LayerFactory, in_channels: int, out_channels: int, kernel: int | Size,
        stride: int | Size = 1, dilation: int | Size = 1,
    ) -> None:
        super().__init__()
        self.conv = layers.conv(in_channels, out_channels, kernel, stride, dilation)
        self.dropout = layers.dropout_layer()
        self.norm = layers.norm_layer(out_channels)
        self.act = layers.activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.dropout(self.conv(x))))


class SqueezeExcitation(nn.Module):
    """Channel re-weighting (Hu et al. 2018): global average -> bottleneck MLP -> sigmoid -> scale."""

    def __init__(self, layers: LayerFactory, channels: int) -> None:
        super().__init__()
        squeezed = max(SE_MIN_CHANNELS, channels // SE_REDUCTION)
        self.reduce = layers.conv(channels, squeezed, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = layers.conv(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(pooled))))


class PlainConvStage(nn.Module):
    """``num_convs`` ConvNormAct layers, the first carrying the stride, then one per extra dilation, then
    squeeze-and-excitation if asked."""

    def __init__(
        self, layers: LayerFactory, in_channels: int, out_channels: int, num_convs: int, kernel: Size,
        stride: int | Size = 1, dilations: Sequence[int] = (), squeeze_excitation: bool = False,
    ) -> None:
        super().__init__()
        convs = [ConvNormAct(layers, in_channels, out_channels, kernel, stride)]
        convs += [ConvNormAct(layers, out_channels, out_channels, kernel) for _ in range(num_convs - 1)]
        convs += [ConvNormAct(layers, out_channels, out_channels, kernel, dilation=d) for d in dilations]
        self.convs = nn.Sequential(*convs)
        self.se = SqueezeExcitation(layers, out_channels) if squeeze_excitation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.convs(x))


def _shortcut(
    layers: LayerFactory, in_channels: int, out_channels: int, stride: int | Size, with_norm: bool
) -> nn.Module:
    """Identity, or average pooling by the stride then a 1x1 projection (ResNet-D, as nnU-Net's BasicBlockD)."""
    needs_pool = any(s > 1 for s in _per_axis(stride, layers.dimension))
    if not needs_pool and in_channels == out_channels:
        return nn.Identity()
    parts = [layers.avg_pool(stride)]
    if in_channels != out_channels:
        parts.append(layers.conv(in_channels, out_channels, 1, bias=not with_norm))
        if with_norm:
            parts.append(layers.norm_layer(out_channels))
    return nn.Sequential(*parts)


class ResidualBlock(nn.Module):
    """Basic residual block (He et al. 2016): conv-norm-act-conv-norm [SE] + shortcut, then act.

    The second norm's scale starts at zero, so each block starts as its shortcut (as nnU-Net's residual
    encoders initialise it); gradients still reach that scale and, through it, the block's convolutions.
    """

    def __init__(
        self, layers: LayerFactory, in_channels: int, out_channels: int, kernel: Size,
        stride: int | Size = 1, dilation: int = 1, squeeze_excitation: bool = False,
    ) -> None:
        super().__init__()
        self.conv1 = layers.conv(in_channels, out_channels, kernel, stride, dilation)
        self.dropout = layers.dropout_layer()
        self.norm1 = layers.norm_layer(out_channels)
        self.act1 = layers.activation()
        self.conv2 = layers.conv(out_channels, out_channels, kernel, 1, dilation)
        self.norm2 = layers.norm_layer(out_channels)
        nn.init.zeros_(self.norm2.weight)
        self.se = SqueezeExcitation(layers, out_channels) if squeeze_excitation else nn.Identity()
        self.shortcut = _shortcut(layers, in_channels, out_channels, stride, with_norm=True)
        self.act2 = layers.activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.norm1(self.dropout(self.conv1(x))))
        out = self.se(self.norm2(self.conv2(out)))
        return self.act2(out + self.shortcut(x))


class PreActResidualBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016, "Identity mappings"): norm-act-conv-norm-act-conv
    [SE] + shortcut, with nothing after the addition."""

    def __init__(
        self, layers: LayerFactory, in_channels: int, out_channels: int, kernel: Size,
        stride: int | Size = 1, dilation: int = 1, squeeze_excitation: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = layers.norm_layer(in_channels)
        self.act1 = layers.activation()
        self.conv1 = layers.conv(in_channels, out_channels, kernel, stride, dilation)
        self.dropout = layers.dropout_layer()
        self.norm2 = layers.norm_layer(out_channels)
        self.act2 = layers.activation()
        self.conv2 = layers.conv(out_channels, out_channels, kernel, 1, dilation)
        self.se = SqueezeExcitation(layers, out_channels) if squeeze_excitation else nn.Identity()
        self.shortcut = _shortcut(layers, in_channels, out_channels, stride, with_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.norm1(x)))
        out = self.conv2(self.act2(self.norm2(self.dropout(out))))
        return self.se(out) + self.shortcut(x)


class ResidualStage(nn.Module):
    """``num_blocks`` residual blocks (basic or pre-activation), the first carrying the stride, then one
    block per extra dilation. With ``stem`` the stage starts with a convolution from the input channels
    (conv-norm-act before basic blocks, a bare conv before pre-activation blocks, which normalise first)."""

    def __init__(
        self, layers: LayerFactory, in_channels: int, out_channels: int, num_blocks: int, kernel: Size,
        stride: int | Size = 1, preact: bool = False, stem: bool = False, dilations: Sequence[int] = (),
        squeeze_excitation: bool = False,
    ) -> None:
        super().__init__()
        block_type = PreActResidualBlock if preact else ResidualBlock
        if stem:
            self.stem = (layers.conv(in_channels, out_channels, kernel) if preact
                         else ConvNormAct(layers, in_channels, out_channels, kernel))
            in_channels = out_channels
        else:
            self.stem = nn.Identity()
        blocks = [block_type(layers, in_channels, out_channels, kernel, stride,
                             squeeze_excitation=squeeze_excitation)]
        blocks += [block_type(layers, out_channels, out_channels, kernel, squeeze_excitation=squeeze_excitation)
                   for _ in range(num_blocks - 1)]
        blocks += [block_type(layers, out_channels, out_channels, kernel, dilation=d,
                              squeeze_excitation=squeeze_excitation) for d in dilations]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018) on a skip connection.

    ``alpha = sigmoid(psi(relu(W_x skip + W_g gate)))`` with 1x1 convolutions; the gate is the decoder's
    upsampled feature map at the skip's resolution (as MONAI's AttentionUnet does), so no resampling of the
    coefficients is needed. Returns ``skip * alpha``.
    """

    def __init__(self, layers: LayerFactory, skip_channels: int, gate_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.skip_proj = layers.conv(skip_channels, inter_channels, 1, bias=False)
        self.gate_proj = layers.conv(gate_channels, inter_channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.psi = layers.conv(inter_channels, 1, 1, bias=True)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.psi(self.act(self.skip_proj(skip) + self.gate_proj(gate))))
        return skip * alpha
