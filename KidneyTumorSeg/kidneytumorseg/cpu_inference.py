"""Faster float32 inference of a 3D network on a CPU: channels-last tensors and prepacked oneDNN convolutions.

PyTorch's eager 3D convolution on a CPU keeps activations in NCDHW order and has oneDNN reorder each input into
its own blocked layout, the output back, and the weights on every call. On this project's U-Nets those reorders
cost about a third of the forward pass. :func:`cpu_inference_network` returns a view of a network that instead

- keeps every activation in ``torch.channels_last_3d`` order, which oneDNN's kernels read and write directly;
- runs each ``Conv3d`` through ``torch.ops.mkldnn._convolution_pointwise`` with its weight reordered once, on the
  first call, for the input size it sees (the same op and prepacking that ``torch.compile`` emits with
  ``freezing``, without the compile: no warm-up, nothing written to disk);
- normalises each ``InstanceNorm3d`` in that order too (PyTorch's own instance norm copies a channels-last
  input to NCDHW first), with exact two-pass statistics.

The arithmetic is still float32 and the result equals the eager network's to float32 rounding (the convolution
algorithms differ, so not bit for bit): tests compare them on every architecture the networks package builds.
The network itself is not changed: the view shares its parameters and holds the packed weights beside them.

It applies to float32 on a CPU only. Under bfloat16 autocast the eager network is already on oneDNN's
bfloat16 path, and autocast does not cast for the custom op. ``KIDNEYTUMORSEG_CPU_FAST_PATH=0`` turns it off
(the eager network runs instead).
"""

from __future__ import annotations

import copy
import logging
import os

import torch
from torch import nn

logger = logging.getLogger(__name__)

ENVIRONMENT_SWITCH = "KIDNEYTUMORSEG_CPU_FAST_PATH"
CHANNELS_LAST = torch.channels_last_3d


def fast_path_available() -> bool:
    """Whether this PyTorch build has oneDNN and the pointwise-convolution op, and the user has not switched it off."""
    if os.environ.get(ENVIRONMENT_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    return hasattr(torch.ops.mkldnn, "_convolution_pointwise") and hasattr(torch.ops.mkldnn,
                                                                         "_reorder_convolution_weight")


class PackedConv3d(nn.Module):
    """A ``Conv3d`` run by oneDNN on channels-last input, its weight reordered once per input size."""

    def __init__(self, conv: nn.Conv3d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only zero-padded convolutions with explicit padding can be packed.")
        self.weight = conv.weight
        self.bias = conv.bias
        self.arguments = (list(conv.padding), list(conv.stride), list(conv.dilation), int(conv.groups))
        self.packed: dict[tuple[int, ...], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=CHANNELS_LAST)
        size = tuple(x.shape)
        weight = self.packed.get(size)
        if weight is None:
            weight = torch.ops.mkldnn._reorder_convolution_weight(self.weight.detach(), *self.arguments, list(size))
            self.packed[size] = weight
        bias = None if self.bias is None else self.bias.detach()
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *self.arguments, "none", [None], "")


class ChannelsLastInstanceNorm3d(nn.Module):
    """``InstanceNorm3d`` (batch statistics, optional affine) computed on channels-last input without a copy.

    Mean and variance per sample and channel are two passes over the voxels (the variance of the centred
    values), so they are as exact as PyTorch's own instance norm; PyTorch's channels-last batch norm, the
    obvious shortcut for one sample, is faster but loses about 5e-4 of the normalised values.
    """

    def __init__(self, norm: nn.InstanceNorm3d) -> None:
        super().__init__()
        self.eps = float(norm.eps)
        self.weight = norm.weight if norm.affine else None
        self.bias = norm.bias if norm.affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=CHANNELS_LAST)
        samples, channels = x.shape[:2]
        voxels = x.permute(0, 2, 3, 4, 1).reshape(samples, -1, channels)  # a view: channels are innermost
        count = voxels.shape[1]
        means = torch.empty(samples, channels, dtype=x.dtype, device=x.device)
        variances = torch.empty_like(means)
        for index in range(samples):
            sample = voxels[index]
            mean = sample.sum(0) / count
            centred = sample - mean
            means[index] = mean
            variances[index] = centred.square_().sum(0) / count
        scale = torch.rsqrt(variances + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.detach()
        shift = -means * scale
        if self.bias is not None:
            shift = shift + self.bias.detach()
        shape = (samples, channels, 1, 1, 1)
        return torch.addcmul(shift.view(shape), x, scale.view(shape))


class ChannelsLastNetwork(nn.Module):
    """Feeds the converted network channels-last input and returns its output(s) in the default order.

    Should oneDNN refuse a convolution on some CPU or build (a RuntimeError on the first call), it logs a
    warning and runs the original, eager network from then on, so a prediction never fails for the fast path.
    """

    def __init__(self, network: nn.Module, original: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.original = [original]  # in a list: not a submodule (its parameters are the view's already)
        self.failed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not self.failed:
            try:
                output = self.network(x.contiguous(memory_format=CHANNELS_LAST))
            except RuntimeError as error:
                if "out of memory" in str(error).lower():
                    raise
                self.failed = True
                logger.warning("The CPU fast path failed (%s); running the eager network instead. Set %s=0 to "
                               "skip it.", str(error).splitlines()[0][:200], ENVIRONMENT_SWITCH)
        if self.failed:
            return self.original[0](x)
        if isinstance(output, (list, tuple)):
            return [item.contiguous() for item in output]
        return output.contiguous()


def _convertible_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.InstanceNorm3d) and not module.track_running_stats


def _convertible_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv3d) and module.padding_mode == "zeros" and not isinstance(module.padding, str)


def _replace(parent: nn.Module) -> int:
    replaced = 0
    for name, child in parent.named_children():
        if _convertible_conv(child):
            setattr(parent, name, PackedConv3d(child))
            replaced += 1
        elif _convertible_norm(child):
            setattr(parent, name, ChannelsLastInstanceNorm3d(child))
            replaced += 1
        else:
            replaced += _replace(child)
    return replaced


def cpu_inference_network(network: nn.Module, device: torch.device | str, half_precision: bool) -> nn.Module:
    """``network`` for inference on ``device``: the oneDNN channels-last view (see the module docstring) for
    float32 on a CPU where available and the network has 3D convolutions, else ``network`` itself."""
    if torch.device(device).type != "cpu" or half_precision or not fast_path_available():
        return network
    if not any(_convertible_conv(module) for module in network.modules()):
        return network
    if any(param.device.type != "cpu" or param.dtype != torch.float32 for param in network.parameters()):
        return network
    # Share every parameter and buffer with the original; copy only the module tree.
    memo = {id(tensor): tensor for tensor in (*network.parameters(), *network.buffers())}
    view = copy.deepcopy(network, memo)
    replaced = _replace(view)
    logger.debug("CPU fast path: %d convolutions and norms run channels-last with prepacked oneDNN weights.",
                 replaced)
    return ChannelsLastNetwork(view, network).eval()
