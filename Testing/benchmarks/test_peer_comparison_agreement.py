"""The agreement columns (max |dp|, its 99.9% quantile, equal labels) and the coarse-to-fine check, on small
arrays whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peer_comparison.agreement import agreement, agreement_text
from peer_comparison.cascade import ReferenceMaskLocalizer, cascade_totals, check_cascade


def two_class(foreground: np.ndarray) -> np.ndarray:
    """(2, ...) probabilities: ``foreground`` for class 1, the rest for class 0."""
    foreground = np.asarray(foreground, dtype=np.float64)
    return np.stack([1.0 - foreground, foreground])


def test_identical_probabilities_agree_fully():
    ours = two_class(np.random.default_rng(0).uniform(size=(4, 5, 6)))
    assert agreement(ours.copy(), ours) == (0.0, 0.0, 1.0)


def test_one_changed_voxel_of_a_thousand():
    foreground = np.full((10, 10, 10), 0.4)
    ours = two_class(foreground)
    foreground[3, 4, 5] = 0.7  # |dp| = 0.3 on both classes, and its label flips to 1
    foreground[0, 0, 0] = 0.41  # |dp| = 0.01, same label
    largest, quantile, same = agreement(two_class(foreground), ours)
    assert largest == pytest.approx(0.3)
    # 99.9th percentile of 998 zeros, 0.01 and 0.3 (linear interpolation at rank 998.001 of 0..999).
    assert quantile == pytest.approx(0.01 + 0.001 * (0.3 - 0.01))
    assert same == pytest.approx(0.999)


def test_agreement_where_counts_only_masked_voxels():
    foreground = np.full((2, 2, 2), 0.2)
    ours = two_class(foreground)
    foreground[0, 0, 0] = 0.9
    where = np.zeros((2, 2, 2), dtype=bool)
    where[1] = True
    assert agreement(two_class(foreground), ours, where) == (0.0, 0.0, 1.0)
    where[0, 0, 0] = True
    largest, _, same = agreement(two_class(foreground), ours, where)
    assert largest == pytest.approx(0.7)
    assert same == pytest.approx(4 / 5)


def test_agreement_refuses_other_shapes():
    with pytest.raises(RuntimeError, match="cannot be compared"):
        agreement(np.zeros((4, 2, 2, 2)), np.zeros((3, 2, 2, 2)))


def test_agreement_text():
    assert agreement_text((0.3, 0.00029, 0.999)) == ("3.0e-01", "2.9e-04", "99.900%")
    assert agreement_text((0.0, 0.0, 1.0), " in boxes") == ("0.0e+00 in boxes", "0.0e+00", "100.000% in boxes")


def test_check_cascade_in_boxes_and_on_kidneys(tmp_path):
    shape = (4, 6, 8)
    ours = two_class(np.full(shape, 0.8))
    cascade = np.full(shape, 0.8)
    cascade[0] = 0.1  # outside the box: other labels there
    cascade[2, 1, 1] = 0.3  # inside the box and on the kidney: another label
    kidney = np.zeros(shape, dtype=bool)
    kidney[1:3, 1:3, 1:3] = True
    np.save(tmp_path / "cascade-probabilities.npy", two_class(cascade))
    np.save(tmp_path / "kidney.npy", kidney)
    boxes = [[[1, 3], [0, 4], [0, 4]], [[2, 4], [0, 2], [6, 8]]]
    check = check_cascade(tmp_path, boxes, ours)
    assert (check.box_voxels, check.voxels, check.kidney_voxels) == (2 * 4 * 4 + 2 * 2 * 2, 192, 8)
    assert check.in_boxes[0] == pytest.approx(0.5)
    assert check.in_boxes[2] == pytest.approx(1 - 1 / 40)
    assert check.on_kidney[2] == pytest.approx(7 / 8)
    with pytest.raises(RuntimeError, match="gave no box"):
        check_cascade(tmp_path, [], ours)


def test_cascade_totals_per_repeat():
    results = {"cascade": [{"seconds": 1.5}, {"seconds": 2.0}], "localizer": [{"seconds": 0.25}, {"seconds": 0.5}]}
    assert cascade_totals(results) == [1.75, 2.5]
    with pytest.raises(ValueError):
        cascade_totals({"cascade": [{"seconds": 1.0}], "localizer": []})


def test_reference_mask_localizer_returns_the_mask_as_labels():
    foreground = np.zeros((2, 3, 4), dtype=bool)
    foreground[1, 1:, 2:] = True
    localizer = ReferenceMaskLocalizer(foreground, num_classes=4)
    logits = localizer(torch.zeros(1, 1, 2, 3, 4))
    assert logits.shape == (1, 4, 2, 3, 4)
    assert np.array_equal(logits.argmax(1)[0].numpy(), foreground.astype(np.int64))
    with pytest.raises(ValueError, match="whole coarse volume"):
        localizer(torch.zeros(1, 1, 2, 3, 5))
    with pytest.raises(ValueError, match="at least 2 classes"):
        ReferenceMaskLocalizer(foreground, num_classes=1)
