"""A member's input settings (2.5D context, median, stage input, output labels) checked against its network."""

from __future__ import annotations

import pytest

from kidneytumorseg.member_settings import member_inputs
from kidneytumorseg.stage_inputs import StageInputSpec

NET3 = {"dimension": 3, "in_channels": 1, "num_classes": 4}
PRE = {"target_spacing": [1, 1, 1], "normalization": {"scheme": "clip_zscore"}}


def test_defaults_describe_an_old_segmenter():
    inputs = member_inputs("segmenter", NET3, (8, 8, 8), PRE, {})
    assert (inputs.context_slices, inputs.median_filter, inputs.stage_input, inputs.output_labels) == (None, 0, None,
                                                                                                        None)
    assert inputs.channels == 1


def test_a_2p5d_refiner_with_probability_channels():
    network = {"dimension": 2, "in_channels": 6, "num_classes": 3}
    stage = {"probability_channels": ["kidney_and_mass"]}
    inputs = member_inputs("refiner", network, (32, 32), {**PRE, "context_slices": 1, "stage_input": stage,
                                                         "median_filter": 3}, {"output_labels": [0, 2, 3]})
    assert inputs.context_slices == 1 and inputs.median_filter == 3 and inputs.channels == 6
    assert inputs.stage_input == StageInputSpec(probability_channels=("kidney_and_mass",))
    assert inputs.output_labels == (0, 2, 3)
    assert member_inputs("segmenter", {**network, "in_channels": 1}, (32, 32), PRE, {}).context_slices == 0


@pytest.mark.parametrize(("role", "network", "patch", "preprocessing", "inference", "message"), [
    ("refiner", NET3, (8, 8, 8), PRE, {}, "needs 'preprocessing.stage_input'"),
    ("segmenter", NET3, (8, 8, 8), {**PRE, "stage_input": {}}, {}, "only for refiners"),
    ("segmenter", NET3, (8, 8, 8), {**PRE, "context_slices": 1}, {}, "only for 2D networks"),
    ("segmenter", {**NET3, "dimension": 2}, (8, 8, 8), PRE, {}, "in-plane 'patch_size'"),
    ("segmenter", {**NET3, "dimension": 2, "in_channels": 1}, (8, 8), {**PRE, "context_slices": 2}, {},
     "in_channels 1 but its input has 5"),
    ("segmenter", NET3, (8, 8), PRE, {}, "needs a 'patch_size' \\[S, P, L\\]"),
    ("segmenter", NET3, (8, 8, 8), PRE, {"output_labels": [0, 1]}, "4 output classes"),
    ("segmenter", NET3, (8, 8, 8), {**PRE, "median_filter": 4}, {}, "median_filter"),
])
def test_inconsistent_members_are_refused_with_the_key_to_fix(role, network, patch, preprocessing, inference,
                                                              message):
    with pytest.raises(ValueError, match=message):
        member_inputs(role, network, patch, preprocessing, inference)
