"""Running a recipe: folds from the pool or an explicit validation set, a second run resumes instead of
retraining, exports into a model store without overwriting unless asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipe_cases import write_tiny_kits_dataset

from kidneytumorseg.model_package import ModelPackage
from kidneytumorseg_training.recipes import RecipeError, get_recipe
from kidneytumorseg_training.recipes.preparation import PreparedData
from kidneytumorseg_training.recipes.runner import _choose_folds, fold_splits, run_recipe

RECIPE = get_recipe("isensee2019-plain")


def _prepared(pool: list[str], val: list[str] | None = None) -> PreparedData:
    return PreparedData(Path("pre"), {"target_spacing": [1.0, 1.0, 1.0]}, pool, val or [])


def test_folds_follow_the_pool_or_the_validation_cases():
    pool = [f"case_{i:05d}" for i in range(7)]
    splits = fold_splits(_prepared(pool), 5)
    assert len(splits) == 5
    assert sorted(case for _, val in splits for case in val) == pool
    assert all(not set(train) & set(val) and len(train) + len(val) == 7 for train, val in splits)
    assert fold_splits(_prepared(pool), 5) == splits  # deterministic
    assert len(fold_splits(_prepared(pool[:3]), 5)) == 3
    assert fold_splits(_prepared(pool[:1]), 5) == [(pool[:1], [])]
    assert fold_splits(_prepared(pool, ["case_09999"]), 5) == [(pool, ["case_09999"])]


def test_fold_choice_defaults_to_the_paper_at_full_budget_and_refuses_missing_folds():
    assert _choose_folds(None, RECIPE.resolve("full"), 5) == [0, 1, 2, 3, 4]
    assert _choose_folds(None, RECIPE.resolve("cpu"), 5) == [0]
    assert _choose_folds([3, 1], RECIPE.resolve("cpu"), 5) == [3, 1]
    with pytest.raises(RecipeError, match="do not exist"):
        _choose_folds([2], RECIPE.resolve("cpu"), 2)
    with pytest.raises(RecipeError, match="repeat"):
        _choose_folds([0, 0], RECIPE.resolve("cpu"), 2)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_second_run_resumes_and_store_export_needs_overwrite(tmp_path):
    data = write_tiny_kits_dataset(tmp_path / "data")
    store = tmp_path / "models"
    options = dict(val_cases=["case_00161"], workers=0, threads=1, jobs=1, device="cpu", export_dir=store,
                   model_name="toy", model_version="0.1.0")
    run = run_recipe(RECIPE, data, tmp_path / "work", "smoke", **options)
    assert run.package == store / "toy" / "0.1.0" and (run.package / "model.json").is_file()
    assert run.runs == [tmp_path / "work" / "runs" / "isensee2019-plain" / "smoke" / "fold0"]
    assert (run.runs[0] / "report.md").is_file()
    package = ModelPackage.load(run.package)
    assert package.provenance["val_cases"] == 1 and package.provenance["train_cases"] == 1
    assert package.provenance["settings"]["budget"]["name"] == "smoke"
    checkpoint = run.runs[0] / "checkpoint_latest" / "model.safetensors"
    stamp = checkpoint.stat().st_mtime_ns
    with pytest.raises(RecipeError, match="already exists"):
        run_recipe(RECIPE, data, tmp_path / "work", "smoke", **options)
    again = run_recipe(RECIPE, data, tmp_path / "work", "smoke", overwrite=True, report=False, **options)
    assert checkpoint.stat().st_mtime_ns == stamp  # finished: nothing retrained
    assert ModelPackage.load(again.package).members[0].sha256 == package.members[0].sha256
