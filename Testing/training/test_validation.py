"""Whole-case validation with the engine predictor and metrics, on the committed synthetic case."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from kidneytumorseg.geometry import to_lps
from kidneytumorseg.labels import KITS_REGIONS
from kidneytumorseg.networks import build_network, plan_network
from kidneytumorseg.predictor_core import Prediction, PredictorSettings
from kidneytumorseg_training import validation
from kidneytumorseg_training.validation import evaluate_prediction, validate_cases, write_validation_report

CASE = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic" / "case_00112"
SETTINGS = PredictorSettings(
    target_spacing=(6.0, 6.0, 6.0), patch_size=(16, 32, 32), device="cpu",
    normalization={"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9},
)
CASES = [("case_00112", CASE / "imaging.nii.gz", CASE / "segmentation.nii.gz")]


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    config = plan_network((16, 32, 32), (6.0, 6.0, 6.0), base_features=4, deep_supervision=True)
    return build_network(config).train()


def _geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def test_tiny_network_writes_labels_on_the_input_grid(network, tmp_path):
    result = validate_cases([network], SETTINGS, CASES, output_dir=tmp_path / "pred", progress=False)
    written = sitk.ReadImage(str(tmp_path / "pred" / "case_00112.nii.gz"))
    reference = sitk.ReadImage(str(CASE / "segmentation.nii.gz"))
    assert result.predictions == {"case_00112": tmp_path / "pred" / "case_00112.nii.gz"}
    assert np.allclose(np.hstack(_geometry(written)[1:]), np.hstack(_geometry(reference)[1:]))
    assert written.GetSize() == reference.GetSize()
    assert set(np.unique(sitk.GetArrayViewFromImage(written))) <= {0, 1, 2, 3}
    metrics = result.cases[0].metrics
    for region in KITS_REGIONS:
        assert 0.0 <= metrics.dice[region.name] <= 1.0
        assert 0.0 <= metrics.surface_dice[region.name] <= 1.0
    assert result.summary.case_count == 1 and 0.0 <= result.summary.mean_dice <= 1.0
    # The predictor switched the network to eval without deep supervision; validation puts both back.
    assert network.training and network.deep_supervision


def test_perfect_prediction_scores_dice_one_end_to_end(monkeypatch, network, tmp_path):
    """A predictor returning the reference (in LPS) must come back on the input grid with Dice 1."""
    reference_lps = to_lps(sitk.ReadImage(str(CASE / "segmentation.nii.gz")))[0]

    def perfect(volume, spacing, members, settings, postprocessing=None, **_):
        assert volume.shape == reference_lps.shape
        return Prediction(labels=reference_lps.astype(np.uint8), probabilities=np.zeros((4, 1, 1, 1)))

    monkeypatch.setattr(validation, "predict", perfect)
    result = validate_cases([network], SETTINGS, CASES, progress=False)
    assert result.predictions == {}
    for region in KITS_REGIONS:
        assert result.cases[0].metrics.dice[region.name] == pytest.approx(1.0)
        assert result.cases[0].metrics.surface_dice[region.name] == pytest.approx(1.0)
    assert result.summary.mean_dice == pytest.approx(1.0)

    json_path, csv_path = write_validation_report(result, tmp_path)
    data = json.loads(json_path.read_text())
    assert data["case_count"] == 1 and data["mean_dice"] == pytest.approx(1.0)
    assert [r["region"] for r in data["regions"]] == [r.name for r in KITS_REGIONS]
    assert data["cases"][0]["case_id"] == "case_00112" and data["cases"][0]["seconds"] >= 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 1 and float(rows[0]["dice_tumor"]) == pytest.approx(1.0)


def test_evaluate_prediction_perfect_partial_and_missed():
    reference = np.zeros((12, 14, 16), dtype=np.uint8)
    reference[2:9, 3:10, 3:8] = 1
    reference[4:7, 5:8, 4:6] = 2
    perfect = evaluate_prediction(reference, reference, (3.0, 2.0, 2.0))
    assert all(perfect.dice[r.name] == pytest.approx(1.0) for r in KITS_REGIONS)
    missed = reference.copy()
    missed[missed == 2] = 1  # tumour called kidney
    metrics = evaluate_prediction(missed, reference, (3.0, 2.0, 2.0))
    assert metrics.dice["kidney_and_mass"] == pytest.approx(1.0)
    assert metrics.dice["tumor"] == 0.0 and math.isinf(metrics.hd95_mm["tumor"])


def test_report_json_has_no_nan_or_infinity(tmp_path):
    reference = np.zeros((8, 8, 8), dtype=np.uint8)
    reference[2:6, 2:6, 2:6] = 2
    case = validation.CaseResult("c1", evaluate_prediction(np.zeros_like(reference), reference, (1, 1, 1)))
    result = validation.ValidationResult((case,), validation.summarize([case]))
    json_path, _ = write_validation_report(result, tmp_path / "out")
    data = json.loads(json_path.read_text())  # would fail on the strict writer if NaN/inf leaked
    assert data["cases"][0]["hd95_mm"]["tumor"] is None and data["cases"][0]["seconds"] is None


def test_bad_inputs_get_clear_errors(network, tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        validate_cases([network], SETTINGS, [], progress=False)
    with pytest.raises(ValueError, match="given twice"):
        validate_cases([network], SETTINGS, CASES + CASES, progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        validate_cases([network], SETTINGS, [("x", tmp_path / "none.nii.gz", CASE / "segmentation.nii.gz")],
                       progress=False)


def test_localizer_is_passed_to_the_predictor(monkeypatch, network, tmp_path):
    """Fine-tuning's held-out evaluation runs the coarse-to-fine mode: validate_cases hands the localizer and
    its cascade settings to the engine's predict, which then segments inside the localizer's boxes."""
    from kidneytumorseg.predictor_core import CascadeSettings

    seen = {}
    real_predict = validation.predict

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(validation, "predict", spy)
    torch.manual_seed(1)
    localizer = build_network(plan_network((16, 16, 16), (12.0, 12.0, 12.0), base_features=4)).eval()
    cascade = CascadeSettings(localizer=PredictorSettings(
        target_spacing=(12.0, 12.0, 12.0), patch_size=(16, 16, 16), device="cpu",
        normalization=SETTINGS.normalization))
    result = validate_cases([network], SETTINGS, CASES, progress=False, localizer=localizer, cascade=cascade)
    assert seen["localizer"] is localizer and seen["cascade"] is cascade
    assert result.summary.case_count == 1
