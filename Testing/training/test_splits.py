"""Cross-validation folds and hold-out splits: deterministic, complete, validated on load."""

from __future__ import annotations

import json

import pytest

from kidneytumorseg_training.splits import (
    SplitError,
    fold_split,
    holdout_split,
    load_splits,
    make_folds,
    save_splits,
)

CASES = [f"case_{i:05d}" for i in range(23)]


def test_folds_cover_every_case_once_and_are_sorted():
    splits = make_folds(CASES, num_folds=5, seed=0)
    assert len(splits) == 5
    val_cases = [case for fold in splits for case in fold["val"]]
    assert sorted(val_cases) == CASES  # each case in exactly one validation list
    for fold in splits:
        assert fold["train"] == sorted(fold["train"]) and fold["val"] == sorted(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == CASES
        assert len(fold["val"]) in (4, 5)


def test_folds_are_deterministic_and_ignore_input_order():
    assert make_folds(CASES, 5, seed=3) == make_folds(list(reversed(CASES)), 5, seed=3)
    assert make_folds(CASES, 5, seed=3) != make_folds(CASES, 5, seed=4)


@pytest.mark.parametrize(
    ("cases", "folds", "message"),
    [(CASES[:3], 5, "cannot fill 5 folds"), (CASES, 1, ">= 2"), (["a", "b", "a"], 2, "repeat")],
)
def test_make_folds_refuses_impossible_requests(cases, folds, message):
    with pytest.raises(SplitError, match=message):
        make_folds(cases, folds)


def test_save_and_load_round_trip(tmp_path):
    splits = make_folds(CASES, 4, seed=1)
    path = save_splits(splits, tmp_path / "splits.json")
    assert load_splits(path) == splits
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"train": [], "val": []}, "non-empty list"),
        ([{"train": ["a"]}], "keys 'train' and 'val'"),
        ([{"train": "a", "val": ["b"]}], "must be a list"),
        ([{"train": ["a", "a"], "val": ["b"]}], "repeat"),
        ([{"train": ["a"], "val": []}], "'val' is empty"),
        ([{"train": ["a", "b"], "val": ["b"]}], "both 'train' and 'val'"),
        ([{"train": ["a"], "val": ["b"]}, {"train": ["a"], "val": ["b"]}], "already a validation case of fold 0"),
    ],
)
def test_load_refuses_malformed_files(tmp_path, content, message):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SplitError, match=message):
        load_splits(path)


def test_load_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="make_folds"):
        load_splits(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(SplitError, match="not valid JSON"):
        load_splits(tmp_path / "broken.json")


def test_fold_split_and_out_of_range_folds():
    splits = make_folds(CASES, 5)
    train, val = fold_split(splits, 2)
    assert (train, val) == (splits[2]["train"], splits[2]["val"])
    for bad in (5, -1, "0"):
        with pytest.raises(SplitError, match="from 0 to 4"):
            fold_split(splits, bad)


def test_holdout_split_keeps_a_case_on_each_side():
    train, held = holdout_split(CASES, 0.2, seed=0)
    assert len(held) == 5 and sorted(train + held) == CASES and not set(train) & set(held)
    assert holdout_split(list(reversed(CASES)), 0.2, seed=0) == (train, held)
    assert [len(side) for side in holdout_split(["a", "b"], 0.01)] == [1, 1]
    assert [len(side) for side in holdout_split(["a", "b", "c"], 0.99)] == [1, 2]
    with pytest.raises(SplitError, match="at least 2 cases"):
        holdout_split(["a"], 0.5)
    with pytest.raises(SplitError, match="between 0 and 1"):
        holdout_split(CASES, 1.0)
