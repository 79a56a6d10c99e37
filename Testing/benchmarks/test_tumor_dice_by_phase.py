"""benchmarks/tumor_dice_by_phase.py: evaluate_model's table joined with each case's phase and contrast."""

from __future__ import annotations

import json

import pytest
from tumor_dice_by_phase import phase_table, read_tumor_dice


def test_cases_are_grouped_by_phase_with_their_contrast(tmp_path):
    for case, phase, kidney, tumor in (("case_00002", "unenhanced", 30.0, 31.0),
                                      ("case_00007", "nephrographic", 180.0, 80.0),
                                      ("case_00012", "corticomedullary", 200.0, 100.0)):
        (tmp_path / case).mkdir()
        (tmp_path / case / "synthetic.json").write_text(json.dumps(
            {"phase": phase, "tissue_hu": {"kidney": kidney, "tumor": tumor}}))
    evaluation = tmp_path / "eval.md"
    evaluation.write_text("# header\n| case | kidney_and_mass | mass | tumor | seconds |\n|---|---|---|---|---|\n"
                          "| case_00002 | 0.9 | 0.2 | 0.1 | 3.0 |\n| case_00007 | 0.9 | 0.8 | 0.7 | 3.0 |\n"
                          "| case_00012 | 0.9 | 0.6 | 0.5 | 3.0 |\n\nregion  Dice mean\n")
    dice = read_tumor_dice(evaluation)
    assert dice == {"case_00002": 0.1, "case_00007": 0.7, "case_00012": 0.5}
    lines = phase_table(tmp_path, dice)
    assert "| case_00007 | nephrographic | 180.0 | 80.0 | 100.0 | 0.700 |" in lines
    assert any(line.startswith("unenhanced") and line.endswith("0.100") for line in lines)
    assert any(line.startswith("all enhanced") and "2 case(s)" in line and line.endswith("0.600") for line in lines)


def test_a_file_without_the_table_is_refused(tmp_path):
    evaluation = tmp_path / "other.md"
    evaluation.write_text("nothing here\n")
    with pytest.raises(SystemExit, match="evaluate_model.py"):
        read_tumor_dice(evaluation)
