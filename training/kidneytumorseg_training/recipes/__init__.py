"""The seed papers as named, runnable recipes (docs/recipes.md).

    from kidneytumorseg_training.recipes import get_recipe, recipe_names
    resolved = get_recipe("zang2021-kits21").resolve("cpu")     # the settings at a budget
    resolved.to_dict()                                           # what `recipe show` prints

``kidneytumorseg-train recipe run NAME ...`` (:func:`kidneytumorseg_training.recipes.runner.run_recipe`) plans,
preprocesses, trains every fold and exports a model package.

Cascade recipes (``kits19-twostage``, ``tunet``; :mod:`.cascade`) train several stages and export one package
that the engine runs as a cascade. Any recipe registers with :func:`register` as any object with ``name``,
``paper``, ``summary``, ``resolve(budget)`` (returning an object with ``to_dict()``) and ``run(**options)`` taking
the keyword arguments of :func:`kidneytumorseg_training.recipes.runner.run_recipe` and returning its
:class:`RecipeRun`. The command line calls ``recipe.run(...)`` when a recipe has one and the single-stage runner
otherwise.
"""

from __future__ import annotations

from typing import Any

from kidneytumorseg_training.recipes import isensee2019, kits19, tunet, zang2021, zhao2019
from kidneytumorseg_training.recipes.base import Budget, Recipe, RecipeError, ResolvedRecipe

__all__ = ["Budget", "Recipe", "RecipeError", "ResolvedRecipe", "get_recipe", "recipe_names", "register",
           "all_recipes"]

_REGISTRY: dict[str, Any] = {}


def register(recipe: Any, replace: bool = False) -> Any:
    """Add ``recipe`` to the registry under ``recipe.name`` (a second recipe of that name needs ``replace``)."""
    name = getattr(recipe, "name", None)
    if not isinstance(name, str) or not name:
        raise RecipeError(f"A recipe needs a non-empty string name, got {name!r}.")
    if name in _REGISTRY and not replace:
        raise RecipeError(f"A recipe named {name!r} is already registered; pass replace=True to replace it.")
    _REGISTRY[name] = recipe
    return recipe


for _module in (zhao2019, isensee2019, zang2021, kits19, tunet):
    for _recipe in _module.RECIPES:
        register(_recipe)


def recipe_names() -> list[str]:
    """The registered recipe names, sorted."""
    return sorted(_REGISTRY)


def all_recipes() -> list[Any]:
    """The registered recipes, sorted by name."""
    return [_REGISTRY[name] for name in recipe_names()]


def get_recipe(name: str) -> Any:
    """The recipe called ``name``; RecipeError listing the known names otherwise."""
    if name not in _REGISTRY:
        raise RecipeError(f"Unknown recipe {name!r}; known recipes: {', '.join(recipe_names())} "
                          f"(`kidneytumorseg-train recipe list`).")
    return _REGISTRY[name]
