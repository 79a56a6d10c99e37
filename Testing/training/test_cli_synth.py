"""The kidneytumorseg-train command line, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg_training.cli.main import main

SCRIPT = Path(sys.executable).with_name("kidneytumorseg-train")


def test_synth_writes_ct_mask_and_preview(tmp_path, masks_3mm_dir):
    mask = masks_3mm_dir / "case_00119" / "segmentation.nii.gz"
    code = main(["synth", str(mask), "-o", str(tmp_path / "ct.nii.gz"), "--seed", "4", "--spacing", "4,4,6",
                 "--mask-output", str(tmp_path / "mask.nii.gz"), "--preview", str(tmp_path / "p.png")])
    assert code == 0
    ct, resampled = (sitk.ReadImage(str(tmp_path / name)) for name in ("ct.nii.gz", "mask.nii.gz"))
    assert ct.GetSize() == resampled.GetSize() and ct.GetSpacing() == resampled.GetSpacing()
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_the_installed_command_reports_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 4, 4), 9, dtype=np.uint8)), str(bad))
    result = subprocess.run([str(SCRIPT), "synth", str(bad), "-o", str(tmp_path / "ct.nii.gz")],
                            capture_output=True, text=True, env=os.environ | {"PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2
    assert "error:" in result.stderr and str(bad) in result.stderr and "outside 0..3" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ct.nii.gz").exists()


def test_a_bad_spacing_is_explained(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["synth", "m.nii.gz", "-o", str(tmp_path / "x.nii.gz"), "--spacing", "1.5,abc"])
    assert exit_.value.code == 2
    assert "three positive numbers" in capsys.readouterr().err
