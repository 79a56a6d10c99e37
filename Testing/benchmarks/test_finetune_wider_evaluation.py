"""benchmarks/finetune_wider_evaluation.py: parent and fine-tuned versions scored case by case in two domains."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import finetune_wider_evaluation as wider
import pytest

from kidneytumorseg.evaluation import CaseResult
from kidneytumorseg.metrics import CaseMetrics

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic"
PACKAGE = Path(__file__).resolve().parents[2] / "KidneyTumorSeg" / "Resources" / "Models" / "kits-demo" / "1.0.0"


def _result(case: str, tumor: float) -> CaseResult:
    return CaseResult(case, CaseMetrics(dice={"tumor": tumor}, surface_dice={}, hd95_mm={}, volume_pred_ml={},
                                        volume_ref_ml={}))


def test_paired_changes_are_per_case_and_refuse_other_cases():
    before = [_result("case_00002", 0.5), _result("case_00007", 0.2)]
    after = [_result("case_00002", 0.75), _result("case_00007", 0.1)]
    assert wider.paired_changes(before, after, "tumor") == pytest.approx([0.25, -0.1])
    with pytest.raises(ValueError, match="same cases"):
        wider.paired_changes(before, list(reversed(after)), "tumor")


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_cases():
    assert wider.bootstrap_interval([0.03] * 7) == pytest.approx((0.03, 0.03))
    low, high = wider.bootstrap_interval([0.0, 1.0] * 5)
    assert 0.1 < low < 0.5 < high < 0.9
    wide_low, wide_high = low, high
    low, high = wider.bootstrap_interval([0.0, 1.0] * 50)
    assert wide_low < low < 0.5 < high < wide_high
    with pytest.raises(ValueError):
        wider.bootstrap_interval([])


def test_goal_needs_the_shifted_gain_and_at_most_the_allowed_original_loss():
    assert wider.goal_met(0.10, -0.02, -0.02)
    assert not wider.goal_met(0.099, 0.0, 0.0)
    assert not wider.goal_met(0.2, -0.021, 0.0)
    assert not wider.goal_met(0.2, 0.0, -0.021)


def test_the_same_model_as_parent_and_version_changes_nothing_averaged_or_not(tmp_path, monkeypatch, capsys):
    masks = tmp_path / "masks" / "case_00112"
    masks.mkdir(parents=True)
    shutil.copy(FIXTURES / "case_00112" / "segmentation.nii.gz", masks)
    monkeypatch.setattr(sys, "argv", [
        "finetune_wider_evaluation.py", "--masks", str(masks.parent), "--original", str(FIXTURES),
        "--parent", str(PACKAGE), "--tuned", f"same={PACKAGE}", "--shift", "hyperenhancing-tumor", "--skip", "0",
        "--work", str(tmp_path / "work"), "--csv-dir", str(tmp_path / "csv"), "--threads", "2",
        "--fractions", "1,0.5"])
    wider.main()
    out = capsys.readouterr().out
    assert (tmp_path / "work" / "shifted_hyperenhancing-tumor" / "case_00112" / "imaging.nii.gz").is_file()
    rows = [line for line in out.splitlines() if line.startswith("| same |")]
    averaged = [line for line in out.splitlines() if line.startswith("| same a=0.5 |")]
    assert len(rows) == len(averaged) == 6  # two domains x three regions
    assert all("| +0.000 | +0.000 .. +0.000 | 0 |" in row for row in rows + averaged)
    assert out.count("goal NOT met") == 2
    assert (tmp_path / "work" / "averaged" / "same-0.5" / "model.json").is_file()
    for name in ("parent-shifted", "parent-original", "same-shifted", "same-original", "same-0.5-original"):
        with open(tmp_path / "csv" / f"{name}.csv", newline="") as stream:
            assert [row["case"] for row in csv.DictReader(stream)] == ["case_00112"]
    # the original-domain kidneys are found: the rows hold real scores, not placeholders
    kidney = next(row for row in rows if "| original | kidney_and_mass |" in row)
    assert float(kidney.split("|")[4]) > 0.8


def test_a_malformed_tuned_argument_is_refused():
    with pytest.raises(Exception, match="LABEL=MODEL"):
        wider._tuned("just-a-path")
    with pytest.raises(Exception, match="another label"):  # its scores would overwrite the parent's
        wider._tuned("parent=some/folder")
