"""Which test cases an earlier, killed predict run finished (equal_budget/resume.py)."""

from __future__ import annotations

import json

from equal_budget.resume import finished_cases, mark_weights, remaining_cases, weights_fingerprint
from fake_runs import tiny_package

LOG = "\n".join([
    "$ kidneytumorseg predict ...",
    json.dumps({"type": "progress", "case": "case_00001", "stage": "member 1/1", "fraction": 0.5}),
    json.dumps({"type": "result", "case": "case_00001", "seconds": 12.5}),
    json.dumps({"type": "result", "case": "case_00002", "seconds": 7.0}),
    "{broken",
])


def test_cases_with_a_label_map_and_the_same_weights_are_finished(tmp_path):
    predictions = tmp_path / "predictions"
    mark_weights(predictions, "abc")
    (predictions / "case_00001.nii.gz").write_bytes(b"labels")  # case_00002's file was never written
    assert finished_cases(LOG, predictions, "abc") == {"case_00001": 12.5}
    assert remaining_cases(["case_00001", "case_00002", "case_00003"], {"case_00001": 12.5}) == [
        "case_00002", "case_00003"]


def test_other_or_unknown_weights_finish_nothing(tmp_path):
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    (predictions / "case_00001.nii.gz").write_bytes(b"labels")
    assert finished_cases(LOG, predictions, "abc") == {}  # no marker: predicted before this was recorded
    mark_weights(predictions, "xyz")
    assert finished_cases(LOG, predictions, "abc") == {}


def test_the_fingerprint_is_the_members_sha256(tmp_path):
    package = tiny_package(tmp_path / "tiny")
    fingerprint = weights_fingerprint(package)
    assert all(len(part) == 64 for part in fingerprint.split(","))
    assert fingerprint == weights_fingerprint(package)


def test_new_weights_clear_the_old_label_maps(tmp_path):
    predictions = tmp_path / "predictions"
    mark_weights(predictions, "old")
    (predictions / "case_00001.nii.gz").write_bytes(b"old labels")
    mark_weights(predictions, "old")  # the same weights: kept
    assert (predictions / "case_00001.nii.gz").is_file()
    mark_weights(predictions, "new")  # a new run killed before case_00001 must not find the old file
    assert not (predictions / "case_00001.nii.gz").exists()
    assert finished_cases(LOG, predictions, "new") == {}
