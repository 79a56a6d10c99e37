"""The data side of a recipe run: case lists, the recipe's preprocessing plan (shared by recipes that preprocess
alike, planned from the data only when the recipe asks), resumable preprocessing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from recipe_cases import write_tiny_kits_dataset

from kidneytumorseg_training.datasets import DatasetError
from kidneytumorseg_training.planning import (
    PlansError,
    foreground_normalization,
    planned_target_spacing,
    validate_plans,
)
from kidneytumorseg_training.recipes import RecipeError, get_recipe
from kidneytumorseg_training.recipes.preparation import (
    find_cases,
    prepare_data,
    preprocessed_folder,
    preprocessing_plan,
    read_case_ids,
)


def test_case_lists_from_files_strings_and_lists(tmp_path):
    listing = tmp_path / "pool.txt"
    listing.write_text("# the training pool\ncase_00002\ncase_00001, case_00003\n\ncase_00002  # again\n")
    assert read_case_ids(listing) == ["case_00002", "case_00001", "case_00003"]
    assert read_case_ids(str(listing)) == ["case_00002", "case_00001", "case_00003"]
    assert read_case_ids("case_00001,case_00004") == ["case_00001", "case_00004"]
    assert read_case_ids(["a", "b", "a"]) == ["a", "b"]
    assert read_case_ids(None) is None
    with pytest.raises(RecipeError, match="no such case list"):
        read_case_ids(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(RecipeError, match="No case ids"):
        read_case_ids(tmp_path / "empty.txt")


def test_validation_cases_leave_the_pool_and_may_not_overlap_it(tmp_path):
    data = write_tiny_kits_dataset(tmp_path / "data")
    pool, val = find_cases(data, None, ["case_00161"])
    assert [c.case_id for c in pool] == ["case_00112"] and [c.case_id for c in val] == ["case_00161"]
    with pytest.raises(DatasetError, match="both"):
        find_cases(data, ["case_00112", "case_00161"], ["case_00161"])
    with pytest.raises(DatasetError, match="case_09999"):
        find_cases(data, ["case_09999"], None)


def test_plans_are_shared_by_recipes_that_preprocess_alike():
    plain, residual = (preprocessing_plan(get_recipe(n), "/data", None)
                       for n in ("isensee2019-plain", "isensee2019-residual"))
    assert plain == residual
    assert plain["target_spacing"] == [3.22, 1.62, 1.62] and plain["image_interpolation"] == "bspline"
    zang = preprocessing_plan(get_recipe("zang2021-kits21"), "/data", None)
    assert zang["label_interpolation"] == "nearest"
    folder = preprocessed_folder(Path("/work"), zang)
    assert folder.parent.name == "preprocessed" and folder.name.startswith("1.99x1.99x1.99-percentile_zscore-bspline-")
    assert preprocessed_folder(folder.parent.parent, plain) != folder


def test_data_planned_recipes_take_spacing_and_normalisation_from_the_fingerprint(fingerprint):
    recipe = get_recipe("zhao2019-msunet")
    with pytest.raises(RecipeError, match="fingerprint"):
        preprocessing_plan(recipe, "/data", None)
    plans = preprocessing_plan(recipe, "/data", fingerprint)
    assert plans["target_spacing"] == pytest.approx(planned_target_spacing(fingerprint))
    assert plans["normalization"] == foreground_normalization(fingerprint)
    assert plans["fingerprint"]["num_cases"] == 2


def test_label_interpolation_must_be_known():
    plans = preprocessing_plan(get_recipe("zang2021-kits21"), "/data", None)
    with pytest.raises(PlansError, match="label_interpolation"):
        validate_plans({**plans, "label_interpolation": "cubic"})


def test_preprocessing_is_cached_and_resumed(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = write_tiny_kits_dataset(tmp_path / "data")
    recipe = get_recipe("zhao2019-msunet")
    first = prepare_data(recipe, data, tmp_path / "work", jobs=1)
    assert first.train_pool == ["case_00112", "case_00161"] and first.val_cases == []
    image = first.folder / "case_00112.image.npy"
    stamp = image.stat().st_mtime_ns
    caplog.clear()
    again = prepare_data(recipe, data, tmp_path / "work", jobs=1)
    assert again.folder == first.folder and image.stat().st_mtime_ns == stamp
    assert "cached fingerprint" in caplog.text and "reused 2" in caplog.text


def test_a_case_that_cannot_be_preprocessed_is_left_out_by_name(tmp_path, caplog):
    data = write_tiny_kits_dataset(tmp_path / "data")
    (data / "case_00161" / "imaging.nii.gz").write_bytes(b"not a nifti file")
    prepared = prepare_data(get_recipe("zang2021-kits21"), data, tmp_path / "work", jobs=1)
    assert prepared.train_pool == ["case_00112"]
    assert "Left out case_00161" in caplog.text
