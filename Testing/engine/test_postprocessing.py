"""Post-processing rules on small hand-made label maps: each rule works, each switch off keeps the input."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.labels import CYST, KIDNEY, TUMOR
from kidneytumorseg.postprocessing import (
    HysteresisSettings,
    PostprocessingSettings,
    hysteresis_mask,
    postprocess,
)

SPACING = (1.0, 1.0, 1.0)
OFF = PostprocessingSettings.disabled()


def _with(**changes) -> PostprocessingSettings:
    return PostprocessingSettings(**{**OFF.to_dict(), "hysteresis": None, **changes})


def _three_kidneys() -> np.ndarray:
    labels = np.zeros((10, 30, 30), dtype=np.uint8)
    labels[2:8, 2:12, 2:10] = KIDNEY  # 480 voxels
    labels[2:8, 2:12, 18:28] = KIDNEY  # 600 voxels
    labels[3:5, 20:24, 12:16] = KIDNEY  # 32 voxels: the third, smallest
    labels[4:6, 5:8, 9:12] = TUMOR  # a tumor on the first kidney
    return labels


def test_third_kidney_component_is_removed():
    labels = _three_kidneys()
    out = postprocess(labels, SPACING, _with(max_kidney_components=2))
    assert not out[3:5, 20:24, 12:16].any()
    np.testing.assert_array_equal(out[:, :19], labels[:, :19])  # the two largest, tumor included, untouched
    assert (out[2:8, 2:12, 18:28] == KIDNEY).all()


def test_kidney_components_count_tumor_and_cyst_too():
    labels = np.zeros((10, 30, 30), dtype=np.uint8)
    labels[2:8, 2:12, 2:10] = KIDNEY  # 480 voxels
    labels[2:8, 2:12, 10:13] = TUMOR  # + 180 voxels of attached tumor = 660
    labels[2:8, 2:12, 18:28] = KIDNEY  # 600 voxels
    out = postprocess(labels, SPACING, _with(max_kidney_components=1))
    np.testing.assert_array_equal(out[:, :, :15], labels[:, :, :15])
    assert not out[:, :, 15:].any()


def test_mass_far_from_kidney_is_removed_and_touching_one_kept():
    labels = np.zeros((10, 30, 30), dtype=np.uint8)
    labels[2:8, 2:12, 2:10] = KIDNEY
    labels[3:6, 4:8, 10:13] = TUMOR  # touches the kidney face
    labels[3:6, 8:10, 13:15] = CYST  # touches only the tumor: the mass component touches the kidney
    labels[3:6, 20:25, 20:25] = TUMOR  # far away
    out = postprocess(labels, SPACING, _with(remove_masses_not_touching_kidney=True))
    assert not out[3:6, 20:25, 20:25].any()
    np.testing.assert_array_equal(out[:, :, :16], labels[:, :, :16])


def test_diagonal_contact_counts_as_touching():
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    labels[1, 1, 1] = KIDNEY
    labels[2, 2, 2] = TUMOR  # corner neighbour: 26-connected
    out = postprocess(labels, SPACING, _with(remove_masses_not_touching_kidney=True))
    np.testing.assert_array_equal(out, labels)


def test_masses_are_kept_when_no_kidney_is_predicted():
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    labels[1:4, 1:4, 1:4] = TUMOR
    np.testing.assert_array_equal(postprocess(labels, SPACING, _with(remove_masses_not_touching_kidney=True)),
                                  labels)


def test_tiny_components_removed_by_volume_with_anisotropic_spacing():
    labels = np.zeros((10, 30, 30), dtype=np.uint8)
    labels[1:9, 2:20, 2:20] = KIDNEY
    labels[4, 10, 10] = TUMOR  # one voxel inside kidney
    labels[2:4, 25:27, 25:27] = KIDNEY  # 8 voxels in the background
    spacing = (3.0, 0.5, 0.5)  # 0.75 mm^3 per voxel: the 8-voxel blob is 6 mm^3 = 0.006 ml
    out = postprocess(labels, spacing, _with(min_component_ml=0.007))
    assert out[4, 10, 10] == KIDNEY  # the speck takes its surroundings' label
    np.testing.assert_array_equal(out[2:4, 25:27, 25:27], 0)
    assert (out[1:9, 2:20, 2:20] == KIDNEY).all()
    # With isotropic 1 mm spacing the blob is 0.008 ml and stays; only the one-voxel tumor goes.
    kept = postprocess(labels, SPACING, _with(min_component_ml=0.007))
    assert (kept[2:4, 25:27, 25:27] == KIDNEY).all() and kept[4, 10, 10] == KIDNEY


def test_hysteresis_grows_from_seeds_and_does_not_jump_gaps():
    probability = np.zeros((1, 1, 20))
    probability[0, 0, 2:9] = [0.35, 0.4, 0.9, 0.6, 0.35, 0.35, 0.32]  # seed at 4, grown to 2..8
    probability[0, 0, 9] = 0.1  # a gap
    probability[0, 0, 10:14] = 0.45  # above low but no seed and across the gap
    probability[0, 0, 16:18] = 0.45  # no seed
    mask = hysteresis_mask(probability, high=0.8, low=0.3)
    assert mask[0, 0].nonzero()[0].tolist() == list(range(2, 9))


def test_hysteresis_decodes_regions_from_probabilities():
    probabilities = np.zeros((4, 1, 1, 12), dtype=np.float32)
    # kidney_and_mass = 1 - p0: seeds where >= 0.6, grown where >= 0.3
    probabilities[0, 0, 0] = [1, 0.6, 0.2, 0.1, 0.1, 0.1, 0.5, 1, 1, 0.3, 0.3, 1]
    probabilities[1] = 1 - probabilities[0]
    probabilities[1, 0, 0, 3:5] = 0.2
    probabilities[2, 0, 0, 3:5] = 0.7  # tumor seed at 3..4
    probabilities[1, 0, 0, 9:11] = 0.45
    probabilities[3, 0, 0, 9:11] = 0.25  # mass (0.25) is below even the growth threshold: kidney, not cyst
    labels = postprocess(np.zeros((1, 1, 12), np.uint8), SPACING, _with(hysteresis={"high": 0.6, "low": 0.3}),
                         probabilities)
    assert labels[0, 0].tolist() == [0, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1, 0]
    cyst = np.array([0.1, 0.1, 0.35, 0.45], dtype=np.float32).reshape(4, 1, 1, 1)  # mass 0.8, tumor 0.35
    assert postprocess(np.zeros((1, 1, 1), np.uint8), SPACING, _with(hysteresis={"high": 0.6, "low": 0.3}),
                       cyst)[0, 0, 0] == CYST


def test_hysteresis_needs_probabilities():
    with pytest.raises(ValueError, match="needs the probabilities"):
        postprocess(np.zeros((2, 2, 2), np.uint8), SPACING, _with(hysteresis=HysteresisSettings(0.5, 0.3)))


def test_every_switch_off_keeps_the_input():
    labels = _three_kidneys()
    labels[3:6, 20:25, 25:28] = TUMOR
    labels[8, 28, 28] = CYST
    np.testing.assert_array_equal(postprocess(labels, SPACING, OFF), labels)


def test_settings_from_package_dict_round_trip_and_validation():
    package = {"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
               "min_component_ml": 0.2, "hysteresis": {"high": 0.5, "low": 0.3}}
    settings = PostprocessingSettings.from_dict(package)
    assert settings.hysteresis == HysteresisSettings(0.5, 0.3)
    assert settings.to_dict() == package
    assert PostprocessingSettings.from_dict(None) == PostprocessingSettings()
    assert PostprocessingSettings.from_dict({"hysteresis": None}).hysteresis is None
    with pytest.raises(ValueError, match="unknown keys \\['max_kidneys'\\]"):
        PostprocessingSettings.from_dict({"max_kidneys": 2})
    with pytest.raises(ValueError, match="0 < low <= high <= 1"):
        PostprocessingSettings.from_dict({"hysteresis": {"high": 0.3, "low": 0.5}})
    with pytest.raises(ValueError, match="max_kidney_components"):
        PostprocessingSettings.from_dict({"max_kidney_components": 1.5})
    with pytest.raises(ValueError, match="min_component_ml"):
        PostprocessingSettings.from_dict({"min_component_ml": -1})


def test_only_the_largest_tumor_is_kept_when_asked_and_the_rest_becomes_kidney():
    labels = np.zeros((10, 30, 30), dtype=np.uint8)
    labels[2:8, 5:25, 5:25] = KIDNEY
    labels[3:7, 6:12, 6:12] = TUMOR
    labels[4:5, 20:22, 20:22] = TUMOR
    out = postprocess(labels, SPACING, _with(max_tumor_components=1))
    assert (out[3:7, 6:12, 6:12] == TUMOR).all() and (out[4:5, 20:22, 20:22] == KIDNEY).all()
    np.testing.assert_array_equal(postprocess(labels, SPACING, _with(max_tumor_components=None)), labels)


def test_new_rules_round_trip_only_when_on():
    package = {"max_kidney_components": 2, "remove_masses_not_touching_kidney": True, "min_component_ml": 0.0,
               "hysteresis": None, "adaptive_threshold": {"threshold": 0.5, "whole_low": 0.4, "empty_low": 0.1,
                                                          "small_tumor_voxels": 100, "small_tumor_low": 0.2,
                                                          "tumor_low": 0.3, "empty_tumor_is_whole": False},
               "max_tumor_components": 1}
    assert PostprocessingSettings.from_dict(package).to_dict() == package
    assert "adaptive_threshold" not in PostprocessingSettings().to_dict()
    with pytest.raises(ValueError, match="max_tumor_components"):
        PostprocessingSettings(max_tumor_components=-1)


def test_small_cysts_take_their_surroundings_label_and_large_ones_stay():
    labels = np.zeros((12, 40, 40), dtype=np.uint8)
    labels[1:11, 2:38, 2:38] = KIDNEY
    labels[2:10, 4:16, 4:16] = TUMOR
    labels[5:7, 8:10, 8:10] = CYST  # 8 voxels inside the tumor
    labels[5:7, 30:32, 30:32] = CYST  # 8 voxels inside the kidney
    labels[3:9, 20:28, 20:28] = CYST  # 384 voxels: a real cyst
    labels[5:7, 30:32, 20:22] = TUMOR  # an 8-voxel tumor speck: not this rule's business
    out = postprocess(labels, SPACING, _with(min_cyst_component_ml=0.1))  # 1 mm^3 voxels: 0.008 ml vs 0.384 ml
    assert (out[5:7, 8:10, 8:10] == TUMOR).all()
    assert (out[5:7, 30:32, 30:32] == KIDNEY).all()
    assert (out[3:9, 20:28, 20:28] == CYST).all()
    assert (out[5:7, 30:32, 20:22] == TUMOR).all()
    assert not ((labels != out) & (labels != CYST)).any()  # only cyst voxels change
    np.testing.assert_array_equal(postprocess(labels, SPACING, _with(min_cyst_component_ml=0.0)), labels)
    assert PostprocessingSettings.from_dict({"min_cyst_component_ml": 0.5}).to_dict()["min_cyst_component_ml"] == 0.5
    assert "min_cyst_component_ml" not in PostprocessingSettings().to_dict()
    with pytest.raises(ValueError, match="min_cyst_component_ml"):
        PostprocessingSettings.from_dict({"min_cyst_component_ml": -1})
