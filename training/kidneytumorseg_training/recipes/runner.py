"""Run a single-stage recipe end to end: plan + preprocess (cached), train each fold (resumable), export one
model package whose members are the folds, with the recipe's inference and post-processing settings and its
name, budget and paper in the provenance.

Work folder layout::

    WORK/fingerprints/<hash>.json                 dataset fingerprints (only recipes that plan from the data)
    WORK/preprocessed/<spacing>-<scheme>-...      preprocessed cases, shared by recipes that preprocess alike
    WORK/runs/<recipe>/<budget>/splits.json       the folds of the training pool
    WORK/runs/<recipe>/<budget>/fold<k>/          one training run per fold (checkpoints, history, report)
    WORK/packages/<name>/<version>/               the exported package (unless exported into a model store)

Running the same command again resumes: complete preprocessed cases and finished epochs are kept.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg_training.recipes.base import Budget, Recipe, RecipeError, ResolvedRecipe
from kidneytumorseg_training.recipes.preparation import PreparedData, prepare_data

LOGGER = logging.getLogger(__name__)
DEFAULT_VERSION = "1.0.0"


@dataclass
class RecipeRun:
    """What a recipe run produced."""

    recipe: str
    budget: Budget
    package: Path
    runs: list[Path]
    preprocessed: Path
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def fold_splits(prepared: PreparedData, num_folds: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """``(train, val)`` ids per fold: the explicit validation cases as one split, else ``num_folds`` folds of the
    pool (fewer when the pool is smaller), else (one case) training on it without validation."""
    from kidneytumorseg_training.splits import fold_split, make_folds

    if prepared.val_cases:
        return [(list(prepared.train_pool), list(prepared.val_cases))]
    pool = prepared.train_pool
    folds = min(num_folds, len(pool))
    if folds < 2:
        LOGGER.warning("Only %d training case: training on it without validation.", len(pool))
        return [(list(pool), [])]
    if folds < num_folds:
        LOGGER.warning("%d training cases: %d folds instead of %d.", len(pool), folds, num_folds)
    splits = make_folds(pool, num_folds=folds, seed=seed)
    return [fold_split(splits, fold) for fold in range(folds)]


def _choose_folds(requested: Sequence[int] | None, resolved: ResolvedRecipe, available: int) -> list[int]:
    folds = list(requested) if requested else list(resolved.default_folds)
    bad = [fold for fold in folds if not 0 <= fold < available]
    if bad:
        raise RecipeError(f"Folds {bad} do not exist: the training cases make {available} fold(s) (0.."
                          f"{available - 1}).")
    if len(set(folds)) != len(folds):
        raise RecipeError(f"Folds {folds} repeat; give each fold once.")
    return folds


def _export_target(work: Path, export_dir: str | os.PathLike[str] | None, name: str, version: str) -> Path:
    root = Path(export_dir) if export_dir is not None else work / "packages"
    return root / name / version


def run_recipe(recipe: Recipe, data: str | os.PathLike[str], work: str | os.PathLike[str],
               budget: str | float | Budget = "cpu", *, train_cases: Sequence[str] | None = None,
               val_cases: Sequence[str] | None = None, folds: Sequence[int] | None = None, seed: int = 0,
               threads: int | None = None, workers: int = 1, jobs: int = 2, device: str = "auto",
               precision: str = "auto", export_dir: str | os.PathLike[str] | None = None,
               model_name: str | None = None, model_version: str = DEFAULT_VERSION,
               overwrite: bool = False, report: bool = True) -> RecipeRun:
    """Plan, preprocess, train ``folds`` (default: the recipe's at this budget) and export one package.

    The package goes to ``export_dir/<model_name>/<model_version>`` (a model store's layout) when ``export_dir``
    is given, else to ``work/packages/...``; an existing package in ``export_dir`` is replaced only with
    ``overwrite``. Each fold trains with seed ``seed + fold``; ``report`` writes each finished run's
    ``report.png`` / ``report.md``.
    """
    from kidneytumorseg_training.export import export_package
    from kidneytumorseg_training.report import write_training_report
    from kidneytumorseg_training.trainer import train

    work = Path(work)
    budget = Budget.parse(budget)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    prepared = prepare_data(recipe, data, work, train_cases=train_cases, val_cases=val_cases, jobs=jobs)
    seconds["preprocessing"] = round(time.perf_counter() - started, 1)
    resolved = recipe.resolve(budget, prepared.target_spacing)
    splits = fold_splits(prepared, recipe.num_folds, seed=0)
    chosen = _choose_folds(folds, resolved, len(splits))
    root = work / "runs" / recipe.name / budget.label
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "splits.json", json.dumps([{"train": t, "val": v} for t, v in splits], indent=1) + "\n")
    training = resolved.training
    LOGGER.info("%s at budget %s (%g): patch %s, batch %d, %d base features, %d epochs x %d iterations, folds %s",
                recipe.name, budget.name, budget.fraction, training["patch_size"], training["batch_size"],
                resolved.base_features, training["epochs"], training["iterations_per_epoch"], chosen)
    run_dirs = []
    for fold in chosen:
        train_ids, val_ids = splits[fold]
        run_dir = root / f"fold{fold}"
        config = resolved.training_config(
            str(prepared.folder.resolve()), train_ids, val_ids, seed=seed + fold,
            name=f"{recipe.name}-{budget.label}-fold{fold}", num_workers=workers, threads=threads, device=device,
            precision=precision)
        LOGGER.info("Training fold %d (%d training, %d validation cases) in %s", fold, len(train_ids),
                    len(val_ids), run_dir)
        fold_started = time.perf_counter()
        result = train(config, run_dir)
        seconds[f"fold{fold}"] = round(time.perf_counter() - fold_started, 1)
        if report and result.epochs_done >= config.epochs:
            write_training_report(run_dir)
        run_dirs.append(run_dir)
    name = model_name or recipe.name
    target = _export_target(work, export_dir, name, model_version)
    if target.exists() and export_dir is not None and not overwrite:
        raise RecipeError(f"{target} already exists; choose another --model-version or allow overwriting it.")
    settings = resolved.to_dict()
    provenance = {
        "recipe": recipe.name, "paper": recipe.paper, "budget": budget.to_dict(), "data": os.path.abspath(data),
        "train_cases": len(prepared.train_pool), "val_cases": len(prepared.val_cases), "folds": chosen,
        "runs": [str(run) for run in run_dirs], "training_seconds": seconds, "settings": settings,
    }
    package = export_package(
        run_dirs, target, name=name, version=model_version, member_names=[run.name for run in run_dirs],
        inference=resolved.inference, postprocessing=resolved.postprocessing, provenance=provenance,
        description=f"{recipe.name} at budget {budget.name}: {recipe.summary}", overwrite=True)
    seconds["total"] = round(time.perf_counter() - started, 1)
    LOGGER.info("Exported %s@%s (%d member(s)) to %s in %.0f s", name, model_version, len(run_dirs), package,
                seconds["total"])
    return RecipeRun(recipe.name, budget, Path(package), run_dirs, prepared.folder, settings, seconds)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=1) + "\n"
