"""build_network / UNet: output shapes with every block type and option, deep supervision, gradients,
deterministic construction and exact rebuilding from a saved config + safetensors weights."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kidneytumorseg.networks import NetworkConfig, UNet, build_network, count_parameters, plan_network
from kidneytumorseg.networks.config import NetworkConfigError

PATCH = [16, 32, 32]
SPACING = [3.0, 0.8, 0.8]
NUM_CLASSES = 4
# Planned for PATCH at SPACING: strides [1,1,1], [1,2,2], [2,2,2], [2,2,2].
EXPECTED_LEVEL_SIZES = [[16, 32, 32], [16, 16, 16], [8, 8, 8]]

OPTIONS = {
    "defaults": {},
    "squeeze_excitation": {"squeeze_excitation": True},
    "attention_gates": {"attention_gates": True},
    "dilations": {"bottleneck_dilations": [2, 3, 5]},
    "inject_input": {"inject_input": True},
    "batch_relu_dropout": {"norm": "batch", "nonlinearity": "relu", "dropout": 0.2},
    "everything": {"squeeze_excitation": True, "attention_gates": True, "bottleneck_dilations": [2, 3],
                   "inject_input": True},
}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def small_config(block: str = "plain", **options: object) -> NetworkConfig:
    return plan_network(PATCH, SPACING, num_classes=NUM_CLASSES, base_features=4, block=block, **options)


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("block", ["plain", "residual", "preact"])
def test_every_block_and_option_gives_input_sized_logits_and_deep_supervision_levels(block, option):
    network = build_network(small_config(block, **OPTIONS[option]))
    x = torch.randn(2, 1, *PATCH)
    outputs = network(x)
    assert isinstance(outputs, list)
    assert [list(o.shape[2:]) for o in outputs] == EXPECTED_LEVEL_SIZES
    assert all(o.shape[:2] == (2, NUM_CLASSES) for o in outputs)
    network.deep_supervision = False
    logits = network(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, NUM_CLASSES, *PATCH)


def test_full_resolution_output_equals_first_deep_supervision_output():
    network = build_network(small_config("residual", attention_gates=True)).eval()
    x = torch.randn(1, 1, *PATCH)
    with torch.no_grad():
        network.deep_supervision = True
        first = network(x)[0]
        network.deep_supervision = False
        torch.testing.assert_close(network(x), first)


def test_config_deep_supervision_sets_the_default_but_not_the_weights():
    with_ds = build_network(small_config(deep_supervision=True))
    without_ds = build_network(small_config(deep_supervision=False))
    assert with_ds.deep_supervision and not without_ds.deep_supervision
    assert list(with_ds.state_dict()) == list(without_ds.state_dict())


def test_any_input_divisible_by_the_total_stride_keeps_its_size():
    network = build_network(small_config("preact"))
    network.deep_supervision = False
    assert network.config.total_strides == [4, 8, 8]
    assert network(torch.randn(1, 1, 8, 24, 40)).shape == (1, NUM_CLASSES, 8, 24, 40)


def test_bad_input_shapes_are_rejected_with_a_clear_message():
    network = build_network(small_config())
    with pytest.raises(ValueError, match=r"not divisible.*\[4, 8, 8\].*\[16, 32, 32\]"):
        network(torch.randn(1, 1, 14, 30, 32))
    with pytest.raises(ValueError, match="C = 1"):
        network(torch.randn(1, 2, *PATCH))
    with pytest.raises(ValueError, match="5D tensor"):
        network(torch.randn(1, *PATCH))


@pytest.mark.parametrize("in_channels", [1, 3])  # 2D, and 2.5D: three adjacent slices as channels
@pytest.mark.parametrize("block", ["plain", "residual"])
def test_two_dimensional_network_on_slices(block, in_channels):
    config = plan_network([32, 32], [0.8, 0.8], dimension=2, in_channels=in_channels, num_classes=NUM_CLASSES,
                          base_features=4, block=block, squeeze_excitation=True, attention_gates=True,
                          inject_input=True, bottleneck_dilations=[2])
    network = build_network(config)
    assert isinstance(network.encoder[0], nn.Module)
    assert any(isinstance(m, nn.Conv2d) for m in network.modules())
    assert not any(isinstance(m, nn.Conv3d) for m in network.modules())
    outputs = network(torch.randn(2, in_channels, 32, 32))
    assert [tuple(o.shape) for o in outputs] == [(2, NUM_CLASSES, 32 // 2**k, 32 // 2**k) for k in range(3)]


@pytest.mark.parametrize("block", ["plain", "residual", "preact"])
def test_gradient_reaches_the_first_convolution(block):
    network = build_network(small_config(block, attention_gates=True, squeeze_excitation=True))
    outputs = network(torch.randn(2, 1, *PATCH))
    loss = sum(o.square().mean() for o in outputs)
    loss.backward()
    first_conv = next(m for m in network.modules() if isinstance(m, nn.Conv3d))
    assert first_conv.weight.grad is not None
    assert first_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in network.heads.parameters())


def test_residual_networks_have_more_parameters_than_plain_with_more_blocks():
    plain = count_parameters(build_network(small_config("plain")))
    residual = count_parameters(build_network(small_config("residual", encoder_blocks_per_stage=[2, 3, 4, 4])))
    preact = count_parameters(build_network(small_config("preact", encoder_blocks_per_stage=[2, 3, 4, 4])))
    assert residual > plain and preact > plain


def test_options_add_parameters():
    base = count_parameters(build_network(small_config()))
    for option in ("squeeze_excitation", "attention_gates", "dilations", "inject_input"):
        assert count_parameters(build_network(small_config(**OPTIONS[option]))) > base, option


def test_count_parameters_trainable_only():
    network = build_network(small_config())
    total = count_parameters(network)
    network.heads.requires_grad_(False)
    frozen = sum(p.numel() for p in network.heads.parameters())
    assert count_parameters(network, trainable_only=True) == total - frozen


def test_construction_is_deterministic_under_a_seed_and_rebuilds_from_json():
    data = json.loads(json.dumps(small_config("residual", squeeze_excitation=True).to_dict()))
    torch.manual_seed(7)
    first = build_network(data)
    torch.manual_seed(7)
    second = build_network(NetworkConfig.from_dict(data))
    assert count_parameters(first) == count_parameters(second)
    assert list(first.state_dict()) == list(second.state_dict())
    for key, value in first.state_dict().items():
        torch.testing.assert_close(second.state_dict()[key], value)


def test_initialisation_is_he_normal_with_zero_biases():
    network = build_network(plan_network(PATCH, SPACING, base_features=16))
    convs = [m for m in network.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    assert all(torch.all(c.bias == 0) for c in convs if c.bias is not None)
    widest = max(convs, key=lambda c: c.weight[0].numel())
    fan_in = widest.weight[0].numel()
    expected_std = math.sqrt(2.0 / (1 + 0.01**2)) / math.sqrt(fan_in)
    assert widest.weight.std().item() == pytest.approx(expected_std, rel=0.1)


@pytest.mark.parametrize("block", ["plain", "residual"])
def test_safetensors_weights_load_strictly_into_a_fresh_build_with_identical_outputs(tmp_path, block):
    config = small_config(block, norm="batch", attention_gates=True, inject_input=True)
    trained = build_network(config)
    trained.train()
    with torch.no_grad():  # move batch-norm running statistics away from their defaults
        trained(torch.randn(2, 1, *PATCH))
    path = tmp_path / "fold0.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))

    torch.manual_seed(123)  # a different initialisation, overwritten by the load
    rebuilt = build_network(json.loads(json.dumps(config.to_dict())))
    rebuilt.load_state_dict(load_file(str(path)), strict=True)
    trained.eval()
    rebuilt.eval()
    trained.deep_supervision = rebuilt.deep_supervision = False
    x = torch.randn(1, 1, *PATCH)
    with torch.no_grad():
        assert torch.equal(trained(x), rebuilt(x))


def test_build_network_rejects_other_types_and_bad_dicts():
    with pytest.raises(NetworkConfigError, match="NetworkConfig or its dict form"):
        build_network("plain")  # type: ignore[arg-type]
    bad = small_config().to_dict()
    bad["block"] = "dense"
    with pytest.raises(NetworkConfigError, match="'block'"):
        build_network(bad)


def test_unet_is_the_built_type_and_keeps_its_config():
    config = small_config()
    network = build_network(config)
    assert isinstance(network, UNet)
    assert network.config == config
