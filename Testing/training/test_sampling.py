"""Patch sampling: deterministic per sample index, foreground oversampling, padding at the borders."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_preprocessed import PATCH, write_tiny_preprocessed

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.sampling import (
    BatchIndices,
    PatchDataset,
    complete_case_ids,
    crop_with_padding,
    load_case,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_preprocessed(tmp_path_factory.mktemp("pre"), cases=4)


def test_complete_cases_ignore_half_written(folder, tmp_path):
    assert complete_case_ids(folder) == [f"case_{i:05d}" for i in range(4)]
    (folder / "case_00003.locations.npz").rename(tmp_path / "moved.npz")
    try:
        with pytest.raises(KidneyTumorSegError, match="case_00003.*incomplete"):
            load_case(folder, "case_00003")
    finally:
        (tmp_path / "moved.npz").rename(folder / "case_00003.locations.npz")


def test_same_index_same_patch_whatever_the_order(folder):
    dataset = PatchDataset(folder, complete_case_ids(folder), PATCH, batch_size=2, seed=3)
    forwards = [dataset[i] for i in range(6)]
    again = PatchDataset(folder, complete_case_ids(folder), PATCH, batch_size=2, seed=3)
    for i in reversed(range(6)):
        assert np.array_equal(again[i]["image"].numpy(), forwards[i]["image"].numpy())
        assert np.array_equal(again[i]["label"].numpy(), forwards[i]["label"].numpy())
    other_seed = PatchDataset(folder, complete_case_ids(folder), PATCH, batch_size=2, seed=4)
    assert any(other_seed.choose(i) != dataset.choose(i) for i in range(6))
    other_rank = PatchDataset(folder, complete_case_ids(folder), PATCH, batch_size=2, seed=3, rank=1)
    assert any(other_rank.choose(i) != dataset.choose(i) for i in range(6))


def test_at_least_a_third_on_foreground_and_small_classes_not_starved(folder):
    dataset = PatchDataset(folder, complete_case_ids(folder), PATCH, batch_size=3, seed=0)
    choices = [dataset.choose(i) for i in range(3000)]
    on_foreground = [c.foreground_class for c in choices if c.foreground_class is not None]
    assert len(on_foreground) >= len(choices) / 3
    counts = {c: on_foreground.count(c) for c in (1, 2, 3)}
    # Classes are drawn per case, not per voxel: tumors (present everywhere) as often as kidneys,
    # cysts (in half of the cases) about half as often, although they have far fewer voxels.
    assert counts[2] > 0.8 * counts[1]
    assert counts[3] > 0.3 * counts[1]
    sample = dataset[0]  # position 0 of a batch is a foreground patch
    assert tuple(sample["image"].shape) == (1, *PATCH)
    assert tuple(sample["label"].shape) == tuple(PATCH)
    assert sample["foreground_class"] in (1, 2, 3)
    assert (sample["label"].numpy() == sample["foreground_class"]).any()


def test_crop_with_padding_fills_outside():
    array = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    patch = crop_with_padding(array, (-1, 0, 2), (3, 3, 3), fill=-5)
    assert patch.shape == (3, 3, 3)
    assert (patch[0] == -5).all()
    assert np.array_equal(patch[1:, :, 0], array[:2, :, 2])
    assert (patch[1:, :, 1:] == -5).all()


def test_batch_indices_continue_where_a_run_stopped():
    assert list(BatchIndices(0, 2, 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(BatchIndices(5, 1, 2)) == [[10, 11]]


def test_hard_case_resampling_centres_that_fraction_on_the_class_and_leaves_other_samples_alone(folder):
    ids = complete_case_ids(folder)
    plain = PatchDataset(folder, ids, PATCH, batch_size=2, seed=0)
    hard = PatchDataset(folder, ids, PATCH, batch_size=2, seed=0, hard_case_class=3, hard_case_fraction=0.4)
    choices = [hard.choose(i) for i in range(1000)]
    on_cyst = [c for c in choices if c.foreground_class == 3]
    assert 0.35 < len(on_cyst) / len(choices) < 0.6  # 0.4 hard + the cysts of ordinary foreground draws
    assert {c.case_id for c in on_cyst} <= {"case_00001", "case_00003"}  # the cases with a cyst
    unchanged = [i for i in range(200) if not hard._is_hard(i)]
    assert len(unchanged) > 80 and all(hard.choose(i) == plain.choose(i) for i in unchanged)
    with pytest.raises(ValueError, match="hard_case_fraction"):
        PatchDataset(folder, ids, PATCH, batch_size=2, hard_case_class=3, hard_case_fraction=1.5)
