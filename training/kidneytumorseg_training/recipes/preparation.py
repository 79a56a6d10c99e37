"""The data side of a recipe run: which cases, the dataset fingerprint (only when the recipe needs one), the
recipe's preprocessing plan and the preprocessed cases, all cached in the work folder.

Recipes with the same preprocessing (spacing, normalisation, interpolation) share one preprocessed folder,
``WORK/preprocessed/<spacing>-<scheme>-<hash>``: the three ``isensee2019-*`` recipes preprocess once, and so do
all budgets of a recipe. Its ``plans.json`` therefore holds a neutral network and patch; each run's own network,
patch and batch are in its ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.networks import plan_network
from kidneytumorseg.networks.planning import _divisible_patch
from kidneytumorseg_training.datasets import DatasetError, TrainingCase, find_training_cases
from kidneytumorseg_training.planning import (
    FORMAT_VERSION,
    NUM_CLASSES,
    compute_fingerprint,
    foreground_normalization,
    planned_target_spacing,
    validate_plans,
)
from kidneytumorseg_training.preprocessing import preprocess_dataset
from kidneytumorseg_training.recipes.base import Recipe, RecipeError

LOGGER = logging.getLogger(__name__)
NEUTRAL_PATCH = (64, 64, 64)  # the shared folder's placeholder patch (runs bring their own)


@dataclass
class PreparedData:
    """What training needs from the data side of a run."""

    folder: Path
    plans: dict[str, Any]
    train_pool: list[str]
    val_cases: list[str]

    @property
    def target_spacing(self) -> list[float]:
        return list(self.plans["target_spacing"])


def read_case_ids(value: str | os.PathLike[str] | Sequence[str] | None) -> list[str] | None:
    """Case ids from a file (one per line, or separated by commas or spaces; ``#`` starts a comment), from a
    comma-separated string, or from a list; None stays None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        ids = [str(v).strip() for v in value]
    else:
        text = str(value)
        path = Path(text)
        if path.is_file():
            text = "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())
        elif os.sep in text or text.endswith((".txt", ".csv")):
            raise RecipeError(f"{text}: no such case list file. Give a file with one case id per line, or the ids "
                              f"separated by commas.")
        ids = [part.strip() for part in text.replace(",", " ").split()]
    ids = [i for i in ids if i]
    if not ids:
        raise RecipeError(f"No case ids in {value!r}; give a file with one id per line or ids separated by commas.")
    return list(dict.fromkeys(ids))


def find_cases(data: str | os.PathLike[str], train_cases: Sequence[str] | None,
               val_cases: Sequence[str] | None) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """The training pool (all cases of ``data`` that are not validation cases, or ``train_cases``) and the
    explicit validation cases (maybe none)."""
    val = find_training_cases(data, val_cases) if val_cases else []
    val_ids = {case.case_id for case in val}
    if train_cases:
        overlap = sorted(val_ids & set(train_cases))
        if overlap:
            raise DatasetError(f"Cases {overlap[:5]} are in both --train-cases and --val-cases; give each case once.")
        pool = find_training_cases(data, train_cases)
    else:
        pool = [case for case in find_training_cases(data) if case.case_id not in val_ids]
    if not pool:
        raise DatasetError(f"No training case left in {data} once the validation cases are set aside.")
    return pool, val


def _digest(value: Any, length: int = 10) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


def dataset_fingerprint(cases: Sequence[TrainingCase], work: Path, jobs: int) -> dict[str, Any]:
    """The fingerprint of ``cases`` (engine planning), computed once and cached under ``work/fingerprints``."""
    key = _digest([[c.case_id, str(Path(c.image).resolve())] for c in cases])
    path = work / "fingerprints" / f"{key}.json"
    if path.is_file():
        LOGGER.info("Using the cached fingerprint of %d case(s) (%s)", len(cases), path)
        return json.loads(path.read_text(encoding="utf-8"))
    LOGGER.info("Fingerprinting %d case(s) (spacings, foreground intensities)", len(cases))
    fingerprint = compute_fingerprint(cases, jobs=jobs)
    write_text_atomic(path, json.dumps(fingerprint, indent=1))
    return fingerprint


def preprocessing_plan(recipe: Recipe, dataset: str, fingerprint: dict[str, Any] | None) -> dict[str, Any]:
    """The plans.json of the recipe's preprocessed folder: its spacing, normalisation and interpolation; the
    network and patch are neutral placeholders (shared folder)."""
    needs_data = recipe.target_spacing is None or recipe.normalization is None
    if needs_data and fingerprint is None:
        raise RecipeError(f"Recipe {recipe.name} plans its spacing or normalisation from the data: give a fingerprint.")
    spacing = list(recipe.target_spacing) if recipe.target_spacing is not None else planned_target_spacing(fingerprint)
    spacing = [round(float(s), 6) for s in spacing]
    normalization = dict(recipe.normalization) if recipe.normalization is not None else \
        foreground_normalization(fingerprint)
    patch = _divisible_patch(NEUTRAL_PATCH, spacing, 4, round_up=True) or list(NEUTRAL_PATCH)
    network = plan_network(patch, spacing, num_classes=NUM_CLASSES, base_features=8, max_features=64).to_dict()
    kept = fingerprint if needs_data else {"note": "not needed: the recipe fixes spacing and normalisation"}
    return validate_plans({
        "format_version": FORMAT_VERSION, "name": "recipe-preprocessing", "dataset": dataset, "budget": "recipe",
        "target_spacing": spacing, "normalization": normalization,
        "image_interpolation": recipe.image_interpolation, "label_interpolation": recipe.label_interpolation,
        "patch_size": patch, "batch_size": 2, "network": network, "num_classes": NUM_CLASSES, "fingerprint": kept,
        "note": "Shared by the recipes with this preprocessing; each run's network, patch and batch are in its "
                "config.json.",
    })


def preprocessed_folder(work: Path, plans: dict[str, Any]) -> Path:
    """``work/preprocessed/<spacing>-<scheme>-<hash of the plan>``."""
    spacing = "x".join(f"{s:g}" for s in plans["target_spacing"])
    scheme = plans["normalization"]["scheme"]
    return work / "preprocessed" / f"{spacing}-{scheme}-{plans['image_interpolation']}-{_digest(plans, 8)}"


def prepare_data(recipe: Recipe, data: str | os.PathLike[str], work: str | os.PathLike[str], *,
                 train_cases: Sequence[str] | None = None, val_cases: Sequence[str] | None = None,
                 jobs: int = 2) -> PreparedData:
    """Find the cases, fingerprint them if the recipe needs it, plan and preprocess (resumable). A case that
    cannot be preprocessed (e.g. its kidney vanishes at the recipe's spacing) is left out with a warning."""
    work = Path(work)
    pool, val = find_cases(data, train_cases, val_cases)
    LOGGER.info("%s: %d training case(s)%s in %s", recipe.name, len(pool),
                f" and {len(val)} validation case(s)" if val else "", data)
    needs_data = recipe.target_spacing is None or recipe.normalization is None
    fingerprint = dataset_fingerprint(pool, work, jobs) if needs_data else None
    dataset = os.path.abspath(data)
    plans = preprocessing_plan(recipe, dataset, fingerprint)
    folder = preprocessed_folder(work, plans)
    LOGGER.info("Preprocessing into %s: spacing %s mm (SI,AP,LR), %s normalisation %s, %s images, %s labels",
                folder, plans["target_spacing"], plans["normalization"]["scheme"],
                json.dumps(plans["normalization"]), plans["image_interpolation"], plans["label_interpolation"])
    report = preprocess_dataset(pool + val, plans, folder, jobs=jobs, on_error="skip")
    LOGGER.info("Preprocessed %d case(s), reused %d, skipped %d", len(report.done), len(report.reused),
                len(report.skipped))
    for case_id, reason in report.skipped.items():
        LOGGER.warning("Left out %s: %s", case_id, reason)
    train_ids = [c.case_id for c in pool if c.case_id not in report.skipped]
    val_ids = [c.case_id for c in val if c.case_id not in report.skipped]
    if not train_ids:
        raise DatasetError(f"No training case could be preprocessed for {recipe.name} (see the warnings above).")
    return PreparedData(folder, plans, train_ids, val_ids)
