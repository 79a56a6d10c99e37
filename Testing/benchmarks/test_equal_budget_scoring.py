"""Held-out predictions scored with our KiTS metrics, per region, with the per-case values kept."""

from __future__ import annotations

import shutil

import pytest
import SimpleITK as sitk
from equal_budget.scoring import score_predictions


def test_perfect_and_swapped_labels(kits_dataset, tmp_path):
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    shutil.copy(kits_dataset / "case_00001" / "segmentation.nii.gz", predictions / "case_00001.nii.gz")
    (predictions / "case_00001.seg.nrrd").write_text("ignored")
    reference = sitk.ReadImage(str(kits_dataset / "case_00002" / "segmentation.nii.gz"))
    swapped = sitk.ChangeLabel(reference, changeMap={2: 3, 3: 2})  # tumor <-> cyst: mass right, tumor wrong
    sitk.WriteImage(swapped, str(predictions / "case_00002.nii.gz"))
    scores = score_predictions(predictions, kits_dataset, ["case_00001", "case_00002"])
    assert scores["cases"] == 2
    assert scores["per_case"][0]["dice"] == pytest.approx({"kidney_and_mass": 1.0, "mass": 1.0, "tumor": 1.0})
    assert scores["per_case"][1]["dice"]["mass"] == pytest.approx(1.0)
    assert scores["per_case"][1]["dice"]["tumor"] == pytest.approx(0.0)
    assert scores["dice"]["tumor"] == pytest.approx(0.5)
    assert scores["mean_dice"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)
    assert set(scores["surface_dice"]) == {"kidney_and_mass", "mass", "tumor"}


def test_missing_prediction_is_an_error(kits_dataset, tmp_path):
    (tmp_path / "predictions").mkdir()
    with pytest.raises(FileNotFoundError, match="case_00003"):
        score_predictions(tmp_path / "predictions", kits_dataset, ["case_00003"])
