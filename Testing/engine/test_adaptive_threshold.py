"""TuNet's Algorithm 1: adaptive thresholds and region growing on the whole-region and tumor maps."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.adaptive_threshold import (
    AdaptiveThresholdSettings,
    adaptive_threshold_labels,
    tumor_region,
    whole_region,
)
from kidneytumorseg.postprocessing import PostprocessingSettings, postprocess

PAPER = AdaptiveThresholdSettings()


def _line(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)[None, None, :]


def test_the_whole_region_grows_from_seeds_or_falls_back_to_the_low_threshold():
    probability = _line(0.45, 0.6, 0.45, 0.2, 0.45)
    np.testing.assert_array_equal(whole_region(probability, PAPER)[0, 0], [1, 1, 1, 0, 0])
    weak = _line(0.05, 0.15, 0.3)
    np.testing.assert_array_equal(whole_region(weak, PAPER)[0, 0], [0, 1, 1])


def test_the_tumor_threshold_adapts_to_the_number_of_seed_voxels():
    whole = np.ones((1, 1, 5), bool)
    small = _line(0.25, 0.9, 0.25, 0.1, 0.25)  # 1 seed < 100: grown down to 0.2
    np.testing.assert_array_equal(tumor_region(small, whole, PAPER)[0, 0], [1, 1, 1, 0, 0])
    many = AdaptiveThresholdSettings(small_tumor_voxels=1)  # 1 seed is not "few" here: grown down to 0.3 only
    np.testing.assert_array_equal(tumor_region(small, whole, many)[0, 0], [0, 1, 0, 0, 0])
    faint = _line(0.15, 0.05, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(tumor_region(faint, whole, PAPER)[0, 0], [1, 0, 0, 0, 0])
    nothing = np.zeros((1, 1, 5), np.float32)
    np.testing.assert_array_equal(tumor_region(nothing, whole, PAPER), whole)
    kept_empty = AdaptiveThresholdSettings(empty_tumor_is_whole=False)
    assert not tumor_region(nothing, whole, kept_empty).any()


def test_labels_merge_whole_tumor_and_the_argmax_cysts():
    p = np.zeros((4, 1, 1, 4), np.float32)
    p[0] = [[[0.9, 0.2, 0.2, 0.2]]]
    p[1] = [[[0.1, 0.7, 0.1, 0.1]]]
    p[2] = [[[0.0, 0.1, 0.6, 0.1]]]
    p[3] = [[[0.0, 0.0, 0.1, 0.6]]]
    argmax = np.argmax(p, 0).astype(np.uint8)
    np.testing.assert_array_equal(adaptive_threshold_labels(p, argmax, PAPER)[0, 0], [0, 1, 2, 3])
    through_rules = postprocess(argmax, (1, 1, 1), PostprocessingSettings.from_dict(
        {"max_kidney_components": None, "remove_masses_not_touching_kidney": False, "adaptive_threshold": True}), p)
    np.testing.assert_array_equal(through_rules[0, 0], [0, 1, 2, 3])


def test_an_empty_tumor_fills_the_whole_region_but_leaves_the_cysts():
    p = np.zeros((4, 1, 1, 4), np.float32)
    p[0] = [[[0.9, 0.2, 0.2, 0.1]]]
    p[1] = [[[0.1, 0.8, 0.7, 0.1]]]  # p[2] (tumor) is 0: the paper's fallback makes the whole region tumor
    p[3] = [[[0.0, 0.0, 0.1, 0.8]]]
    argmax = np.argmax(p, 0).astype(np.uint8)
    np.testing.assert_array_equal(adaptive_threshold_labels(p, argmax, PAPER)[0, 0], [0, 2, 2, 3])
    kept_empty = AdaptiveThresholdSettings(empty_tumor_is_whole=False)
    np.testing.assert_array_equal(adaptive_threshold_labels(p, argmax, kept_empty)[0, 0], [0, 1, 1, 3])


def test_settings_are_validated():
    assert AdaptiveThresholdSettings.from_value(True) == PAPER
    assert AdaptiveThresholdSettings.from_value(None) is None
    assert AdaptiveThresholdSettings.from_value({"tumor_low": 0.25}).tumor_low == 0.25
    with pytest.raises(ValueError, match="unknown key"):
        AdaptiveThresholdSettings.from_value({"T": 0.5})
    with pytest.raises(ValueError, match="must not exceed"):
        AdaptiveThresholdSettings(tumor_low=0.7)
    with pytest.raises(ValueError, match="switch one of them off"):
        PostprocessingSettings(hysteresis={"high": 0.5, "low": 0.3}, adaptive_threshold=True)
