"""Training patches of 2.5D members and refiners, built with the engine's own input functions."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_preprocessed import SPACING, write_tiny_preprocessed

from kidneytumorseg.denoising import median_denoise
from kidneytumorseg.slices import centre_slab, slab_channels
from kidneytumorseg.stage_inputs import StageInputSpec, build_stage_input, region_from_labels
from kidneytumorseg_training.member_patches import (
    MemberPatchDataset,
    member_network,
    member_patch_size,
    patch_dataset,
    sampling_patch_size,
)
from kidneytumorseg_training.sampling import PatchDataset, crop_with_padding, load_case
from kidneytumorseg_training.training_config import TrainingConfig

IDS = ["case_00000", "case_00001", "case_00002"]
NO_PERTURBATION = {"p_drop_component": 0.0, "p_dilate": 0.0, "p_erode": 0.0, "prior_blur_mm": 0.0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_preprocessed(tmp_path_factory.mktemp("pre"), cases=3)


def _reference(dataset: PatchDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    choice = dataset.choose(index)
    case = load_case(dataset.folder, choice.case_id)
    image = crop_with_padding(case.image(), choice.starts, dataset.patch_size, float(np.min(case.image())))
    label = crop_with_padding(case.label(), choice.starts, dataset.patch_size, 0)
    return image, label


def test_a_refiner_patch_is_the_engines_stage_input_of_the_reference_region(folder):
    stage = {"mask_dilation_mm": 4.0, "fill": -3.0, "probability_channels": ["kidney_and_mass"]}
    dataset = MemberPatchDataset(folder, IDS, (8, 24, 24), 2, spacing=SPACING, stage_input=stage,
                                 perturbation=NO_PERTURBATION, label_map=[0, 0, 1, 2])
    for index in range(4):
        item = dataset[index]
        image, label = _reference(dataset, index)
        spec = StageInputSpec.from_dict(stage)
        region = region_from_labels(label, "kidney_and_mass")
        expected = build_stage_input(image, region, [region.astype(np.float32)], spec, SPACING)
        np.testing.assert_array_equal(item["image"].numpy(), expected)
        np.testing.assert_array_equal(item["label"].numpy(), np.array([0, 0, 1, 2])[label])


def test_a_2p5d_patch_is_the_centre_slab_with_the_centre_label(folder):
    dataset = MemberPatchDataset(folder, IDS, (3, 24, 24), 2, spacing=SPACING, context_slices=1, median_filter=3)
    item = dataset[0]
    choice = dataset.choose(0)
    case = load_case(folder, choice.case_id)
    starts = choice.starts
    image = median_denoise(np.asarray(case.image(), dtype=np.float32), 3)  # whole-volume median
    inner = tuple(slice(s, s + p) for s, p in zip(starts, (3, 24, 24), strict=True))
    assert tuple(item["image"].shape) == (3, 24, 24) and tuple(item["label"].shape) == (24, 24)
    np.testing.assert_allclose(item["image"].numpy(), centre_slab(image[inner][None], 1), atol=1e-6)
    np.testing.assert_array_equal(item["label"].numpy(), case.label()[starts[0] + 1, inner[1], inner[2]])
    # and it is what inference gives that slice
    np.testing.assert_allclose(slab_channels(image, 1)[:, starts[0] + 1][:, inner[1], inner[2]],
                               item["image"].numpy(), atol=1e-6)


def test_the_run_settings_pick_dataset_patch_and_network(folder):
    plans = {"patch_size": [16, 32, 32], "target_spacing": SPACING}
    plain = TrainingConfig(preprocessed=str(folder), train_ids=IDS)
    assert type(patch_dataset(plain, plans, IDS, [16, 32, 32], 2)) is PatchDataset
    two_and_a_half = TrainingConfig(preprocessed=str(folder), train_ids=IDS, context_slices=2, label_map=[0, 0, 1, 2],
                                    stage_input={"probability_channels": ["tumor"]})
    assert member_patch_size(two_and_a_half, plans) == [32, 32]
    assert sampling_patch_size(two_and_a_half, [32, 32]) == [5, 32, 32]
    dataset = patch_dataset(two_and_a_half, plans, IDS, [32, 32], 2)
    assert isinstance(dataset, MemberPatchDataset) and tuple(dataset[1]["image"].shape) == (10, 32, 32)
    network = member_network(two_and_a_half, {"dimension": 2, "in_channels": 1, "num_classes": 4})
    assert (network["in_channels"], network["num_classes"]) == (10, 3)
    with pytest.raises(ValueError, match="needs a 2D network"):
        member_network(two_and_a_half, {"dimension": 3})
    with pytest.raises(ValueError, match="set context_slices"):
        member_network(plain, {"dimension": 2})
