"""`kidneytumorseg-train preprocess`: plans and preprocesses a dataset folder, resumes, names bad cases."""

from __future__ import annotations

import json
import logging
import shutil

from fixture_cases import SAMPLE_DIR

from kidneytumorseg_training.cli.main import main
from kidneytumorseg_training.sampling import complete_case_ids


def test_preprocess_plans_then_resumes(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    dataset = tmp_path / "dataset"
    shutil.copytree(SAMPLE_DIR, dataset)
    out = tmp_path / "pre"
    assert main(["preprocess", str(dataset), "-o", str(out), "--spacing", "6,6,6", "--jobs", "1"]) == 0
    plans = json.loads((out / "plans.json").read_text())
    assert plans["target_spacing"] == [6.0, 6.0, 6.0]  # given as LR,AP,SI, stored SI,AP,LR
    assert complete_case_ids(out) == ["case_00112", "case_00161"]
    before = (out / "case_00112.image.npy").stat().st_mtime_ns
    caplog.clear()
    assert main(["preprocess", str(dataset), "-o", str(out), "--jobs", "1"]) == 0
    assert (out / "case_00112.image.npy").stat().st_mtime_ns == before
    assert "reused 2" in caplog.text


def test_bad_case_stops_or_is_skipped_by_name(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO)
    dataset = tmp_path / "dataset"
    shutil.copytree(SAMPLE_DIR, dataset)
    (dataset / "case_00161" / "imaging.nii.gz").write_bytes(b"not a nifti file")
    out = tmp_path / "pre"
    assert main(["preprocess", str(dataset), "-o", str(out), "--spacing", "6,6,6", "--jobs", "1"]) == 2
    assert "error: Case case_00161" in capsys.readouterr().err
    caplog.clear()
    assert main(["preprocess", str(dataset), "-o", str(out), "--jobs", "1", "--skip-bad"]) == 0
    assert complete_case_ids(out) == ["case_00112"]
    assert "skipped case_00161" in caplog.text
