"""The peer runners: a peer's output as probabilities, the network wrapper the peers see, and the three sliding
windows agreeing on a network without context (each voxel's output its own, so every blending gives the same).
The nnU-Net and MONAI tests need the peers extra and are skipped without it."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from peer_comparison.runners import PeerNetwork, as_probabilities, peer_runner, predict_probabilities
from peer_comparison.torchvision_guard import _NoTorchvision, block_torchvision
from peer_comparison.variants import AS_SHIPPED, OURS, SlidingWindowConfig, Variant

NNUNET_REASON = "nnunetv2 is not installed (the peers extra: pip install -e '.[peers]' -c constraints.txt)"
MONAI_REASON = "MONAI is not installed (the peers extra: pip install -e '.[peers]' -c constraints.txt)"
CONFIG = SlidingWindowConfig((4, 8, 8), 0.5, (), 4)
SHAPE = (6, 12, 16)  # tile + k * step on every axis: MONAI's tiles start where ours and nnU-Net's do


@pytest.fixture
def restored_meta_path():
    saved = list(sys.meta_path)
    yield
    sys.meta_path[:] = saved


class Pointwise(torch.nn.Module):
    """A 1x1x1 convolution to 4 classes: no context, so a voxel's logits do not depend on its tile."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 4, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]).reshape(4, 1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, -0.2, 0.1, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def expected(self, volume: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(self.conv(torch.from_numpy(volume)[None, None]), dim=1)[0].numpy()


class Ramp(torch.nn.Module):
    """Logits that depend on the position in the tile (not flip-equivariant): mirroring changes the output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[-1], dtype=x.dtype)
        return torch.cat([x * ramp, -x * ramp], dim=1)


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


def test_as_probabilities_applies_softmax_to_logits_only():
    logits = torch.tensor([[[[0.0]]], [[[np.log(3.0)]]]], dtype=torch.float16)  # (2, 1, 1, 1)
    probabilities = as_probabilities(AS_SHIPPED[0], logits)
    assert probabilities.dtype == np.float32 and probabilities.shape == (2, 1, 1, 1)
    np.testing.assert_allclose(probabilities.ravel(), [0.25, 0.75], atol=1e-3)
    averaged = torch.tensor([0.2, 0.8]).reshape(2, 1, 1, 1)
    np.testing.assert_array_equal(as_probabilities(Variant("monai", "softmax", "shared"), averaged).ravel(),
                                  np.float32([0.2, 0.8]))
    np.testing.assert_array_equal(as_probabilities(OURS, averaged).ravel(), np.float32([0.2, 0.8]))


def test_peer_network_softmax_and_mirroring():
    x = torch.arange(1.0, 4.0).reshape(1, 1, 1, 1, 3)
    logits = PeerNetwork(Ramp(), softmax=False)(x)
    assert torch.equal(logits, Ramp()(x))
    probabilities = PeerNetwork(Ramp(), softmax=True)(x)
    assert torch.allclose(probabilities.sum(1), torch.ones(1, 1, 1, 3))
    assert torch.allclose(probabilities, torch.softmax(Ramp()(x), dim=1))
    # Mirrored over L: the average of the output and the output of the flipped input, flipped back.
    mirrored = PeerNetwork(Ramp(), softmax=False, mirror_axes=(2,))(x)
    flipped_back = torch.flip(Ramp()(torch.flip(x, [4])), [4])
    assert torch.allclose(mirrored, (Ramp()(x) + flipped_back) / 2)
    assert not torch.allclose(mirrored, Ramp()(x))


def test_ours_on_a_pointwise_network_is_its_softmax(volume):
    network = Pointwise()
    np.testing.assert_allclose(predict_probabilities(OURS, network, volume, CONFIG), network.expected(volume),
                               atol=1e-6)
    mirrored = SlidingWindowConfig((4, 8, 8), 0.5, (0, 1, 2), 4)
    np.testing.assert_allclose(predict_probabilities(OURS, network, volume, mirrored), network.expected(volume),
                               atol=1e-6)


@pytest.mark.parametrize("variant, tolerance", [
    (Variant("monai"), 1e-5), (Variant("monai", "softmax", "shared"), 1e-5), (Variant("monai", "softmax", "own"), 1e-5),
])
def test_monai_on_a_pointwise_network(volume, variant, tolerance):
    pytest.importorskip("monai.inferers", reason=MONAI_REASON)
    network = Pointwise()
    output = peer_runner(variant, network, CONFIG)(volume)
    assert tuple(output.shape) == (4, *SHAPE)
    np.testing.assert_allclose(as_probabilities(variant, output), network.expected(volume), atol=tolerance)


@pytest.mark.usefixtures("restored_meta_path")
@pytest.mark.parametrize("variant, tolerance", [
    (Variant("nnunet", "softmax", "shared", "fp32"), 1e-5), (Variant("nnunet", "logits", "own", "fp32"), 1e-5),
])
def test_nnunet_on_a_pointwise_network(volume, variant, tolerance):
    pytest.importorskip("nnunetv2.inference.predict_from_raw_data", reason=NNUNET_REASON)
    network = Pointwise()
    output = peer_runner(variant, network, CONFIG)(volume)
    assert tuple(output.shape) == (4, *SHAPE)
    assert output.dtype == torch.float32
    np.testing.assert_allclose(as_probabilities(variant, output), network.expected(volume), atol=tolerance)


@pytest.mark.usefixtures("restored_meta_path")
def test_nnunet_as_shipped_sums_in_float16(volume):
    """Close to the exact answer on most voxels; off by more where only float16 Gaussian tails reach."""
    pytest.importorskip("nnunetv2.inference.predict_from_raw_data", reason=NNUNET_REASON)
    network = Pointwise()
    output = peer_runner(AS_SHIPPED[0], network, CONFIG)(volume)
    assert output.dtype == torch.float16
    per_voxel = np.abs(as_probabilities(AS_SHIPPED[0], output) - network.expected(volume)).max(axis=0)
    assert np.median(per_voxel) < 2e-3
    assert per_voxel.max() > 1e-2


@pytest.mark.usefixtures("restored_meta_path")
def test_nnunet_changed_swaps_and_restores():
    nnunet_module = pytest.importorskip("nnunetv2.inference.predict_from_raw_data", reason=NNUNET_REASON)
    from peer_comparison.nnunet_peer import nnunet_changed

    from kidneytumorseg.sliding_window import gaussian_importance_map

    original_gaussian, original_torch = nnunet_module.compute_gaussian, nnunet_module.torch
    with nnunet_changed((4, 8, 8), "shared", "fp32"):
        assert nnunet_module.torch.half is torch.float32 and nnunet_module.torch.zeros is torch.zeros
        ours = nnunet_module.compute_gaussian((4, 8, 8), sigma_scale=0.125, value_scaling_factor=10,
                                              device=torch.device("cpu"))
        assert ours.dtype == torch.float32
        expected = gaussian_importance_map((4, 8, 8), 0.125)
        np.testing.assert_allclose(ours.numpy(), expected / expected.max() * 10, rtol=1e-6)
        with pytest.raises(ValueError, match="shared map"):
            nnunet_module.compute_gaussian((4, 8, 9), sigma_scale=0.125)
    assert (nnunet_module.compute_gaussian, nnunet_module.torch) == (original_gaussian, original_torch)
    with nnunet_changed((4, 8, 8), "own", "fp16"):
        assert nnunet_module.torch is torch


@pytest.mark.usefixtures("restored_meta_path")
def test_torchvision_is_refused_once_blocked():
    block_torchvision()
    block_torchvision()
    assert sum(isinstance(finder, _NoTorchvision) for finder in sys.meta_path) == 1
    if "torchvision" in sys.modules:
        pytest.skip("torchvision was imported by something else in this session")
    with pytest.raises(ImportError, match="blocked in this project"):
        importlib.util.find_spec("torchvision")  # finds without importing: nothing is loaded even unblocked
