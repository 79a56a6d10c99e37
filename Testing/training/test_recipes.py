"""The recipe registry: the single-stage papers are there by name, unknown names are refused with the list,
a cascade recipe can be added without touching it."""

from __future__ import annotations

import pytest

from kidneytumorseg_training import recipes
from kidneytumorseg_training.recipes import Recipe, RecipeError, get_recipe, recipe_names, register

SINGLE_STAGE = ["isensee2019-plain", "isensee2019-preact", "isensee2019-residual", "zang2021-kits21",
                "zhao2019-msunet"]


def test_the_cascade_recipes_are_registered():
    assert {"kits19-twostage", "tunet"} <= set(recipe_names())


def test_the_single_stage_recipes_are_registered():
    assert set(SINGLE_STAGE) <= set(recipe_names())
    for name in SINGLE_STAGE:
        recipe = get_recipe(name)
        assert isinstance(recipe, Recipe) and recipe.name == name
        assert recipe.paper and recipe.summary and recipe.seed_file.endswith(".txt")


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(RecipeError, match="zang2021-kits21"):
        get_recipe("nnunet-magic")


def test_register_refuses_a_second_recipe_of_a_name_unless_replacing(monkeypatch):
    monkeypatch.setattr(recipes, "_REGISTRY", dict(recipes._REGISTRY))

    class Cascade:  # any object with a name, paper, summary and resolve() plugs in
        name, paper, summary = "example-cascade", "Example", "cascade"

        def resolve(self, budget):
            return {"budget": budget}

    register(Cascade())
    assert "example-cascade" in recipe_names() and get_recipe("example-cascade").paper == "Example"
    with pytest.raises(RecipeError, match="already registered"):
        register(Cascade())
    replacement = Cascade()
    register(replacement, replace=True)
    assert get_recipe("example-cascade") is replacement
    with pytest.raises(RecipeError, match="name"):
        register(object())
