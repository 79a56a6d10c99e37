"""The ``kidneytumorseg evaluate`` command, through ``main()`` and through the installed console script."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kidneytumorseg.cli.main import USER_ERROR_EXIT_CODE, main
from kidneytumorseg.evaluation import DEFAULT_CSV_NAME


@pytest.fixture
def predictions(tmp_path: Path, kits_crops_dir: Path) -> Path:
    """Two of the three real crops as predictions (perfect), so the third is reported missing."""
    folder = tmp_path / "predictions"
    for case in ("case_00010", "case_00021"):
        (folder / case).mkdir(parents=True)
        shutil.copy(kits_crops_dir / case / "segmentation.nii.gz", folder / case / "prediction.nii.gz")
    return folder


def test_evaluate_writes_default_csv_and_prints_the_summary_table(predictions, kits_crops_dir, capsys) -> None:
    assert main(["evaluate", str(predictions), str(kits_crops_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["region", "Dice", "mean", "Dice", "median", "SD", "mean", "SD", "median"] + [
        "HD95",
        "mean",
        "HD95",
        "median",
    ]
    assert lines[2].split() == ["kidney_and_mass", "1.0000", "1.0000", "1.0000", "1.0000", "0.00", "0.00"]
    assert lines[4].split()[0] == "tumor"
    assert "KiTS ranking: mean Dice 1.0000, mean surface Dice 1.0000" in out
    assert "cases evaluated: 2" in out
    assert "without a prediction (not in the averages): 1: case_00051" in out
    with (predictions / DEFAULT_CSV_NAME).open(newline="") as stream:
        assert [row["case"] for row in csv.DictReader(stream)] == ["case_00010", "case_00021"]


def test_evaluate_writes_the_csv_where_asked(predictions: Path, kits_crops_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "reports" / "kits.csv"
    argv = ["evaluate", str(predictions), str(kits_crops_dir), "--csv", str(target), "--no-progress"]
    assert main(argv) == 0
    assert target.is_file()
    assert not (predictions / DEFAULT_CSV_NAME).exists()


def test_user_error_gives_one_error_line_and_exit_code_2(tmp_path: Path, kits_crops_dir: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", str(empty), str(kits_crops_dir)]) == USER_ERROR_EXIT_CODE == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: No predictions found in {empty}")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_bad_jobs_value_is_a_user_error(predictions: Path, kits_crops_dir: Path, capsys) -> None:
    assert main(["evaluate", str(predictions), str(kits_crops_dir), "--jobs", "0"]) == 2
    assert "error: --jobs must be at least 1" in capsys.readouterr().err


def test_missing_subcommand_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main([])
    assert raised.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def installed_script() -> str:
    script = Path(sys.executable).parent / "kidneytumorseg"
    found = str(script) if script.exists() else shutil.which("kidneytumorseg")
    if found is None:
        pytest.fail("The kidneytumorseg script is not installed: run `pip install -e . -c constraints.txt`.")
    return found


def test_installed_script_end_to_end(predictions: Path, kits_crops_dir: Path, tmp_path: Path) -> None:
    script = installed_script()
    ok = subprocess.run(
        [script, "evaluate", str(predictions), str(kits_crops_dir), "--csv", str(tmp_path / "e.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "cases evaluated: 2" in ok.stdout
    assert (tmp_path / "e.csv").is_file()
    assert "WARNING: 1 reference case(s) have no prediction" in ok.stderr  # logging goes to stderr

    failed = subprocess.run(
        [script, "evaluate", str(tmp_path / "nowhere"), str(kits_crops_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert failed.stderr.startswith("error: The prediction folder")
    assert "nowhere does not exist" in failed.stderr
    assert "Traceback" not in failed.stderr
