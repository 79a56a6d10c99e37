"""2.5D members: neighbouring slices as channels, the same in training and inference, run slice by slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kidneytumorseg.networks import build_network, plan_network
from kidneytumorseg.slices import SliceNetwork, centre_slab, predict_slices, slab_channels, slice_mirror_axes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _volume(channels: int = 2, slices: int = 7) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(channels, slices, 16, 16)).astype(np.float32)


def test_inference_slabs_equal_the_training_patch_of_each_slice():
    volume = _volume()
    slabs = slab_channels(volume, 2)
    assert slabs.shape == (10, 7, 16, 16)
    for s in range(2, 5):
        np.testing.assert_array_equal(slabs[:, s], centre_slab(volume[:, s - 2:s + 3], 2))
    # channel c * (2k + 1) + j is channel c at slice offset j - k; beyond the edges the edge slice repeats
    np.testing.assert_array_equal(slabs[5 + 3, 1], volume[1, 2])
    np.testing.assert_array_equal(slabs[0, 0], volume[0, 0])
    np.testing.assert_array_equal(slabs[1, 0], volume[0, 0])
    np.testing.assert_array_equal(slab_channels(volume[0], 0)[0], volume[0])
    with pytest.raises(ValueError, match="needs 5 slices"):
        centre_slab(volume[:, :3], 2)


def _network(context: int, channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    config = plan_network((16, 16), (1.0, 1.0), dimension=2, in_channels=channels * (2 * context + 1), num_classes=3,
                          base_features=4, max_features=8, squeeze_excitation=True, attention_gates=True,
                          inject_input=True, deep_supervision=False)
    return build_network(config).eval()


def test_a_2p5d_member_equals_its_2d_network_applied_slice_by_slice_by_hand():
    volume, context = _volume(channels=1), 1
    network = _network(context)
    result = predict_slices(network, volume, context, (16, 16), batch_size=3).numpy()
    padded = np.pad(volume, ((0, 0), (context, context), (0, 0), (0, 0)), mode="edge")
    with torch.no_grad():
        by_hand = np.stack([
            torch.softmax(network(torch.from_numpy(centre_slab(padded[:, s:s + 2 * context + 1], context))[None]),
                          1)[0].numpy()
            for s in range(volume.shape[1])], axis=1)
    assert result.shape == (3, 7, 16, 16)
    np.testing.assert_allclose(result, by_hand, atol=1e-5)


def test_chunks_mirroring_and_larger_planes_behave():
    volume, context = _volume(channels=1, slices=5), 1
    network = _network(context)
    whole = predict_slices(network, volume, context, (16, 16)).numpy()
    np.testing.assert_allclose(predict_slices(network, volume, context, (1, 16, 16), chunk_slices=2).numpy(), whole,
                               atol=1e-6)
    mirrored = predict_slices(network, volume, context, (16, 16), mirror_axes=(0, 1, 2)).numpy()
    np.testing.assert_allclose(mirrored.sum(0), 1.0, atol=1e-5)
    assert slice_mirror_axes((0, 1, 2)) == (1, 2)
    large = np.random.default_rng(1).normal(size=(5, 24, 40)).astype(np.float32)
    tiled = predict_slices(network, large, context, (16, 16), tile_overlap=0.5).numpy()
    assert tiled.shape == (3, 5, 24, 40)
    np.testing.assert_allclose(tiled.sum(0), 1.0, atol=1e-5)


def test_the_adapter_folds_slices_into_the_batch():
    network = _network(0, channels=2)
    x = torch.randn(2, 2, 3, 16, 16)
    with torch.no_grad():
        out = SliceNetwork(network)(x)
        assert out.shape == (2, 3, 3, 16, 16)
        torch.testing.assert_close(out[1, :, 2], network(x[1:2, :, 2])[0])
