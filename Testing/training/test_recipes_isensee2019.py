"""The three ``isensee2019-*`` recipes hold the paper's numbers and architectures; each trains at the smoke budget,
exports and segments through the engine, the residual one as a two-fold ensemble; they share one preprocessing."""

from __future__ import annotations

import json
import math

import pytest
from recipe_cases import assert_segments_like_its_input, write_tiny_kits_dataset

from kidneytumorseg.networks import build_network
from kidneytumorseg.networks.blocks import PreActResidualBlock, ResidualBlock
from kidneytumorseg_training.recipes import get_recipe
from kidneytumorseg_training.recipes.runner import run_recipe

NAMES = ("isensee2019-plain", "isensee2019-residual", "isensee2019-preact")


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_the_papers(name):
    recipe = get_recipe(name)
    resolved = recipe.resolve("full")
    training, network = resolved.training, resolved.network
    assert resolved.target_spacing == [3.22, 1.62, 1.62]
    assert resolved.normalization == {"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9}
    assert recipe.image_interpolation == "bspline"
    assert training["patch_size"] == [80, 160, 160] and training["batch_size"] == 2
    assert (training["epochs"], training["iterations_per_epoch"]) == (1000, 250)
    assert network["nonlinearity"] == "relu" and network["norm"] == "instance"
    assert max(network["features_per_stage"]) == 320
    assert network["features_per_stage"][1] == 2 * network["features_per_stage"][0]
    # downsampling stops before a feature map would fall below 4: the bottleneck is 5 x 5 x 5
    totals = [math.prod(stride[axis] for stride in network["strides"]) for axis in range(3)]
    bottleneck = [p // total for p, total in zip(training["patch_size"], totals, strict=True)]
    assert all(4 <= size < 8 for size in bottleneck), bottleneck
    assert training["optimizer"] == "sgd" and training["learning_rate"] == 0.01 and training["momentum"] == 0.99
    assert training["loss"] == "dice_ce" and training["deep_supervision"]
    assert resolved.to_dict()["cross_validation"] == {"num_folds": 5, "paper_folds": [0, 1, 2, 3, 4],
                                                      "default_folds": [0, 1, 2, 3, 4]}
    assert recipe.resolve("cpu").default_folds == [0]
    augmentation = training["augmentation"]
    assert augmentation["p_blur"] == augmentation["p_lowres"] == 0.0 and augmentation.get("p_elastic", 0.0) == 0.0
    assert resolved.postprocessing["max_kidney_components"] is None  # no post-processing in the paper
    if name == "isensee2019-plain":
        assert network["block"] == "plain" and network["features_per_stage"][0] == 30
        assert network["encoder_blocks_per_stage"] == [2] * 6 and network["decoder_convs_per_stage"] == [2] * 5
    else:
        assert network["block"] == name.split("-")[1] and network["features_per_stage"][0] == 24
        assert network["encoder_blocks_per_stage"] == [1, 3, 4, 6, 6, 6]  # one, then more per downsampling
        assert network["decoder_convs_per_stage"] == [1] * 5


def test_blocks_are_residual_or_preactivation_as_named():
    smoke = {name: build_network(get_recipe(name).resolve("smoke").network) for name in NAMES}
    kinds = {name: {type(m) for m in model.modules()} for name, model in smoke.items()}
    assert ResidualBlock in kinds["isensee2019-residual"] and PreActResidualBlock not in kinds["isensee2019-residual"]
    assert PreActResidualBlock in kinds["isensee2019-preact"]
    assert not ({ResidualBlock, PreActResidualBlock} & kinds["isensee2019-plain"])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("isensee")
    return write_tiny_kits_dataset(root / "data"), root / "work"


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_trains_exports_and_segments(shared, name):
    data, work = shared
    folds = [0, 1] if name == "isensee2019-residual" else None  # the fold ensemble, softmax averaged
    run = run_recipe(get_recipe(name), data, work, "smoke", folds=folds, workers=0, threads=1, jobs=1,
                     device="cpu", report=False)
    members = 2 if folds else 1
    package = assert_segments_like_its_input(run.package, data, members=members)
    assert [m.name for m in package.segmenters] == [f"fold{k}" for k in range(members)]
    manifest = json.loads((run.package / "model.json").read_text())
    assert manifest["preprocessing"]["normalization"]["clip"] == [-79.0, 304.0]
    assert manifest["preprocessing"]["target_spacing"] == [3.22, 1.62, 1.62]
    assert manifest["network"]["block"] == get_recipe(name).block
    assert manifest["provenance"]["recipe"] == name and manifest["provenance"]["folds"] == (folds or [0])
    # the three recipes preprocess alike, so they share one preprocessed folder
    assert [p.name for p in (work / "preprocessed").iterdir()] == [run.preprocessed.name]
