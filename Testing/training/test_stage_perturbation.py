"""The stage-1 region a refiner is trained with: reference labels, randomly perturbed."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.stage_inputs import StageInputSpec
from kidneytumorseg_training.stage_perturbation import (
    StagePerturbation,
    erode_mm,
    perturbed_region,
    stage_one_from_labels,
)

SPACING = (2.0, 1.0, 1.0)


def _labels() -> np.ndarray:
    labels = np.zeros((12, 30, 30), dtype=np.uint8)
    labels[3:9, 4:14, 4:14] = 1
    labels[4:7, 6:10, 6:10] = 2
    labels[3:9, 18:26, 18:26] = 1  # a second kidney
    return labels


def test_without_perturbation_the_reference_region_and_masks_come_back():
    spec = StageInputSpec(probability_channels=("kidney_and_mass", "tumor"))
    region, priors = stage_one_from_labels(_labels(), spec, StagePerturbation.none(), SPACING,
                                           np.random.default_rng(0))
    np.testing.assert_array_equal(region, _labels() > 0)
    np.testing.assert_array_equal(priors[0], (_labels() > 0).astype(np.float32))
    np.testing.assert_array_equal(priors[1], (_labels() == 2).astype(np.float32))


def test_perturbations_grow_shrink_and_drop_components_reproducibly():
    reference = _labels() > 0
    grow = StagePerturbation(p_drop_component=0.0, p_dilate=1.0, p_erode=0.0, max_radius_mm=3.0)
    grown = perturbed_region(_labels(), grow, SPACING, np.random.default_rng(1))
    assert (grown >= reference).all() and grown.sum() > reference.sum()
    shrink = StagePerturbation(p_drop_component=0.0, p_dilate=0.0, p_erode=1.0, max_radius_mm=3.0)
    shrunk = perturbed_region(_labels(), shrink, SPACING, np.random.default_rng(1))
    assert (shrunk <= reference).all() and 0 < shrunk.sum() < reference.sum()
    drop = StagePerturbation(p_drop_component=1.0, p_dilate=0.0, p_erode=0.0)
    dropped = perturbed_region(_labels(), drop, SPACING, np.random.default_rng(2))
    assert dropped.sum() in (reference[:, :15, :15].sum(), reference[:, 15:, 15:].sum())
    again = perturbed_region(_labels(), StagePerturbation(), SPACING, np.random.default_rng(5))
    np.testing.assert_array_equal(again, perturbed_region(_labels(), StagePerturbation(), SPACING,
                                                          np.random.default_rng(5)))
    cube = np.zeros((5, 5, 5), bool)
    cube[1:4, 1:4, 1:4] = True
    assert erode_mm(cube, 1.0, (1, 1, 1)).sum() == 1
    assert erode_mm(np.ones((3, 3, 3), bool), 1.0, (1, 1, 1)).all()  # a patch edge is not the region's edge


def test_blurred_priors_are_soft_probabilities():
    spec = StageInputSpec(mask_image=False, probability_channels=("kidney_and_mass",))
    settings = StagePerturbation(p_drop_component=0.0, p_dilate=0.0, p_erode=0.0, prior_blur_mm=2.0)
    _, (prior,) = stage_one_from_labels(_labels(), spec, settings, SPACING, np.random.default_rng(0))
    assert prior.min() >= 0.0 and prior.max() <= 1.0 and ((prior > 0.05) & (prior < 0.95)).any()


def test_settings_are_checked():
    assert StagePerturbation.from_dict(StagePerturbation().to_dict()) == StagePerturbation()
    with pytest.raises(ValueError, match="unknown stage_perturbation"):
        StagePerturbation.from_dict({"p_grow": 0.5})
    with pytest.raises(ValueError, match="p_dilate"):
        StagePerturbation(p_dilate=2.0)
