"""benchmarks/cyst_component_filter.py: cyst components measured against the reference, the sweep's rows, the cache."""

from __future__ import annotations

import sys
from pathlib import Path

import cyst_component_filter
import numpy as np

from kidneytumorseg.labels import CYST, KIDNEY, TUMOR
from kidneytumorseg.predictor import Predictor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic"
PACKAGE = Path(__file__).resolve().parents[2] / "KidneyTumorSeg" / "Resources" / "Models" / "kits-demo" / "1.0.0"


def test_components_have_their_volume_and_whether_they_touch_a_reference_cyst():
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[1:5, 1:19, 1:19] = KIDNEY
    labels[2:4, 2:5, 2:5] = CYST  # 18 voxels, overlapping the reference cyst
    labels[2:3, 12:14, 12:14] = CYST  # 4 voxels, no reference cyst there
    reference = np.zeros_like(labels)
    reference[2:4, 4:7, 4:7] = CYST
    reference[2:3, 12:14, 12:14] = TUMOR
    found = sorted(cyst_component_filter.cyst_components(labels, reference, voxel_ml=0.5))
    assert found == [(2.0, False), (9.0, True)]
    assert cyst_component_filter.cyst_components(np.zeros_like(labels), reference, 0.5) == []


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| min")}


def test_sweep_scores_each_threshold_and_a_second_run_reads_the_cache(monkeypatch, capsys, tmp_path):
    cases, cache = tmp_path / "cases.txt", tmp_path / "cache"
    cases.write_text("case_00112")
    argv = ["cyst_component_filter.py", str(FIXTURES), "--cases-file", str(cases), "--model", str(PACKAGE),
            "--cascade", "--thresholds", "0,100000", "--cache", str(cache)]
    monkeypatch.setattr(sys, "argv", argv)
    cyst_component_filter.main()
    first = capsys.readouterr().out
    assert (cache / "case_00112.npz").is_file() and not list(cache.glob("*.partial*"))
    rows = _rows(first)
    assert set(rows) == {"0", "100000"}
    assert float(rows["0"][0]) > 0.8  # kidney_and_mass: the bundled model finds the case's kidneys
    assert rows["100000"][0] == rows["0"][0]  # relabelled cysts stay inside kidney_and_mass
    assert rows["100000"][5].startswith("0.000 (1)")  # the case has a cyst; no component survives 100 l
    assert rows["100000"][6] == "0" and rows["100000"][7] == "0 of 0"

    def refuse(*args, **kwargs):
        raise AssertionError("the cached label map should have been used")

    monkeypatch.setattr(Predictor, "segment", refuse)
    cyst_component_filter.main()
    assert _rows(capsys.readouterr().out) == rows
