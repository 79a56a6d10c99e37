"""Sliding-window inference: tiling, Gaussian weighting, mirroring, padding, progress and cancellation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kidneytumorseg.errors import Cancelled
from kidneytumorseg.sliding_window import gaussian_importance_map, sliding_window_predict, tile_slices, tile_starts

SHAPE = (20, 40, 40)
PATCH = (8, 16, 16)


def _pointwise_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 6, 1), torch.nn.Tanh(), torch.nn.Conv3d(6, 4, 1))


def _symmetric_conv(conv: torch.nn.Conv3d) -> torch.nn.Conv3d:
    """Make a conv's kernel symmetric under every flip, so the conv commutes with mirroring."""
    with torch.no_grad():
        weight = conv.weight.clone()
        flips = [dims for r in range(4) for dims in itertools.combinations((2, 3, 4), r)]
        conv.weight.copy_(sum(torch.flip(weight, dims) if dims else weight for dims in flips) / len(flips))
    return conv


def _flip_equivariant_net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        _symmetric_conv(torch.nn.Conv3d(1, 4, 3, padding=1)), torch.nn.ReLU(),
        _symmetric_conv(torch.nn.Conv3d(4, 4, 3, padding=1)),
    )


# Tiny networks run far slower with two threads on a busy machine (the fixture is in Testing/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


def _direct(net: torch.nn.Module, volume: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(volume)[None, None]), dim=1)[0].numpy()


@pytest.mark.parametrize(("size", "patch", "overlap"), [(40, 16, 0.5), (37, 16, 0.5), (20, 8, 0.25), (16, 16, 0.5),
                                                          (100, 32, 0.0), (9, 8, 0.5)])
def test_tiles_cover_every_voxel_and_are_evenly_spaced(size, patch, overlap):
    starts = tile_starts(size, patch, overlap)
    covered = np.zeros(size, dtype=bool)
    for start in starts:
        covered[start:start + patch] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == size - patch
    expected = int(np.ceil((size - patch) / (patch * (1 - overlap)))) + 1 if size > patch else 1
    assert len(starts) == expected
    steps = np.diff(starts)
    assert len(steps) == 0 or (steps.max() - steps.min() <= 1 and steps.max() <= patch * (1 - overlap) + 1e-9)


def test_tile_slices_are_the_product_of_starts():
    tiles = tile_slices(SHAPE, PATCH, 0.5)
    assert len(tiles) == 4 * 4 * 4
    assert all(tuple(s.stop - s.start for s in tile) == PATCH for tile in tiles)


def test_tile_arguments_are_checked():
    with pytest.raises(ValueError, match="tile_overlap"):
        tile_starts(40, 16, 1.0)


def test_gaussian_map_is_positive_normalised_and_peaks_at_centre():
    weights = gaussian_importance_map((9, 16, 17))
    assert weights.shape == (9, 16, 17) and weights.dtype == np.float32
    assert (weights > 0).all() and weights.max() == pytest.approx(1.0)
    assert weights[4, 8, 8] == weights.max() and weights[4, 7, 8] == weights.max()  # even axis: two centres
    assert weights[0, 0, 0] < weights[2, 4, 4] < weights[4, 8, 8]
    assert (gaussian_importance_map((64, 64, 64), sigma_scale=0.01) > 0).all()  # underflow clamped
    with pytest.raises(ValueError, match="gaussian_sigma_scale"):
        gaussian_importance_map(PATCH, sigma_scale=0.0)


def test_tiled_equals_whole_volume_for_a_pointwise_net(volume):
    net = _pointwise_net()
    tiled = sliding_window_predict(net, volume, PATCH, tile_overlap=0.5).numpy()
    whole = sliding_window_predict(net, volume, SHAPE).numpy()
    assert tiled.shape == (4, *SHAPE)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    np.testing.assert_allclose(tiled, _direct(net, volume), atol=1e-5)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)


def test_batches_and_accumulation_device_do_not_change_the_result(volume):
    net = _flip_equivariant_net()
    one = sliding_window_predict(net, volume, PATCH, batch_size=1).numpy()
    batched = sliding_window_predict(net, volume, PATCH, batch_size=5, accumulation_device="cpu").numpy()
    np.testing.assert_allclose(one, batched, atol=1e-5)


def test_half_precision_on_cpu_runs_the_network_in_bfloat16_and_keeps_float32_sums(volume):
    seen: list[torch.dtype] = []
    net = _flip_equivariant_net()
    net.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    full = sliding_window_predict(net, volume, PATCH).numpy()
    assert set(seen) == {torch.float32}
    seen.clear()
    half = sliding_window_predict(net, volume, PATCH, half_precision=True)
    assert set(seen) == {torch.bfloat16}
    assert half.dtype == torch.float32
    np.testing.assert_allclose(half.numpy().sum(axis=0), 1.0, atol=1e-5)
    difference = np.abs(half.numpy() - full).max()
    assert 0 < difference < 0.05  # bfloat16 rounding: different, but close


def test_mirroring_a_flip_equivariant_net_changes_nothing(volume):
    net = _flip_equivariant_net()
    plain = sliding_window_predict(net, volume, PATCH).numpy()
    mirrored = sliding_window_predict(net, volume, PATCH, mirror_axes=(0, 1, 2)).numpy()
    np.testing.assert_allclose(mirrored, plain, atol=1e-5)


def test_mirroring_averages_softmax_over_all_flips(volume):
    net = torch.nn.Conv3d(1, 4, 3, padding=1)
    torch.manual_seed(2)
    torch.nn.init.normal_(net.weight)
    mirrored = sliding_window_predict(net, volume, SHAPE, mirror_axes=(1, 2)).numpy()
    expected = np.mean([np.flip(_direct(net, np.flip(volume, axes).copy()), [a + 1 for a in axes])
                        for axes in [(), (1,), (2,), (1, 2)]], axis=0)
    np.testing.assert_allclose(mirrored, expected, atol=1e-5)
    with pytest.raises(ValueError, match="mirror_axes"):
        sliding_window_predict(net, volume, SHAPE, mirror_axes=(3,))


def test_volume_smaller_than_patch_is_padded_and_cropped_back():
    small = np.random.default_rng(3).normal(size=(5, 6, 7)).astype(np.float32)
    net = _pointwise_net()
    out = sliding_window_predict(net, small, PATCH).numpy()
    assert out.shape == (4, 5, 6, 7)
    np.testing.assert_allclose(out, _direct(net, small), atol=1e-5)


def test_deep_supervision_lists_use_full_resolution(volume):
    class DeepSupervised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _pointwise_net()

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            full = self.net(x)
            return [full, full[:, :, ::2, ::2, ::2]]

    out = sliding_window_predict(DeepSupervised(), volume, PATCH).numpy()
    np.testing.assert_allclose(out, _direct(_pointwise_net(), volume), atol=1e-5)


def test_progress_is_monotonic_and_ends_at_one(volume):
    calls: list[tuple[str, float]] = []
    sliding_window_predict(_pointwise_net(), volume, PATCH, batch_size=3,
                           progress=lambda stage, fraction: calls.append((stage, fraction)), stage="segmenting")
    fractions = [fraction for _, fraction in calls]
    assert len(calls) == int(np.ceil(64 / 3))
    assert {stage for stage, _ in calls} == {"segmenting"}
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


class _CancelAfter:
    """A cancel event that becomes set once ``tiles`` tiles have been predicted."""

    def __init__(self, tiles: int) -> None:
        self.tiles, self.seen = tiles, 0

    def count(self, *_: object) -> None:
        self.seen += 1

    def is_set(self) -> bool:
        return self.seen >= self.tiles


def test_cancellation_after_k_tiles_raises_cancelled(volume):
    cancel = _CancelAfter(5)
    net = _pointwise_net()
    net.register_forward_hook(lambda *args: cancel.count())
    with pytest.raises(Cancelled, match="cancelled"):
        sliding_window_predict(net, volume, PATCH, cancel=cancel)
    assert cancel.seen == 5


def test_bad_arguments_are_refused(volume):
    with pytest.raises(ValueError, match="batch_size"):
        sliding_window_predict(_pointwise_net(), volume, PATCH, batch_size=0)
    with pytest.raises(ValueError, match="patch_size must have 3"):
        sliding_window_predict(_pointwise_net(), volume, (8, 8))
    with pytest.raises(ValueError, match=r"\(S, P, L\)"):
        sliding_window_predict(_pointwise_net(), volume[0], PATCH)
