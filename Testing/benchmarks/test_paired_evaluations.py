"""benchmarks/paired_evaluations.py: two evaluate_model.py CSVs compared case by case."""

from __future__ import annotations

import csv

import pytest
from paired_evaluations import format_table, main, paired_rows, read_dice

COLUMNS = ("case", "dice_kidney_and_mass", "surface_dice_kidney_and_mass", "dice_mass", "dice_tumor")


def _write(path, rows) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for case, kidney, mass, tumor in rows:
            writer.writerow((case, kidney, 0.5, mass, tumor))


def test_one_rescued_case_and_small_losses_are_told_apart_from_a_gain_everywhere(tmp_path, capsys):
    cases = [f"case_{index:05d}" for index in range(10)]
    _write(tmp_path / "old.csv", [(case, 0.97, 0.0 if index == 0 else 0.8, 0.0 if index == 0 else 0.7)
                                  for index, case in enumerate(cases)])
    _write(tmp_path / "new.csv", [(case, 0.97, 0.9 if index == 0 else 0.78, 0.9 if index == 0 else 0.68)
                                  for index, case in enumerate(cases)])
    rows = {row["region"]: row for row in paired_rows(read_dice(tmp_path / "old.csv"), read_dice(tmp_path / "new.csv"))}
    tumor = rows["tumor"]
    assert tumor["mean_difference"] == pytest.approx((0.9 - 9 * 0.02) / 10)
    assert tumor["median_difference"] == pytest.approx(-0.02)
    assert (tumor["better"], tumor["worse"]) == (1, 9)
    assert tumor["low"] < tumor["mean_difference"] < tumor["high"]  # the bootstrap interval spans the mean
    assert rows["kidney_and_mass"]["mean_difference"] == pytest.approx(0.0)
    assert (rows["kidney_and_mass"]["better"], rows["kidney_and_mass"]["worse"]) == (0, 0)

    main([str(tmp_path / "old.csv"), str(tmp_path / "new.csv")])
    first = capsys.readouterr().out
    main([str(tmp_path / "old.csv"), str(tmp_path / "new.csv")])
    assert capsys.readouterr().out == first  # seeded: the same interval on every run
    assert "| tumor | 10 | 0.6300 | 0.7020 | +0.0720 | -0.0200 | 1 | 9 |" in first


def test_different_case_sets_and_wrong_files_are_refused_by_name(tmp_path):
    _write(tmp_path / "old.csv", [("case_00000", 0.9, 0.8, 0.7), ("case_00001", 0.9, 0.8, 0.7)])
    _write(tmp_path / "new.csv", [("case_00000", 0.9, 0.8, 0.7), ("case_00002", 0.9, 0.8, 0.7)])
    with pytest.raises(SystemExit, match="different cases.*case_00001, case_00002.*same --cases-file"):
        paired_rows(read_dice(tmp_path / "old.csv"), read_dice(tmp_path / "new.csv"))
    (tmp_path / "table.md").write_text("| case | tumor |\n")
    with pytest.raises(SystemExit, match="table.md has no case and dice_kidney_and_mass"):
        read_dice(tmp_path / "table.md")
    with pytest.raises(SystemExit, match="Cannot read .*missing.csv"):
        read_dice(tmp_path / "missing.csv")


def test_the_table_has_a_row_per_region():
    rows = paired_rows({"case_00000": dict.fromkeys(("kidney_and_mass", "mass", "tumor"), 0.5)},
                       {"case_00000": dict.fromkeys(("kidney_and_mass", "mass", "tumor"), 0.6)})
    table = format_table(rows, 0.01)
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == ["kidney_and_mass", "mass", "tumor"]
