"""``zhao2019-msunet`` holds the paper's numbers, and trains at the smoke budget, exports and segments through the
engine with its foreground normalisation, mirroring and connected-component post-processing in the package."""

from __future__ import annotations

import json

import pytest
import torch
from recipe_cases import assert_segments_like_its_input, write_tiny_kits_dataset

from kidneytumorseg.networks import build_network
from kidneytumorseg_training.losses import ExpLogLoss
from kidneytumorseg_training.recipes import get_recipe
from kidneytumorseg_training.recipes.runner import run_recipe

RECIPE = get_recipe("zhao2019-msunet")
SPACING = [3.0, 1.5, 1.5]


def test_settings_are_the_papers():
    resolved = RECIPE.resolve("full", SPACING)
    shown = resolved.to_dict()
    training = resolved.training
    assert "Zhao" in RECIPE.paper and RECIPE.seed_file.startswith("000_")
    assert shown["preprocessing"]["normalization"]["scheme"] == "clip_zscore"  # training foreground statistics
    assert resolved.target_spacing == SPACING  # the data's median spacing when given
    assert training["patch_size"] == [48, 192, 192] and training["batch_size"] == 8
    assert training["iterations_per_epoch"] == 250
    network = resolved.network
    assert network["features_per_stage"][0] == 30 and network["block"] == "plain"
    assert len(network["features_per_stage"]) == 5  # "the basic U-Net with only 5 layers"
    assert network["encoder_blocks_per_stage"] == [2] * 5 and network["decoder_convs_per_stage"] == [2] * 4
    assert all(max(stride) == 2 for stride in network["strides"][1:])  # strided convolutions down
    model = build_network(network)
    assert any(isinstance(m, torch.nn.ConvTranspose3d) for m in model.modules())  # transposed convolutions up
    assert network["deep_supervision"] and training["deep_supervision"]
    assert len(model(torch.zeros(1, 1, 16, 32, 32))) == 4  # a prediction at every decoder level
    assert (training["optimizer"], training["learning_rate"]) == ("adam", 3e-4)
    assert (training["plateau_patience"], training["plateau_factor"]) == (30, 0.2)
    assert training["plateau_metric"] == "train_loss"  # the paper watches the training loss
    assert training["loss"] == "exp_log"
    options = training["loss_options"]
    assert options["gamma_dice"] == 0.3 and options["gamma_cross"] == 1.0
    assert options["dice_weights"][:2] == [0.4, 0.6] and options["ce_weights"][:3] == [0.28, 0.28, 0.44]
    assert options["dice_weights"][2] == 0.6 and options["ce_weights"][3] == 0.44  # the cyst weighs as the tumor
    ExpLogLoss(**options)(torch.zeros(1, 4, 4, 4, 4), torch.zeros(1, 4, 4, 4, dtype=torch.long))
    augmentation = training["augmentation"]
    assert augmentation["p_rotation"] > 0 and augmentation["p_scale"] > 0 and augmentation["p_gamma"] > 0
    assert augmentation["p_mirror"] > 0 and augmentation["p_elastic"] > 0
    assert augmentation["p_noise"] == augmentation["p_blur"] == augmentation["p_lowres"] == 0.0
    assert "p_elastic" not in RECIPE.resolve("cpu", SPACING).training["augmentation"]
    assert resolved.inference["mirror_axes"] == [0, 1, 2] and 0 < resolved.inference["tile_overlap"] < 1
    assert resolved.postprocessing["max_kidney_components"] == 2
    assert resolved.postprocessing["remove_masses_not_touching_kidney"] is True
    assert shown["deviations"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_run_trains_exports_and_segments(tmp_path):
    data = write_tiny_kits_dataset(tmp_path / "data")
    run = run_recipe(RECIPE, data, tmp_path / "work", "smoke", workers=0, threads=1, jobs=1, device="cpu",
                     report=False)
    package = assert_segments_like_its_input(run.package, data)
    manifest = json.loads((run.package / "model.json").read_text())
    fingerprint = json.loads(next((tmp_path / "work" / "fingerprints").glob("*.json")).read_text())
    stats = fingerprint["foreground_intensity"]
    normalization = manifest["preprocessing"]["normalization"]
    assert normalization["scheme"] == "clip_zscore"
    assert normalization["clip"] == pytest.approx([stats["percentile_00_5"], stats["percentile_99_5"]])
    assert normalization["mean"] == pytest.approx(stats["mean"])
    assert manifest["preprocessing"]["target_spacing"] == pytest.approx(fingerprint["median_spacing"])
    assert package.postprocessing["max_kidney_components"] == 2
    assert manifest["inference"]["mirror_axes"] == [0, 1, 2]
    assert manifest["network"]["features_per_stage"][0] == 4  # smoke budget
    provenance = manifest["provenance"]
    assert provenance["recipe"] == "zhao2019-msunet" and provenance["budget"]["name"] == "smoke"
    assert "Zhao" in provenance["paper"]
    config = json.loads((run.runs[0] / "config.json").read_text())
    assert config["optimizer"] == "adam" and config["loss"] == "exp_log" and config["foreground_fraction"] == 0.0
