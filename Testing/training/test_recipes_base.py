"""The recipe dataclass and the budget knob: full = the paper's numbers, smaller budgets scale sizes and schedule
only, every planned patch divides its network, bad budgets are refused with the accepted forms."""

from __future__ import annotations

import json
import math

import pytest

from kidneytumorseg.networks import NetworkConfig, build_network
from kidneytumorseg_training.recipes import Budget, Recipe, RecipeError, all_recipes
from kidneytumorseg_training.recipes.base import BUDGET_PRESETS, COSTLY_AUGMENTATION_FRACTION, plan_recipe_network

SPACING = [3.0, 1.5, 1.5]  # the synthetic dataset's, for recipes that plan their spacing from the data


def _toy(**changes) -> Recipe:
    settings = dict(name="toy", paper="a paper", seed_file="x.txt", summary="toy", patch_size=(64, 128, 128),
                    batch_size=8, base_features=32, target_spacing=(3.0, 1.5, 1.5),
                    normalization={"scheme": "clip_zscore", "clip": [-100.0, 300.0], "mean": 50.0, "std": 60.0},
                    epochs=400, iterations_per_epoch=100, val_iterations=20, plateau_patience=20,
                    augmentation={"p_noise": 0.0}, costly_augmentation={"p_elastic": 0.2})
    settings.update(changes)
    return Recipe(**settings)


def test_budget_names_numbers_and_refusals():
    assert Budget.parse("full") == Budget("full", 1.0)
    assert Budget.parse("cpu").fraction == BUDGET_PRESETS["cpu"] and Budget.parse("CPU").name == "cpu"
    assert Budget.parse(1) == Budget("full", 1.0)
    custom = Budget.parse("0.01")
    assert custom.fraction == 0.01 and custom.label == "b0.01"
    assert Budget.parse(custom) is custom
    for bad in ("0", "-0.5", "1.5", "nan", "huge", ""):
        with pytest.raises(RecipeError, match="smoke"):
            Budget.parse(bad)


def test_full_budget_is_the_paper():
    recipe = _toy()
    resolved = recipe.resolve("full")
    training = resolved.training
    assert (training["epochs"], training["iterations_per_epoch"], training["val_iterations"]) == (400, 100, 20)
    assert training["batch_size"] == 8 and training["patch_size"] == [64, 128, 128]
    assert training["plateau_patience"] == 20
    assert resolved.base_features == 32 and resolved.network["features_per_stage"][0] == 32
    assert max(resolved.network["features_per_stage"]) <= 320
    assert training["augmentation"] == {"enabled": True, "p_noise": 0.0, "p_elastic": 0.2}


def test_smaller_budgets_shrink_sizes_and_schedule_only():
    recipe = _toy()
    full, mid, cpu, smoke = (recipe.resolve(b) for b in ("full", 0.05, "cpu", "smoke"))
    for key in ("epochs", "iterations_per_epoch", "val_iterations", "batch_size", "plateau_patience"):
        values = [r.training[key] for r in (full, mid, cpu, smoke)]
        assert values == sorted(values, reverse=True), (key, values)
    volumes = [math.prod(r.training["patch_size"]) for r in (full, mid, cpu, smoke)]
    assert volumes == sorted(volumes, reverse=True) and volumes[0] > volumes[2] > volumes[3]
    assert [r.base_features for r in (full, mid, cpu, smoke)] == sorted(
        [r.base_features for r in (full, mid, cpu, smoke)], reverse=True)
    assert smoke.base_features == 4 and smoke.training["batch_size"] == 2
    assert (smoke.training["epochs"], smoke.training["iterations_per_epoch"], smoke.training["val_iterations"]) == \
        (1, 2, 1)
    unscaled = ("optimizer", "learning_rate", "momentum", "weight_decay", "poly_exponent", "plateau_factor", "loss",
                "loss_options", "deep_supervision", "foreground_fraction")
    for key in unscaled:
        assert smoke.training[key] == full.training[key], key
    assert smoke.target_spacing == full.target_spacing and smoke.normalization == full.normalization
    # the costly augmentation only where a GPU is expected
    assert "p_elastic" not in cpu.training["augmentation"]
    assert recipe.resolve(COSTLY_AUGMENTATION_FRACTION).training["augmentation"]["p_elastic"] == 0.2


@pytest.mark.parametrize("budget", ["smoke", "cpu", 0.05, "full"])
def test_every_recipe_plans_a_network_its_patch_fits(budget):
    for recipe in all_recipes():
        resolved = recipe.resolve(budget, SPACING)
        json.dumps(resolved.to_dict())  # what `recipe show` prints is JSON
        stages = list(resolved.stages.values()) if hasattr(resolved, "stages") else [resolved]  # cascades
        for stage in stages:
            network = NetworkConfig.from_dict(stage.network)
            patch = stage.training["patch_size"]
            assert all(p % s == 0 for p, s in zip(patch, network.total_strides, strict=True)), (recipe.name, patch)
            assert network.deep_supervision is stage.recipe.deep_supervision
            if stage is resolved:  # single-stage recipes: a 3D network of the four KiTS labels on the CT alone
                assert network.num_classes == 4 and network.in_channels == 1 and network.dimension == 3


def test_smoke_network_really_runs_on_its_patch():
    import torch

    resolved = _toy().resolve("smoke")
    network = build_network(resolved.network)
    outputs = network(torch.zeros(1, 1, *resolved.training["patch_size"]))
    assert outputs[0].shape == (1, 4, *resolved.training["patch_size"])


def test_patch_rounds_to_the_nearest_divisible_size():
    recipe = _toy(patch_size=(48, 95, 95))
    patch, network = plan_recipe_network(recipe, [48, 95, 95], [3.0, 1.5, 1.5], 8, 64)
    assert patch == [48, 96, 96]  # 96 is nearer than 80
    assert max(network["features_per_stage"]) == 64


def test_max_stages_cuts_the_planned_depth():
    recipe = _toy(max_stages=3)
    resolved = recipe.resolve("full")
    assert len(resolved.network["features_per_stage"]) == 3
    assert len(resolved.network["decoder_convs_per_stage"]) == 2
    build_network(resolved.network)


def test_data_planned_spacing_resolves_without_a_network_until_the_spacing_is_known():
    recipe = _toy(target_spacing=None, normalization=None)
    resolved = recipe.resolve("cpu")
    assert resolved.network is None
    shown = resolved.to_dict()
    assert "median" in shown["preprocessing"]["target_spacing"]
    assert shown["preprocessing"]["normalization"]["scheme"] == "clip_zscore"
    with pytest.raises(RecipeError, match="spacing"):
        resolved.training_config("pre", ["a"], [])
    assert recipe.resolve("cpu", [2.0, 2.0, 2.0]).target_spacing == [2.0, 2.0, 2.0]


def test_training_config_carries_the_recipe_and_the_run_options():
    resolved = _toy().resolve("smoke")
    config = resolved.training_config("pre", ["a", "b"], ["c"], seed=3, name="toy-fold0", num_workers=0,
                                      threads=1, device="cpu", precision="fp32")
    assert config.network == resolved.network and config.patch_size == resolved.training["patch_size"]
    assert config.epochs == 1 and config.iterations_per_epoch == 2 and config.seed == 3
    assert config.train_ids == ["a", "b"] and config.val_ids == ["c"] and config.num_workers == 0
    assert config.augmentation["p_noise"] == 0.0
