"""``kits19-twostage`` holds the paper's numbers (seed 002), and at the smoke budget trains its kidney network and
its 2.5D tumor refiner, exports one two-stage package and segments through the engine."""

from __future__ import annotations

import json

import pytest
import torch
from recipe_cases import assert_segments_like_its_input, assert_stage_two_sets_the_masses, write_tiny_kits_dataset

from kidneytumorseg.networks import build_network
from kidneytumorseg_training.losses import DecayingDeepSupervisionLoss, FocalWeightedDiceLoss, build_loss
from kidneytumorseg_training.recipes import get_recipe
from kidneytumorseg_training.recipes.cascade import CascadeRecipe

RECIPE = get_recipe("kits19-twostage")


def test_registered_as_a_cascade():
    assert isinstance(RECIPE, CascadeRecipe)
    assert [(stage.key, stage.role) for stage in RECIPE.stages] == [("kidney", "segmenter"), ("tumor", "refiner")]


def test_kidney_stage_is_the_papers():
    resolved = RECIPE.resolve("full")
    kidney = resolved.stages["kidney"]
    training, network = kidney.training, kidney.network
    assert kidney.target_spacing == [2.0, 1.56, 1.56]  # 2 mm slices, 512 -> 256 pixels
    assert training["patch_size"] == [64, 256, 256]  # 64 consecutive slices
    assert training["epochs"] == 500
    assert training["label_map"] == [0, 1, 1, 1] and network["num_classes"] == 2
    assert network["block"] == "residual" and network["dimension"] == 3
    assert len(network["features_per_stage"]) == 5  # 4 encoder levels + the bottom: 4 decoder outputs
    assert training["deep_supervision"] and network["deep_supervision"]
    assert training["deep_supervision_decay"] == {"initial": 0.33, "factor": 0.8, "every_epochs": 15}
    assert training["loss_options"]["weight_ce"] == 0.0  # Dice loss
    loss = DecayingDeepSupervisionLoss(build_loss(training["loss"], **training["loss_options"]), 4,
                                       **training["deep_supervision_decay"])
    loss.set_epoch(0)
    assert loss.weights == pytest.approx([1.0, 0.33, 0.33, 0.33])
    loss.set_epoch(30)
    assert loss.weights[1] == pytest.approx(0.33 * 0.8 ** 2)
    assert resolved.recipe.inference["tile_overlap"] == 0.5  # windows of 64 slices, stride 32


def test_tumor_stage_is_the_papers():
    tumor = RECIPE.resolve("full").stages["tumor"]
    training, network = tumor.training, tumor.network
    assert tumor.target_spacing == [1.0, 0.78, 0.78]  # 1 mm slices, 512 pixels
    assert training["context_slices"] == 1 and network["dimension"] == 2 and training["patch_size"] == [512, 512]
    assert training["stage_input"]["mask_image"] is True and training["stage_input"]["probability_channels"] == []
    assert network["in_channels"] == 3  # the masked image, 3 slices
    assert training["label_map"] == [0, 0, 1, 2] and network["num_classes"] == 3
    assert network["inject_input"] and network["squeeze_excitation"] and network["attention_gates"]
    assert network["bottleneck_dilations"] == [2, 3, 5]
    assert isinstance(build_loss(training["loss"], **training["loss_options"]), FocalWeightedDiceLoss)
    assert (training["hard_case_class"], training["hard_case_fraction"]) == (3, 0.3)
    assert RECIPE.postprocessing["max_tumor_components"] == 1
    model = build_network({**network, "deep_supervision": False})
    out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64)


def test_budget_scales_sizes_not_method():
    smoke, full = RECIPE.resolve("smoke"), RECIPE.resolve("full")
    for key in ("kidney", "tumor"):
        small, large = smoke.stages[key], full.stages[key]
        assert small.base_features < large.base_features
        assert all(s < f for s, f in zip(small.training["patch_size"], large.training["patch_size"], strict=True))
        assert small.training["epochs"] < large.training["epochs"]
        for same in ("loss", "loss_options", "label_map", "optimizer", "learning_rate"):
            assert small.training.get(same) == large.training.get(same), (key, same)
        assert small.target_spacing == large.target_spacing
    assert smoke.stages["tumor"].network["bottleneck_dilations"] == [2, 3, 5]
    settings = smoke.to_dict()
    json.dumps(settings)
    assert set(settings["stages"]) == {"kidney", "tumor"} and settings["deviations"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_run_trains_both_stages_exports_and_segments(tmp_path):
    data = write_tiny_kits_dataset(tmp_path / "data")
    run = RECIPE.run(data, tmp_path / "work", "smoke", workers=0, threads=1, jobs=1, device="cpu", report=False)
    assert [path.name for path in run.runs] == ["kidney", "tumor"]
    package = assert_segments_like_its_input(run.package, data)
    assert [member.role for member in package.members] == ["segmenter", "refiner"]
    refiner = package.refiners[0]
    assert refiner.preprocessing["stage_input"]["mask_image"] is True
    assert refiner.preprocessing["context_slices"] == 1
    assert refiner.inference["output_labels"] == [0, 2, 3]
    assert package.segmenters[0].inference["output_labels"] == [0, 1]
    assert package.postprocessing["max_tumor_components"] == 1
    manifest = json.loads((run.package / "model.json").read_text())
    assert manifest["provenance"]["recipe"] == "kits19-twostage"
    assert_stage_two_sets_the_masses(run.package, data, tmp_path / "biased")
