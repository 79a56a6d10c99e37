"""The refiner's input: image masked with the dilated stage-1 region, stage-1 probability channels."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.stage_inputs import (
    StageInputSpec,
    build_stage_input,
    dilate_mm,
    priors_from_probabilities,
    region_from_labels,
    region_probability,
)

SPACING = (3.0, 1.0, 1.0)


def _region() -> np.ndarray:
    region = np.zeros((9, 21, 21), dtype=bool)
    region[4, 10, 10] = True
    return region


def test_dilation_is_in_millimetres_on_anisotropic_grids():
    grown = dilate_mm(_region(), 3.0, SPACING)
    assert grown[4, 10, 13] and not grown[4, 10, 14]  # 3 voxels of 1 mm in-plane
    assert grown[3, 10, 10] and not grown[2, 10, 10]  # 1 voxel of 3 mm across slices
    assert not dilate_mm(np.zeros((3, 3, 3), bool), 5.0, SPACING).any()
    np.testing.assert_array_equal(dilate_mm(_region(), 0.0, SPACING), _region())


def test_the_image_outside_the_grown_region_is_filled_and_priors_follow_in_order():
    image = np.arange(9 * 21 * 21, dtype=np.float32).reshape(9, 21, 21)
    spec = StageInputSpec(mask_dilation_mm=2.0, fill=-5.0, probability_channels=("kidney_and_mass", "tumor"),
                          crop_margin_mm=2.0)
    priors = [np.full(image.shape, 0.25, np.float32), np.full(image.shape, 0.75, np.float32)]
    built = build_stage_input(image, _region(), priors, spec, SPACING)
    assert built.shape == (3, 9, 21, 21) and built.dtype == np.float32
    keep = dilate_mm(_region(), 2.0, SPACING)
    np.testing.assert_array_equal(built[0][keep], image[keep])
    np.testing.assert_array_equal(built[0][~keep], -5.0)
    assert (built[1] == 0.25).all() and (built[2] == 0.75).all()
    unmasked = build_stage_input(image, _region(), [], StageInputSpec(mask_image=False), SPACING)
    np.testing.assert_array_equal(unmasked[0], image)


def test_regions_from_probabilities_and_from_labels_agree():
    labels = np.array([[[0, 1, 2, 3]]], dtype=np.uint8)
    onehot = np.stack([(labels == k).astype(np.float32) for k in range(4)])
    for name in ("kidney_and_mass", "kidney", "mass", "tumor", "cyst"):
        np.testing.assert_array_equal(region_probability(onehot, name) > 0.5, region_from_labels(labels, name))
    spec = StageInputSpec(probability_channels=("mass", "kidney_and_mass"))
    priors = priors_from_probabilities(onehot, spec)
    np.testing.assert_array_equal(priors[0], [[[0, 0, 1, 1]]])
    np.testing.assert_array_equal(priors[1], [[[0, 1, 1, 1]]])


def test_spec_round_trips_and_refuses_bad_settings():
    spec = StageInputSpec.from_dict({"probability_channels": ["kidney_and_mass"], "mask_image": False})
    assert StageInputSpec.from_dict(spec.to_dict()) == spec and spec.channels == 2
    assert StageInputSpec.from_dict(None) == StageInputSpec()
    with pytest.raises(ValueError, match="unknown key"):
        StageInputSpec.from_dict({"dilation": 3})
    with pytest.raises(ValueError, match="unknown region"):
        StageInputSpec.from_dict({"probability_channels": ["liver"]})
    with pytest.raises(ValueError, match="crop_margin_mm"):
        StageInputSpec(mask_dilation_mm=10.0, crop_margin_mm=5.0)
    with pytest.raises(ValueError, match="one per channel"):
        build_stage_input(np.zeros((2, 2, 2)), np.zeros((2, 2, 2), bool), [], StageInputSpec(
            probability_channels=("tumor",)), SPACING)
    with pytest.raises(ValueError, match="4 KiTS classes"):
        region_probability(np.zeros((2, 3)), "tumor")
