"""benchmarks/evaluate_model.py: a package segments held-out cases and is scored; --members picks the members."""

from __future__ import annotations

import sys
from pathlib import Path

import evaluate_model
import pytest

from kidneytumorseg.errors import KidneyTumorSegError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic"
PACKAGE = Path(__file__).resolve().parents[2] / "KidneyTumorSeg" / "Resources" / "Models" / "kits-demo" / "1.0.0"


def _run(monkeypatch, capsys, tmp_path, *extra: str) -> str:
    cases = tmp_path / "cases.txt"
    cases.write_text("case_00112")
    monkeypatch.setattr(sys, "argv", ["evaluate_model.py", str(FIXTURES), "--cases-file", str(cases),
                                      "--model", str(PACKAGE), "--quality", "fast", "--cascade", *extra])
    evaluate_model.main()
    return capsys.readouterr().out


def test_members_option_runs_only_the_named_member_and_scores_the_case(monkeypatch, capsys, tmp_path):
    out = _run(monkeypatch, capsys, tmp_path, "--members", "fold1")
    assert "members ['fold1']" in out
    row = next(line for line in out.splitlines() if line.startswith("| case_00112 |"))
    kidney_and_mass = float(row.split("|")[2])
    assert kidney_and_mass > 0.8  # the bundled model finds the sample's kidneys (0.937 in its model card)
    assert "cases evaluated: 1" in out
    cyst = row.split("|")[6].strip()  # the case has a small cyst: its Dice, whatever the model finds
    assert 0.0 <= float(cyst) <= 1.0
    assert "cyst (label 3 alone): 1 case(s) with a reference cyst" in out


def test_an_unknown_member_is_refused_by_name(monkeypatch, capsys, tmp_path):
    with pytest.raises(KidneyTumorSegError, match="fold9"):
        _run(monkeypatch, capsys, tmp_path, "--members", "fold9")
