"""Preparing the case: the aligned padding (MONAI's tiles then start where ours and nnU-Net's do), and the work
folder every measurement process reads (volume, masks, setup.json, weights)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from kits_case import write_case
from peer_comparison.preparation import Setup, aligned_padding, load_network, prepare

from kidneytumorseg.networks import build_network
from kidneytumorseg.sliding_window import tile_starts


def monai_starts(n: int, patch: int, overlap: float) -> list[int]:
    """Where MONAI's sliding_window_inference puts its tiles along an axis of ``n >= patch`` voxels: steps of
    ``int(patch * (1 - overlap))``, the last tile moved back to end at the border (monai.inferers.utils)."""
    step = int(patch * (1 - overlap))
    count = math.ceil((n - patch) / step) + 1 if n > patch else 1
    return sorted({min(i * step, n - patch) for i in range(count)})


def test_padding_of_each_kind_of_axis():
    padding, notes = aligned_padding((20, 100, 70), (32, 64, 64), 0.5)
    # S shorter than the tile: left alone; P: 64 + 2 * 32 = 128 = 100 + 28; L: 64 + 32 = 96 = 70 + 26.
    assert padding == [(0, 0), (14, 14), (13, 13)]
    assert notes == []
    # S: 96 = 64 + 32 already; P: 128 + 64 = 192 = 160 + 32; L: 64 + 32 = 96 = 65 + 31 (the odd voxel after).
    assert aligned_padding((96, 160, 65), (64, 128, 64), 0.5) == ([(0, 0), (16, 16), (15, 16)], [])


def test_a_step_that_is_not_whole_is_left_alone_with_a_note():
    padding, notes = aligned_padding((40, 48, 40), (33, 32, 32), 0.5)
    assert padding == [(0, 0), (0, 0), (4, 4)]  # P: 48 = 32 + 16 already; L: 32 + 16 = 48 = 40 + 8
    assert notes == ["axis 0: the tile step 16.5 is not whole; MONAI's tiles differ from ours there"]


@pytest.mark.parametrize("shape, patch, overlap", [
    ((55, 190, 190), (32, 64, 64), 0.5), ((64, 192, 192), (64, 128, 128), 0.5), ((37, 121, 99), (16, 32, 32), 0.75),
    ((30, 50, 70), (20, 20, 20), 0.0),
])
def test_after_padding_monai_tiles_start_where_ours_do(shape, patch, overlap):
    padding, notes = aligned_padding(shape, patch, overlap)
    assert notes == []
    for n, p, (before, after) in zip(shape, patch, padding, strict=True):
        padded = n + before + after
        assert 0 <= padded - n < p and abs(before - after) <= 1
        if padded > p:
            assert tile_starts(padded, p, overlap) == monai_starts(padded, p, overlap)
            assert (padded - p) % int(p * (1 - overlap)) == 0


def test_without_padding_the_tiles_differ():
    """The reason for padding: on 100 voxels our tiles of 64 spread evenly, MONAI's step 32 and move back."""
    assert tile_starts(100, 64, 0.5) != monai_starts(100, 64, 0.5)


def arguments(case, **changes) -> argparse.Namespace:
    values = dict(case=case, spacing=(3.0, 2.0, 2.0), patch=(8, 16, 16), features=4, max_features=8, overlap=0.5,
                  mirror=False, align=True, margin_mm=6.0, localizer_spacing=(6.0, 6.0, 6.0),
                  localizer_patch=(4, 8, 8), localizer_features=4, threads=1)
    return argparse.Namespace(**(values | changes))


def test_prepare_pads_saves_and_loads(tmp_path):
    write_case(tmp_path / "case", seed=0)  # (8, 24, 24) voxels of 3 x 1.5 x 1.5 mm (S, P, L)
    workdir = tmp_path / "work"
    workdir.mkdir()
    setup = prepare(arguments(tmp_path / "case"), workdir)
    # 24 voxels of 1.5 mm = 18 of 2 mm, padded to 16 + 8 = 24.
    assert (tuple(setup.original_shape), tuple(setup.shape)) == ((8, 18, 18), (8, 24, 24))
    assert [tuple(p) for p in setup.padding] == [(0, 0), (3, 3), (3, 3)]
    assert (setup.tiles, setup.num_classes, tuple(setup.coarse_shape), setup.notes) == (4, 4, (4, 8, 8), [])
    volume, kidney = np.load(workdir / "volume.npy"), np.load(workdir / "kidney.npy")
    assert volume.shape == kidney.shape == (8, 24, 24) and volume.dtype == np.float32
    assert not volume[:, :3].any() and not volume[:, -3:].any() and not kidney[:, :3].any()
    assert kidney.sum() > 0 and np.load(workdir / "coarse_kidney.npy").shape == (4, 8, 8)

    loaded = Setup.load(workdir)
    assert loaded.config.patch_size == (8, 16, 16) and loaded.config.mirror_axes == ()
    network = load_network(loaded.network, workdir / "network.safetensors")
    torch.manual_seed(0)
    fresh = build_network(loaded.network)
    assert not network.training and not network.deep_supervision
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(network.state_dict()[name], tensor), name


def test_prepare_without_alignment_notes_it(tmp_path):
    write_case(tmp_path / "case", seed=1)
    setup = prepare(arguments(tmp_path / "case", align=False, mirror=True), tmp_path)
    assert tuple(setup.shape) == (8, 18, 18) and tuple(setup.mirror_axes) == (0, 1, 2)
    assert setup.notes == ["--no-align: MONAI's tiles may start elsewhere than nnU-Net's and ours"]


def test_prepare_needs_a_case_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="imaging.nii.gz not found"):
        prepare(arguments(tmp_path), tmp_path)
