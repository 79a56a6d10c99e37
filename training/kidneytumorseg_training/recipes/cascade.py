"""Cascade recipes: several training stages (localizer, stage-1 segmenter, stage-2 refiner) exported as ONE model
package that the engine's predictor runs as a cascade (docs/cascades.md).

Each :class:`Stage` holds its paper numbers as a single-stage :class:`Recipe` (spacing, normalisation, network,
patch, schedule, loss, augmentation) plus the member settings of :class:`TrainingConfig` that make it a 2.5D
member, a refiner or a label-mapped network (``label_map``, ``context_slices``, ``stage_input``, ``median_filter``,
``hard_case_*``, ``deep_supervision_decay``). The budget scales every stage as it scales a single-stage recipe.

A :class:`CascadeRecipe` resolves its stages at a budget (:class:`ResolvedCascade`, what ``recipe show`` prints)
and its :meth:`CascadeRecipe.run` prepares each stage's data, trains each stage of each fold in order (stage 2 is
trained on perturbed reference kidney regions, so it does not wait for stage 1's predictions) and exports one
package: segmenters, refiners (runs with a ``stage_input``) and the first fold's localizer.

Work folder: ``WORK/runs/<recipe>/<budget>/fold<k>/<stage>/``, the rest as :mod:`.runner`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg_training.recipes.base import (
    SCALED_BY_BUDGET,
    Budget,
    Recipe,
    RecipeError,
    ResolvedRecipe,
    plan_recipe_network,
)
from kidneytumorseg_training.recipes.runner import (
    DEFAULT_VERSION,
    RecipeRun,
    _choose_folds,
    _export_target,
    fold_splits,
)

LOGGER = logging.getLogger(__name__)
ROLES = ("localizer", "segmenter", "refiner")


@dataclass(frozen=True)
class Stage:
    """One network of a cascade: ``key`` names its run folder and member; ``recipe.target_spacing`` must be set."""

    key: str
    role: str
    recipe: Recipe
    member: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise RecipeError(f"Stage {self.key}: role must be one of {ROLES}, got {self.role!r}.")
        if self.recipe.target_spacing is None:
            raise RecipeError(f"Stage {self.key}: a cascade stage needs a fixed target_spacing.")
        if (self.role == "refiner") != ("stage_input" in self.member):
            raise RecipeError(f"Stage {self.key}: a refiner and only a refiner has a stage_input.")

    def resolve(self, budget: Budget) -> ResolvedRecipe:
        """The stage at ``budget``: the recipe's scaled sizes, the network planned for its dimension (2D for a
        2.5D member), input channels and classes, and the member settings added to the training settings."""
        from kidneytumorseg.networks import NetworkConfig

        recipe, member = self.recipe, copy.deepcopy(dict(self.member))
        resolved = dataclasses.replace(recipe, target_spacing=None).resolve(budget)  # sizes only, no network yet
        spacing = [float(s) for s in recipe.target_spacing]
        context = member.get("context_slices")
        channels = 1 + len((member.get("stage_input") or {}).get("probability_channels", []))
        options = dict(recipe.network_options)
        plan_spacing = spacing
        if context is not None:
            options["dimension"] = 2
            plan_spacing = spacing[1:]
            channels *= 2 * int(context) + 1
        options["in_channels"] = channels
        patch, network = plan_recipe_network(dataclasses.replace(recipe, network_options=options),
                                             resolved.training["patch_size"], plan_spacing,
                                             resolved.base_features, resolved.max_features)
        label_map = member.get("label_map")
        network["num_classes"] = len(set(label_map)) if label_map else 4
        resolved.recipe, resolved.target_spacing = recipe, spacing
        resolved.network = NetworkConfig.from_dict(network).to_dict()
        resolved.training["patch_size"] = patch
        resolved.training.update(member)
        return resolved


@dataclass
class ResolvedCascade:
    """A cascade at one budget: its stages resolved, in training order."""

    recipe: CascadeRecipe
    budget: Budget
    stages: dict[str, ResolvedRecipe]
    default_folds: list[int]

    def to_dict(self) -> dict[str, Any]:
        recipe = self.recipe
        stages = {}
        for stage in recipe.stages:
            settings = self.stages[stage.key].to_dict()
            stages[stage.key] = {"role": stage.role, "summary": stage.recipe.summary,
                                 **{k: settings[k] for k in ("preprocessing", "network", "training")}}
        return {
            "recipe": recipe.name, "paper": recipe.paper, "seed_paper": recipe.seed_file, "summary": recipe.summary,
            "budget": self.budget.to_dict(), "stages": stages,
            "cross_validation": {"num_folds": recipe.num_folds, "paper_folds": list(recipe.paper_folds),
                                 "default_folds": self.default_folds},
            "inference": copy.deepcopy(dict(recipe.inference)),
            "postprocessing": copy.deepcopy(dict(recipe.postprocessing)),
            "scaled_by_budget": list(SCALED_BY_BUDGET), "deviations": list(recipe.deviations),
        }


@dataclass(frozen=True)
class CascadeRecipe:
    """A paper's cascade: stages trained in order, one package (``inference`` / ``postprocessing`` are the
    package's)."""

    name: str
    paper: str
    seed_file: str
    summary: str
    stages: tuple[Stage, ...]
    inference: Mapping[str, Any] = field(default_factory=dict)
    postprocessing: Mapping[str, Any] = field(default_factory=dict)
    num_folds: int = 5
    paper_folds: tuple[int, ...] = (0,)
    deviations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        keys = [stage.key for stage in self.stages]
        if len(set(keys)) != len(keys):
            raise RecipeError(f"Recipe {self.name}: stage keys {keys} repeat.")
        if not any(stage.role == "segmenter" for stage in self.stages):
            raise RecipeError(f"Recipe {self.name}: a cascade needs a segmenter stage.")
        if sum(stage.role == "localizer" for stage in self.stages) > 1:
            raise RecipeError(f"Recipe {self.name}: a package holds at most one localizer.")

    def stage(self, key: str) -> Stage:
        return next(stage for stage in self.stages if stage.key == key)

    def resolve(self, budget: str | float | Budget = "full",
                target_spacing: Sequence[float] | None = None) -> ResolvedCascade:
        """The stages at ``budget`` (``target_spacing`` is ignored: every stage has its own)."""
        budget = Budget.parse(budget)
        stages = {stage.key: stage.resolve(budget) for stage in self.stages}
        return ResolvedCascade(self, budget, stages, list(self.paper_folds) if budget.is_full else [0])

    def run(self, data: str | os.PathLike[str], work: str | os.PathLike[str],
            budget: str | float | Budget = "cpu", *, train_cases: Sequence[str] | None = None,
            val_cases: Sequence[str] | None = None, folds: Sequence[int] | None = None, seed: int = 0,
            threads: int | None = None, workers: int = 1, jobs: int = 2, device: str = "auto",
            precision: str = "auto", export_dir: str | os.PathLike[str] | None = None,
            model_name: str | None = None, model_version: str = DEFAULT_VERSION,
            overwrite: bool = False, report: bool = True) -> RecipeRun:
        """Prepare each stage's data, train every stage of each fold in order, export one package
        (``run_recipe``'s arguments and result; ``RecipeRun.preprocessed`` is the first stage's folder)."""
        from kidneytumorseg_training.export import export_package
        from kidneytumorseg_training.recipes.preparation import prepare_data
        from kidneytumorseg_training.report import write_training_report
        from kidneytumorseg_training.trainer import train

        work, budget = Path(work), Budget.parse(budget)
        started = time.perf_counter()
        prepared = {stage.key: prepare_data(stage.recipe, data, work, train_cases=train_cases, val_cases=val_cases,
                                            jobs=jobs) for stage in self.stages}
        seconds: dict[str, float] = {"preprocessing": round(time.perf_counter() - started, 1)}
        resolved = self.resolve(budget)
        first = prepared[self.stages[0].key]
        splits = fold_splits(first, self.num_folds, seed=0)
        chosen = _choose_folds(folds, resolved.stages[self.stages[0].key], len(splits))
        root = work / "runs" / self.name / budget.label
        root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / "splits.json", json.dumps([{"train": t, "val": v} for t, v in splits], indent=1)
                          + "\n")
        runs: dict[str, list[Path]] = {role: [] for role in ROLES}
        for fold in chosen:
            for stage in self.stages:
                usable = set(prepared[stage.key].train_pool) | set(prepared[stage.key].val_cases)
                train_ids = [i for i in splits[fold][0] if i in usable]
                val_ids = [i for i in splits[fold][1] if i in usable]
                settings = resolved.stages[stage.key]
                config = settings.training_config(
                    str(prepared[stage.key].folder.resolve()), train_ids, val_ids, seed=seed + fold,
                    name=f"{self.name}-{budget.label}-fold{fold}-{stage.key}", num_workers=workers, threads=threads,
                    device=device, precision=precision)
                run_dir = root / f"fold{fold}" / stage.key
                LOGGER.info("Training fold %d, stage %s (%s; patch %s, %d epochs x %d) in %s", fold, stage.key,
                            stage.role, config.patch_size, config.epochs, config.iterations_per_epoch, run_dir)
                stage_started = time.perf_counter()
                result = train(config, run_dir)
                seconds[f"fold{fold}-{stage.key}"] = round(time.perf_counter() - stage_started, 1)
                if report and result.epochs_done >= config.epochs:
                    write_training_report(run_dir)
                runs[stage.role].append(run_dir)
        name = model_name or self.name
        target = _export_target(work, export_dir, name, model_version)
        if target.exists() and export_dir is not None and not overwrite:
            raise RecipeError(f"{target} already exists; choose another --model-version or allow overwriting it.")
        settings_dict = resolved.to_dict()
        members = runs["segmenter"] + runs["refiner"]
        provenance = {
            "recipe": self.name, "paper": self.paper, "budget": budget.to_dict(), "data": os.path.abspath(data),
            "train_cases": len(first.train_pool), "val_cases": len(first.val_cases), "folds": chosen,
            "runs": [str(run) for role in ROLES for run in runs[role]], "training_seconds": seconds,
            "settings": settings_dict,
        }
        package = export_package(
            members, target, name=name, version=model_version,
            member_names=[f"{run.name}-{run.parent.name}" for run in members],
            localizer=runs["localizer"][0] if runs["localizer"] else None,
            inference=dict(self.inference), postprocessing=dict(self.postprocessing), provenance=provenance,
            description=f"{self.name} at budget {budget.name}: {self.summary}", overwrite=True)
        seconds["total"] = round(time.perf_counter() - started, 1)
        LOGGER.info("Exported %s@%s (%d member(s)) to %s in %.0f s", name, model_version, len(members), package,
                    seconds["total"])
        return RecipeRun(self.name, budget, Path(package), [run for role in ROLES for run in runs[role]],
                         first.folder, settings_dict, seconds)
