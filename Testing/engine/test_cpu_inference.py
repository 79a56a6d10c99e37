"""The CPU fast path (channels-last, prepacked oneDNN convolutions) computes what the eager network computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kidneytumorseg import cpu_inference
from kidneytumorseg.cpu_inference import (
    ChannelsLastInstanceNorm3d,
    ChannelsLastNetwork,
    PackedConv3d,
    cpu_inference_network,
)
from kidneytumorseg.networks import build_network, plan_network
from kidneytumorseg.sliding_window import sliding_window_predict

pytestmark = pytest.mark.skipif(not cpu_inference.fast_path_available(),
                                reason="this PyTorch build has no oneDNN pointwise convolution")

PATCH = (16, 32, 32)
ARCHITECTURES = {
    "plain": {},
    "residual": {"block": "residual"},
    "preact": {"block": "preact"},
    "se + attention + injection": {"block": "residual", "squeeze_excitation": True, "attention_gates": True,
                                   "inject_input": True},
    "dilated bottleneck, relu": {"bottleneck_dilations": [2, 3], "nonlinearity": "relu"},
    "two input channels": {"in_channels": 2},
}


def _network(options: dict) -> nn.Module:
    torch.manual_seed(0)
    network = build_network(plan_network(PATCH, (3.0, 1.5, 1.5), base_features=8, max_features=64, **options))
    return network.eval()


def _randomise_norms(network: nn.Module) -> None:
    """Affine parameters away from their 1 / 0 start, so that a wrong weight or bias would show."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, nn.InstanceNorm3d) and module.affine:
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_fast_path_equals_the_eager_network(name: str) -> None:
    options = dict(ARCHITECTURES[name])
    channels = options.pop("in_channels", 1)
    network = _network({**options, "in_channels": channels})
    _randomise_norms(network)
    network.deep_supervision = False
    x = torch.randn(2, channels, *PATCH, generator=torch.Generator().manual_seed(2)) * 2 + 1
    fast = cpu_inference_network(network, "cpu", half_precision=False)
    assert isinstance(fast, ChannelsLastNetwork)
    assert any(isinstance(m, PackedConv3d) for m in fast.modules())
    assert any(isinstance(m, ChannelsLastInstanceNorm3d) for m in fast.modules())
    with torch.no_grad():
        expected = network(x)
        got = fast(x)
    assert got.shape == expected.shape and got.is_contiguous()
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-4 * max(scale, 1.0)


def test_deep_supervision_outputs_all_match() -> None:
    network = _network({"block": "residual"})
    x = torch.randn(1, 1, *PATCH, generator=torch.Generator().manual_seed(3))
    fast = cpu_inference_network(network, "cpu", half_precision=False)
    with torch.no_grad():
        expected, got = network(x), fast(x)
    assert len(got) == len(expected) > 1
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape and a.is_contiguous()
        assert float((a - b).abs().max()) <= 1e-4 * max(float(b.abs().max()), 1.0)


def test_the_original_network_is_untouched_and_shares_its_weights() -> None:
    network = _network({})
    before = {name: value.clone() for name, value in network.state_dict().items()}
    fast = cpu_inference_network(network, "cpu", half_precision=False)
    assert not any(isinstance(m, (PackedConv3d, ChannelsLastInstanceNorm3d)) for m in network.modules())
    assert sum(p.numel() for p in fast.parameters()) == sum(p.numel() for p in network.parameters())
    with torch.no_grad():
        fast(torch.randn(1, 1, *PATCH))
        first_conv = next(m for m in network.modules() if isinstance(m, nn.Conv3d))
        first_conv.weight.mul_(2.0)  # a shared weight: the view's next fresh packing sees it
    packed = next(m for m in fast.modules() if isinstance(m, PackedConv3d))
    assert packed.weight is first_conv.weight
    for name, value in network.state_dict().items():
        if value.data_ptr() != first_conv.weight.data_ptr():
            assert torch.equal(value, before[name]), name


def test_instance_norm_matches_pytorch_to_float32_rounding() -> None:
    norm = nn.InstanceNorm3d(6, eps=1e-5, affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
        norm.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    # A large offset against a small spread: a one-pass E[x^2] - E[x]^2 loses digits here.
    x = torch.randn(2, 6, 12, 20, 24, generator=torch.Generator().manual_seed(4)) * 0.5 + 30.0
    expected = nn.functional.instance_norm(x.double(), weight=norm.weight.double().detach(),
                                           bias=norm.bias.double().detach(), eps=1e-5)
    got = ChannelsLastInstanceNorm3d(norm)(x.contiguous(memory_format=torch.channels_last_3d))
    assert float((got.double() - expected).abs().max()) < 1e-4


@pytest.mark.parametrize("device, half", [("cpu", True), ("meta", False)])
def test_other_settings_get_the_network_itself(device: str, half: bool) -> None:
    network = _network({})
    assert cpu_inference_network(network, device, half_precision=half) is network


def test_the_environment_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _network({})
    monkeypatch.setenv(cpu_inference.ENVIRONMENT_SWITCH, "0")
    assert cpu_inference_network(network, "cpu", half_precision=False) is network


def test_sliding_window_probabilities_agree_with_the_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    network = _network({"block": "residual"})
    _randomise_norms(network)
    volume = np.random.default_rng(5).normal(size=(20, 40, 44)).astype(np.float32)
    fast = sliding_window_predict(network, volume, PATCH, 0.5, mirror_axes=(0, 2))
    monkeypatch.setenv(cpu_inference.ENVIRONMENT_SWITCH, "off")
    eager = sliding_window_predict(network, volume, PATCH, 0.5, mirror_axes=(0, 2))
    assert fast.shape == eager.shape == (4, 20, 40, 44)
    assert float((fast - eager).abs().max()) < 1e-4
    assert float((fast.argmax(0) != eager.argmax(0)).float().mean()) < 1e-3


def test_a_failing_fast_path_falls_back_to_the_eager_network(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    network = _network({})
    network.deep_supervision = False
    x = torch.randn(1, 1, *PATCH, generator=torch.Generator().manual_seed(6))

    def refuse(self, x):
        raise RuntimeError("could not create a primitive descriptor")

    monkeypatch.setattr(PackedConv3d, "forward", refuse)
    fast = cpu_inference_network(network, "cpu", half_precision=False)
    with torch.no_grad(), caplog.at_level("WARNING", logger="kidneytumorseg.cpu_inference"):
        got = fast(x)
        again = fast(x)
        expected = network(x)
    assert torch.equal(got, expected) and torch.equal(again, expected)
    assert fast.failed
    assert sum("CPU fast path failed" in record.getMessage() for record in caplog.records) == 1
