"""benchmarks/tumor_dice_by_phase.py: evaluate_model's table joined with each case's phase and contrast."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from tumor_dice_by_phase import phase_table, read_tumor_dice


def _write_mask(folder, tumor_voxels: int) -> None:
    """A mask at 2 x 2 x 2.5 mm (10 ul voxels) with ``tumor_voxels`` tumor voxels and some kidney and cyst."""
    labels = np.zeros((40, 40, 40), np.uint8)
    labels.reshape(-1)[:tumor_voxels] = 2
    labels[-2:] = 1
    labels[-3] = 3
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((2.0, 2.0, 2.5))
    sitk.WriteImage(image, str(folder / "segmentation.nii.gz"))


def test_cases_are_grouped_by_phase_with_their_contrast_and_by_tumor_size(tmp_path):
    for case, phase, kidney, tumor, voxels in (("case_00002", "unenhanced", 30.0, 31.0, 500),
                                              ("case_00007", "nephrographic", 180.0, 80.0, 2000),
                                              ("case_00012", "corticomedullary", 200.0, 100.0, 20000)):
        (tmp_path / case).mkdir()
        (tmp_path / case / "synthetic.json").write_text(json.dumps(
            {"phase": phase, "tissue_hu": {"kidney": kidney, "tumor": tumor}}))
        _write_mask(tmp_path / case, voxels)
    evaluation = tmp_path / "eval.md"
    evaluation.write_text("# header\n| case | kidney_and_mass | mass | tumor | seconds |\n|---|---|---|---|---|\n"
                          "| case_00002 | 0.9 | 0.2 | 0.1 | 3.0 |\n| case_00007 | 0.9 | 0.8 | 0.7 | 3.0 |\n"
                          "| case_00012 | 0.9 | 0.6 | 0.5 | 3.0 |\n\nregion  Dice mean\n")
    dice = read_tumor_dice(evaluation)
    assert dice == {"case_00002": 0.1, "case_00007": 0.7, "case_00012": 0.5}
    lines = phase_table(tmp_path, dice)
    assert "| case_00007 | nephrographic | 180.0 | 80.0 | 100.0 | 20.0 | 0.700 |" in lines
    assert any(line.startswith("unenhanced") and line.endswith("0.100") for line in lines)
    assert any(line.startswith("all enhanced") and "2 case(s)" in line and line.endswith("0.600") for line in lines)
    sizes = [" ".join(line.split()) for line in lines if line.startswith("tumor ")]
    assert sizes == ["tumor 0-10 ml 1 case(s) mean tumor Dice 0.100",
                     "tumor 10-100 ml 1 case(s) mean tumor Dice 0.700",
                     "tumor >= 100 ml 1 case(s) mean tumor Dice 0.500"]


def test_a_file_without_the_table_is_refused(tmp_path):
    evaluation = tmp_path / "other.md"
    evaluation.write_text("nothing here\n")
    with pytest.raises(SystemExit, match="evaluate_model.py"):
        read_tumor_dice(evaluation)
