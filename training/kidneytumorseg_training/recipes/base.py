"""A recipe is one paper's method as data; one "budget" knob scales it from a CPU smoke run to the paper's size.

A :class:`Recipe` holds the paper's numbers (spacing, normalisation, network, patch, batch, schedule, loss,
augmentation, folds, inference and post-processing); :meth:`Recipe.resolve` scales the sizes by a
:class:`Budget` and returns a :class:`ResolvedRecipe`: the settings one run uses, as JSON
(``kidneytumorseg-train recipe show``) and as a :class:`TrainingConfig`.

The budget is a fraction ``b`` in (0, 1]: ``full`` = 1 is the paper, ``cpu`` fits one network in about 20 minutes
on two CPU cores, ``smoke`` puts every size at its floor (seconds, for tests). With ``b < 1``:

- base features and the feature cap x ``b ** (1/5)`` (at least 4),
- each patch axis x ``b ** (1/12)`` (voxels x ``b ** (1/4)``), then rounded to what the planned network divides,
- batch size x ``b ** (1/5)`` (at least 2, never above the paper's),
- epochs, iterations per epoch and validation batches x ``b ** (1/2)`` (at least 1, 2, 1),
- the plateau patience (epochs) x ``b ** (1/4)`` (at least 1): shorter epochs measure the loss more noisily, so
  the patience shrinks less than the run,
- augmentations too slow for a CPU (elastic deformation) only from ``b >= 0.25``.

Everything else (spacing, normalisation, block type, depth rule, optimizer and learning rate, loss and its
weights, probabilities, inference, post-processing) is the paper's at every budget.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.training_config import TrainingConfig

BUDGET_PRESETS: dict[str, float] = {"smoke": 1e-6, "cpu": 0.002, "full": 1.0}
FEATURE_EXPONENT = 1 / 5
PATCH_EXPONENT = 1 / 12
BATCH_EXPONENT = 1 / 5
SCHEDULE_EXPONENT = 1 / 2
PLATEAU_EXPONENT = 1 / 4
MIN_FEATURES = 4
MIN_BATCH = 2
COSTLY_AUGMENTATION_FRACTION = 0.25
# What the budget changes (the rest is the paper's at any budget); docs/recipes.md repeats it.
SCALED_BY_BUDGET = ("patch_size", "base_features", "max_features", "batch_size", "epochs", "iterations_per_epoch",
                    "val_iterations", "plateau_patience", "costly augmentations")


class RecipeError(KidneyTumorSegError, ValueError):
    """A recipe name, budget or setting cannot be used; the message says what to give instead."""


@dataclass(frozen=True)
class Budget:
    """A budget fraction in (0, 1] with the name it was given by (``smoke``, ``cpu``, ``full`` or the number)."""

    name: str
    fraction: float

    @classmethod
    def parse(cls, value: str | float | Budget) -> Budget:
        """``smoke``, ``cpu``, ``full``, or a number in (0, 1] (``0.01``)."""
        if isinstance(value, Budget):
            return value
        text = str(value).strip().lower()
        if text in BUDGET_PRESETS:
            return cls(text, BUDGET_PRESETS[text])
        try:
            fraction = float(text)
        except ValueError:
            fraction = math.nan
        if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
            raise RecipeError(f"Budget {value!r} is not one of {sorted(BUDGET_PRESETS)} nor a number in (0, 1] "
                              f"(1 = the paper's sizes, e.g. 0.01).")
        named = {v: k for k, v in BUDGET_PRESETS.items()}
        return cls(named.get(fraction, f"{fraction:g}"), fraction)

    @property
    def label(self) -> str:
        """A folder-safe name: ``smoke``, ``cpu``, ``full`` or ``b0.01``."""
        return self.name if self.name in BUDGET_PRESETS else f"b{self.name}"

    @property
    def is_full(self) -> bool:
        return self.fraction >= 1.0

    def scale(self, value: float, exponent: float, minimum: float = 1) -> int:
        """``value * fraction ** exponent``, rounded, at least ``minimum`` (the paper's value at full budget)."""
        if self.is_full:
            return int(value)
        return int(max(minimum, round(value * self.fraction ** exponent)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fraction": self.fraction}


@dataclass(frozen=True)
class Recipe:
    """One paper's single-stage training method. Spacings and patch sizes are in array order ``[si, ap, lr]``.

    ``target_spacing`` None: the median spacing of the training cases (nnU-Net's rule). ``normalization`` None:
    nnU-Net's CT scheme from the training foreground (clip to its 0.5 / 99.5 percentiles, z-score with its mean
    and standard deviation). ``network_options`` go to the engine's ``plan_network`` (``nonlinearity``,
    ``encoder_blocks_per_stage``, ...); ``max_stages`` caps the depth the planner would choose.
    ``augmentation`` overrides :class:`AugmentationConfig` defaults; ``costly_augmentation`` is added from budget
    ``COSTLY_AUGMENTATION_FRACTION`` on. ``paper_folds``: the folds trained at the full budget (fold 0 below).
    """

    name: str
    paper: str
    seed_file: str
    summary: str
    patch_size: tuple[int, int, int]
    batch_size: int
    base_features: int
    target_spacing: tuple[float, float, float] | None = None
    normalization: Mapping[str, Any] | None = None
    image_interpolation: str = "linear"
    label_interpolation: str = "linear"
    block: str = "plain"
    max_features: int = 320
    max_stages: int | None = None
    min_feature_map: int = 4
    network_options: Mapping[str, Any] = field(default_factory=dict)
    foreground_fraction: float = 1 / 3
    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations: int = 50
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    plateau_metric: str = "val_loss"
    loss: str = "dice_ce"
    loss_options: Mapping[str, Any] = field(default_factory=dict)
    deep_supervision: bool = True
    augmentation: Mapping[str, Any] = field(default_factory=dict)
    costly_augmentation: Mapping[str, Any] = field(default_factory=dict)
    num_folds: int = 5
    paper_folds: tuple[int, ...] = (0,)
    inference: Mapping[str, Any] = field(default_factory=dict)
    postprocessing: Mapping[str, Any] = field(default_factory=dict)
    deviations: tuple[str, ...] = ()

    def resolve(self, budget: str | float | Budget = "full",
                target_spacing: Sequence[float] | None = None) -> ResolvedRecipe:
        """The settings at ``budget``. ``target_spacing`` is needed (and used) only when the recipe plans its
        spacing from the data; without it such a recipe resolves without a network (planned at run time)."""
        budget = Budget.parse(budget)
        spacing = list(self.target_spacing) if self.target_spacing is not None else (
            [float(s) for s in target_spacing] if target_spacing is not None else None)
        features = budget.scale(self.base_features, FEATURE_EXPONENT, MIN_FEATURES)
        max_features = max(features, budget.scale(self.max_features, FEATURE_EXPONENT, MIN_FEATURES))
        wanted_patch = [p if budget.is_full else max(1, round(p * budget.fraction ** PATCH_EXPONENT))
                        for p in self.patch_size]
        network = None
        patch = wanted_patch
        if spacing is not None:
            patch, network = plan_recipe_network(self, wanted_patch, spacing, features, max_features)
        augmentation = {"enabled": True, **copy.deepcopy(dict(self.augmentation))}
        if budget.fraction >= COSTLY_AUGMENTATION_FRACTION:
            augmentation.update(copy.deepcopy(dict(self.costly_augmentation)))
        training = {
            "epochs": budget.scale(self.epochs, SCHEDULE_EXPONENT, 1),
            "iterations_per_epoch": budget.scale(self.iterations_per_epoch, SCHEDULE_EXPONENT, 2),
            "val_iterations": budget.scale(self.val_iterations, SCHEDULE_EXPONENT, 1),
            "batch_size": min(self.batch_size, budget.scale(self.batch_size, BATCH_EXPONENT, MIN_BATCH)),
            "patch_size": list(patch),
            "optimizer": self.optimizer, "learning_rate": self.learning_rate, "momentum": self.momentum,
            "weight_decay": self.weight_decay, "poly_exponent": self.poly_exponent,
            "plateau_patience": budget.scale(self.plateau_patience, PLATEAU_EXPONENT, 1),
            "plateau_factor": self.plateau_factor, "plateau_metric": self.plateau_metric,
            "loss": self.loss, "loss_options": dict(self.loss_options),
            "deep_supervision": self.deep_supervision, "augmentation": augmentation,
            "foreground_fraction": self.foreground_fraction,
        }
        return ResolvedRecipe(
            recipe=self, budget=budget, target_spacing=spacing,
            normalization=None if self.normalization is None else dict(self.normalization),
            base_features=features, max_features=max_features, network=network, training=training,
            default_folds=list(self.paper_folds) if budget.is_full else [0])


def plan_recipe_network(recipe: Recipe, patch: Sequence[int], spacing: Sequence[float], base_features: int,
                        max_features: int) -> tuple[list[int], dict[str, Any]]:
    """The patch nearest ``patch`` (in voxels) that the planned network divides, and that network
    (the engine's ``plan_network`` with the recipe's block and options, cut to ``max_stages``)."""
    from kidneytumorseg.networks import NetworkConfig, plan_network
    from kidneytumorseg.networks.planning import _divisible_patch  # the adjustment plan_network suggests

    wanted = math.prod(patch)
    rounded = (_divisible_patch(patch, spacing, recipe.min_feature_map, round_up=up) for up in (False, True))
    adjusted = [p for p in rounded if p is not None and min(p) >= 1]
    # The exact patch first, then the divisible one nearest in voxels (ties: the smaller).
    candidates = [list(patch)] + sorted(adjusted, key=lambda p: (abs(math.log(math.prod(p) / wanted)), math.prod(p)))
    errors = []
    for candidate in candidates:
        try:
            config = plan_network(candidate, spacing, num_classes=4, base_features=base_features,
                                  max_features=max_features, block=recipe.block,
                                  min_feature_map=recipe.min_feature_map, deep_supervision=recipe.deep_supervision,
                                  **dict(recipe.network_options))
        except ValueError as error:
            errors.append(str(error))
            continue
        network = config.to_dict()
        if recipe.max_stages is not None and config.num_stages > recipe.max_stages:
            keep = recipe.max_stages
            for key in ("features_per_stage", "strides", "kernel_sizes", "encoder_blocks_per_stage"):
                network[key] = network[key][:keep]
            network["decoder_convs_per_stage"] = network["decoder_convs_per_stage"][:keep - 1]
            network = NetworkConfig.from_dict(network).to_dict()
        return [int(p) for p in candidate], network
    raise RecipeError(f"Recipe {recipe.name}: no network can be planned for a patch near {list(patch)} at spacing "
                      f"{list(spacing)} ({errors[-1] if errors else 'no candidate'}); use a larger budget.")


@dataclass
class ResolvedRecipe:
    """A recipe at one budget: what ``recipe show`` prints and what a run trains."""

    recipe: Recipe
    budget: Budget
    target_spacing: list[float] | None
    normalization: dict[str, Any] | None
    base_features: int
    max_features: int
    network: dict[str, Any] | None
    training: dict[str, Any]
    default_folds: list[int]

    @property
    def inference(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.recipe.inference))

    @property
    def postprocessing(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.recipe.postprocessing))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe settings: the paper, the budget, preprocessing, network, training, folds, inference."""
        recipe = self.recipe
        spacing = self.target_spacing if self.target_spacing is not None else \
            "median spacing of the training cases (planned at run time)"
        normalization = self.normalization if self.normalization is not None else {
            "scheme": "clip_zscore", "from": "training foreground: 0.5 / 99.5 percentiles, mean and std "
                                             "(measured at run time)"}
        return {
            "recipe": recipe.name, "paper": recipe.paper, "seed_paper": recipe.seed_file, "summary": recipe.summary,
            "budget": self.budget.to_dict(),
            "preprocessing": {"target_spacing": spacing, "normalization": normalization,
                              "image_interpolation": recipe.image_interpolation,
                              "label_interpolation": recipe.label_interpolation},
            "network": {"block": recipe.block, "base_features": self.base_features,
                        "max_features": self.max_features, "max_stages": recipe.max_stages,
                        "min_feature_map": recipe.min_feature_map, "deep_supervision": recipe.deep_supervision,
                        "options": copy.deepcopy(dict(recipe.network_options)), "planned": self.network},
            "training": copy.deepcopy(self.training),
            "cross_validation": {"num_folds": recipe.num_folds, "paper_folds": list(recipe.paper_folds),
                                 "default_folds": self.default_folds},
            "inference": self.inference, "postprocessing": self.postprocessing,
            "scaled_by_budget": list(SCALED_BY_BUDGET), "deviations": list(recipe.deviations),
        }

    def training_config(self, preprocessed: str, train_ids: Sequence[str], val_ids: Sequence[str], *,
                        seed: int = 0, name: str = "run", **run_options: Any) -> TrainingConfig:
        """The :class:`TrainingConfig` of one run; ``run_options`` are how it runs (``num_workers``, ``threads``,
        ``device``, ``precision``)."""
        if self.network is None:
            raise RecipeError(f"Recipe {self.recipe.name} has no planned network yet: resolve it with the target "
                              f"spacing of the data.")
        settings = copy.deepcopy(self.training)
        return TrainingConfig(preprocessed=str(preprocessed), train_ids=list(train_ids), val_ids=list(val_ids),
                              network=copy.deepcopy(self.network), seed=seed, name=name, **settings, **run_options)
