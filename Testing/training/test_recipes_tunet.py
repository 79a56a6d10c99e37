"""``tunet`` holds the paper's numbers (seed 003), and at the smoke budget trains L-Net, W-Net and T-Net, exports
one package (localizer, segmenter, refiner) and segments through the engine."""

from __future__ import annotations

import json

import pytest
from recipe_cases import assert_segments_like_its_input, assert_stage_two_sets_the_masses, write_tiny_kits_dataset

from kidneytumorseg.postprocessing import PostprocessingSettings
from kidneytumorseg_training.recipes import get_recipe
from kidneytumorseg_training.recipes.cascade import CascadeRecipe

RECIPE = get_recipe("tunet")


def test_registered_as_a_cascade():
    assert isinstance(RECIPE, CascadeRecipe)
    assert [(stage.key, stage.role) for stage in RECIPE.stages] == [
        ("lnet", "localizer"), ("wnet", "segmenter"), ("tnet", "refiner")]


def test_settings_are_the_papers():
    resolved = RECIPE.resolve("full")
    lnet, wnet, tnet = (resolved.stages[key] for key in ("lnet", "wnet", "tnet"))
    assert lnet.training["patch_size"] == [64, 128, 128]  # the whole CT at 128 x 128 x 64
    assert lnet.target_spacing[1] == pytest.approx(2 * wnet.target_spacing[1])  # half W-Net's resolution
    assert lnet.training["label_map"] == [0, 1, 1, 1]
    for stage in (wnet, tnet):
        training, network = stage.training, stage.network
        assert training["patch_size"] == [128, 128, 128]
        assert network["inject_input"] and network["squeeze_excitation"]
        assert training["median_filter"] == 3
        assert (training["optimizer"], training["learning_rate"], training["weight_decay"]) == ("adam", 1e-4, 1e-5)
        assert (training["plateau_factor"], training["plateau_patience"], training["epochs"]) == (0.2, 6, 200)
        assert training["loss_options"]["weight_ce"] == 0.0  # soft Dice
        assert training["augmentation"]["rotation_degrees"] == 1.0
        assert stage.normalization == {"scheme": "percentile_zscore", "percentiles": [0.0, 100.0]}
    assert wnet.training["label_map"] == [0, 1, 1, 1] and wnet.network["in_channels"] == 1
    assert tnet.training["stage_input"]["mask_image"] is False
    assert tnet.training["stage_input"]["probability_channels"] == ["kidney_and_mass"]
    assert tnet.network["in_channels"] == 2  # image + W-Net probability
    assert RECIPE.inference["tile_overlap"] == 0.75  # 96 of 128 voxels
    settings = PostprocessingSettings.from_dict(dict(RECIPE.postprocessing))
    assert settings.adaptive_threshold is not None and settings.adaptive_threshold.threshold == 0.5


def test_budget_scales_sizes_not_method():
    smoke, full = RECIPE.resolve("smoke"), RECIPE.resolve("full")
    for key in ("lnet", "wnet", "tnet"):
        small, large = smoke.stages[key], full.stages[key]
        assert small.base_features < large.base_features
        assert all(s < f for s, f in zip(small.training["patch_size"], large.training["patch_size"], strict=True))
        assert (small.training["epochs"], small.training["iterations_per_epoch"]) == (1, 2)
        for same in ("loss_options", "label_map", "median_filter", "stage_input", "learning_rate"):
            assert small.training.get(same) == large.training.get(same), (key, same)
    json.dumps(smoke.to_dict())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_run_trains_the_cascade_exports_and_segments(tmp_path):
    data = write_tiny_kits_dataset(tmp_path / "data")
    run = RECIPE.run(data, tmp_path / "work", "smoke", workers=0, threads=1, jobs=1, device="cpu", report=False)
    assert [path.name for path in run.runs] == ["lnet", "wnet", "tnet"]
    package = assert_segments_like_its_input(run.package, data)
    assert package.localizer is not None and package.localizer.inference["output_labels"] == [0, 1]
    refiner = package.refiners[0]
    assert refiner.preprocessing["stage_input"]["probability_channels"] == ["kidney_and_mass"]
    assert refiner.preprocessing["median_filter"] == 3 and package.segmenters[0].preprocessing["median_filter"] == 3
    assert refiner.network["in_channels"] == 2
    assert package.postprocessing["adaptive_threshold"] is True
    assert json.loads((run.package / "model.json").read_text())["provenance"]["recipe"] == "tunet"
    assert_stage_two_sets_the_masses(run.package, data, tmp_path / "biased", no_mass=frozenset({2}))
