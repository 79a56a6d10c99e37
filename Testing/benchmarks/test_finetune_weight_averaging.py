"""benchmarks/finetune_weight_averaging.py: the sweep over a finished fine-tuning run, parent row to tuned row."""

from __future__ import annotations

import sys
from pathlib import Path

import finetune_weight_averaging
import pytest
from tiny_models import write_shifted_copy

from kidneytumorseg.model_package import ModelPackage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic"
PARENT = Path(__file__).resolve().parents[2] / "KidneyTumorSeg" / "Resources" / "Models" / "kits-demo" / "1.0.0"


def _fake_finetuned(work: Path) -> None:
    """kits-demo 1.0.1 in --work's store: 1.0.0 with every segmenter weight shifted (a ruined network), as if
    fine-tuned on the fixture case_00161 with case_00112 held out."""
    provenance = {"data": "synthetic", "corrections": str(FIXTURES),
                  "corrections_cases": {"train": ["case_00161"], "holdout": ["case_00112"]}}
    write_shifted_copy(ModelPackage.load(PARENT), work / "store" / "kits-demo" / "1.0.1", "1.0.1", 0.5, provenance)


def test_the_parent_row_scores_the_parent_and_the_last_row_the_fine_tuned_weights(monkeypatch, capsys, tmp_path):
    work = tmp_path / "work"
    _fake_finetuned(work)
    monkeypatch.setattr(sys, "argv", ["finetune_weight_averaging.py", "--masks", str(FIXTURES), "--original",
                                      str(FIXTURES), "--parent", "kits-demo@1.0.0", "--work", str(work),
                                      "--fractions", "0,1", "--shifted-cases", "0", "--original-cases", "1"])
    finetune_weight_averaging.main()
    out = capsys.readouterr().out
    assert "fine-tuned kits-demo@1.0.1" in out and "original held-out ['case_00112']" in out
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| fraction")}
    assert set(rows) == {"0", "1"}
    assert all(cell.endswith("(+0.000)") for cell in rows["0"])
    assert float(rows["0"][0].split()[0]) > 0.8  # the parent finds the case's kidneys
    assert float(rows["1"][0].split()[0]) < float(rows["0"][0].split()[0]) - 0.1  # the ruined weights do not
    assert (work / "averaged" / "0" / "model.json").is_file()


def test_a_work_folder_without_a_fine_tuned_version_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["finetune_weight_averaging.py", "--masks", str(FIXTURES), "--original",
                                      str(FIXTURES), "--parent", "kits-demo@1.3.0", "--work", str(tmp_path)])
    with pytest.raises(SystemExit, match="finetune_shifted_domain.py"):
        finetune_weight_averaging.main()
