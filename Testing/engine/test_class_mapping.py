"""Output labels: networks with fewer classes than the KiTS table, mapped onto it; training label maps."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.class_mapping import (
    apply_label_map,
    output_labels_from_label_map,
    to_kits_probabilities,
    validate_label_map,
    validate_output_labels,
)


def test_channels_are_added_onto_their_kits_label():
    probabilities = np.array([[0.5, 0.1], [0.2, 0.3], [0.3, 0.6]], dtype=np.float32)  # (3, 2)
    kits = to_kits_probabilities(probabilities, [0, 2, 3])
    np.testing.assert_allclose(kits, [[0.5, 0.1], [0.0, 0.0], [0.2, 0.3], [0.3, 0.6]])
    merged = to_kits_probabilities(probabilities, [0, 1, 1])
    np.testing.assert_allclose(merged[1], [0.5, 0.9])
    np.testing.assert_allclose(merged.sum(0), 1.0, rtol=1e-6)
    four = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    assert to_kits_probabilities(four, None) is four
    assert to_kits_probabilities(four, [0, 1, 2, 3]) is four


def test_label_maps_become_output_labels_and_train_classes():
    assert output_labels_from_label_map([0, 1, 1, 1]) == (0, 1)
    assert output_labels_from_label_map([0, 0, 1, 2]) == (0, 2, 3)
    assert output_labels_from_label_map([0, 0, 1, 0]) == (0, 2)
    labels = np.array([0, 1, 2, 3], dtype=np.uint8)
    np.testing.assert_array_equal(apply_label_map(labels, [0, 0, 1, 2]), [0, 0, 1, 2])
    assert apply_label_map(labels, [0, 0, 1, 2]).dtype == np.uint8
    assert apply_label_map(labels, None) is labels


@pytest.mark.parametrize(("labels", "classes", "message"), [
    ([1, 2], None, "channel 0 must be background"),
    ([0, 4], None, "KiTS label 0..3"),
    ([0, 2], 3, "3 output classes"),
    ([], None, "one per output channel"),
])
def test_bad_output_labels_are_refused(labels, classes, message):
    with pytest.raises(ValueError, match=message):
        validate_output_labels(labels, classes)


@pytest.mark.parametrize(("label_map", "message"), [
    ([0, 1, 1], "4 integers"), ([1, 0, 0, 0], "background as class 0"), ([0, 2, 2, 2], "every class"),
])
def test_bad_label_maps_are_refused(label_map, message):
    with pytest.raises(ValueError, match=message):
        validate_label_map(label_map)
