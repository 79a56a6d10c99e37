"""Our sliding window agrees with MONAI's and nnU-Net v2's at identical settings: same tiles, overlap, Gaussian
map and mirroring, the peers averaging softmax as ours does (and nnU-Net summing in float32). Runs the peer
adapters of benchmarks/predictor_vs_peers.py, which explains what differs when the peers run as shipped."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from kidneytumorseg.networks import build_network, plan_network

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = REPO_ROOT / "benchmarks" / "predictor_vs_peers.py"
PATCH = (16, 32, 32)
SPACING = (3.0, 1.5, 1.5)
# S shorter than the tile (all three pad it to the tile, centred); P and L = tile + k * step, where MONAI's
# tiles start where nnU-Net's and ours do.
SHAPE = (12, 48, 64)
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def peers() -> Iterator[ModuleType]:
    """The benchmark script as a module; torchvision stays unimportable while it is in use."""
    spec = importlib.util.spec_from_file_location("predictor_vs_peers", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    meta_path = list(sys.meta_path)
    try:
        spec.loader.exec_module(module)
        module.block_torchvision()
        yield module
    finally:
        sys.meta_path[:] = meta_path
        sys.modules.pop(spec.name, None)


# Tiny networks run far slower with two threads on a busy machine (the fixture is in Testing/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_network(plan_network(PATCH, SPACING, base_features=4, max_features=16))
    net.deep_supervision = False
    return net.eval()


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


@pytest.fixture(scope="module")
def ours(peers: ModuleType, network: torch.nn.Module, volume: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    return {axes: peers.predict_probabilities(peers.OURS, network, volume, peers.SlidingWindowConfig(PATCH, 0.5, axes))
            for axes in [(), (0, 1, 2)]}


def _largest_difference(peers: ModuleType, variant, network: torch.nn.Module, volume: np.ndarray,
                        ours: dict[tuple[int, ...], np.ndarray], mirror_axes: tuple[int, ...]) -> float:
    theirs = peers.predict_probabilities(variant, network, volume, peers.SlidingWindowConfig(PATCH, 0.5, mirror_axes))
    assert theirs.shape == ours[mirror_axes].shape == (4, *SHAPE)
    return float(np.abs(theirs - ours[mirror_axes]).max())


@pytest.mark.slow
@pytest.mark.parametrize("mirror_axes", [(), (0, 1, 2)])
def test_monai_agrees_with_ours(peers, network, volume, ours, mirror_axes):
    """MONAI averaging softmax and blending with our Gaussian map (its roi_weight_map argument)."""
    pytest.importorskip("monai.inferers", reason="MONAI is not installed")
    variant = peers.Variant("monai", "softmax", "shared")
    assert _largest_difference(peers, variant, network, volume, ours, mirror_axes) < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("mirror_axes", [(), (0, 1, 2)])
def test_nnunet_with_float32_sums_agrees_with_ours(peers, network, volume, ours, mirror_axes):
    """nnU-Net averaging softmax, blending with our Gaussian map, its float16 buffers made float32."""
    pytest.importorskip("nnunetv2.inference.predict_from_raw_data",
                        reason="nnunetv2 is not installed (pip install -e '.[peers]' -c constraints.txt)")
    variant = peers.Variant("nnunet", "softmax", "shared", "fp32")
    assert _largest_difference(peers, variant, network, volume, ours, mirror_axes) < TOLERANCE


@pytest.mark.slow
def test_nnunet_as_shipped_sums_in_float16(peers, network, volume, ours):
    """As shipped nnU-Net keeps float16 sums: close to ours in the interior, far where only Gaussian tails reach."""
    pytest.importorskip("nnunetv2.inference.predict_from_raw_data",
                        reason="nnunetv2 is not installed (pip install -e '.[peers]' -c constraints.txt)")
    variant = peers.Variant("nnunet", "softmax", "shared", "fp16")
    theirs = peers.predict_probabilities(variant, network, volume, peers.SlidingWindowConfig(PATCH, 0.5, ()))
    per_voxel = np.abs(theirs - ours[()]).max(axis=0)
    assert np.median(per_voxel) < TOLERANCE
    assert per_voxel.max() > 10 * TOLERANCE  # if this fails, nnU-Net no longer sums in float16: update the docs
