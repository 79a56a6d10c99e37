"""Evaluating a folder of predictions: case discovery, refusals, per-case CSV and summary statistics."""

from __future__ import annotations

import csv
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg.errors import GeometryMismatchError, InputImageError, MissingInputError
from kidneytumorseg.evaluation import csv_columns, evaluate_folder, find_case_pairs
from kidneytumorseg.labels import KIDNEY, TUMOR

SHAPE = (16, 16, 16)
VOXEL_ML = 0.8 * 0.8 * 3.0 / 1000  # conftest's default spacing


def kidney_box(shift: int = 0, eroded: bool = False, tumor: bool = False) -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    low, high = (4, 12) if eroded else (3, 13)
    labels[low:high, low:high, low:high] = KIDNEY
    if tumor:
        labels[6:9, 6:9, 6:9] = TUMOR
    return np.roll(labels, shift, axis=2)


@pytest.fixture
def three_cases(tmp_path: Path, write_label_map) -> tuple[Path, Path]:
    """References in KiTS layout; predictions identical, shifted one voxel, eroded, in three naming styles."""
    references, predictions = tmp_path / "references", tmp_path / "predictions"
    for case in ("case_00001", "case_00002", "case_00003"):
        write_label_map(kidney_box(), references / case / "segmentation.nii.gz")
    write_label_map(kidney_box(), predictions / "case_00001.nii.gz")
    write_label_map(kidney_box(shift=1), predictions / "case_00002" / "segmentation.nii.gz")
    write_label_map(kidney_box(eroded=True), predictions / "case_00003" / "prediction.nrrd")
    return predictions, references


def test_csv_and_summary_hold_the_expected_values(three_cases, tmp_path: Path) -> None:
    predictions, references = three_cases
    csv_path = tmp_path / "out" / "metrics.csv"
    result = evaluate_folder(predictions, references, csv_path=csv_path, show_progress_bar=False)

    expected_dice = [1.0, 0.9, 2 * 8**3 / (10**3 + 8**3)]
    with csv_path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == csv_columns()
    assert [row["case"] for row in rows] == ["case_00001", "case_00002", "case_00003"]
    for row, dice in zip(rows, expected_dice, strict=True):
        assert float(row["dice_kidney_and_mass"]) == pytest.approx(dice, abs=1e-12)
        assert float(row["dice_tumor"]) == 1.0 and float(row["surface_dice_mass"]) == 1.0  # both empty
        assert float(row["hd95_tumor"]) == 0.0
        assert float(row["volume_ref_ml_kidney"]) == pytest.approx(1000 * VOXEL_ML)
        assert float(row["volume_pred_ml_tumor"]) == 0.0
    assert float(rows[2]["volume_pred_ml_kidney"]) == pytest.approx(512 * VOXEL_ML)
    assert float(rows[1]["hd95_kidney_and_mass"]) == pytest.approx(0.8, rel=1e-6)  # shift along x: 0.8 mm

    summary = result.summary
    kidney = summary.regions[0]
    assert kidney.region == "kidney_and_mass"
    assert kidney.dice_mean == pytest.approx(sum(expected_dice) / 3, abs=1e-12)
    assert kidney.dice_median == pytest.approx(0.9, abs=1e-12)
    assert kidney.hd95_median == pytest.approx(0.8, rel=1e-6)
    assert summary.regions[2].dice_mean == 1.0
    assert summary.mean_dice == pytest.approx((kidney.dice_mean + 1.0 + 1.0) / 3, abs=1e-12)
    assert summary.mean_surface_dice == pytest.approx((kidney.surface_dice_mean + 2.0) / 3, abs=1e-12)
    assert summary.case_count == 3 and summary.missing_cases == ()
    assert result.csv_path == csv_path
    assert [p.name for p in csv_path.parent.iterdir()] == ["metrics.csv"]  # no temporary file left


def test_progress_callback_reports_fractions(three_cases) -> None:
    fractions: list[float] = []
    evaluate_folder(*three_cases, progress=fractions.append, show_progress_bar=False)
    assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_parallel_jobs_give_the_same_results_in_case_order(three_cases) -> None:
    serial = evaluate_folder(*three_cases, jobs=1, show_progress_bar=False)
    parallel = evaluate_folder(*three_cases, jobs=2, show_progress_bar=False)
    assert [c.case_id for c in parallel.cases] == ["case_00001", "case_00002", "case_00003"]
    assert parallel.cases == serial.cases


def test_reference_cases_without_prediction_are_reported_missing(three_cases, write_label_map, caplog):
    predictions, references = three_cases
    write_label_map(kidney_box(), references / "case_00004" / "segmentation.nii.gz")
    with caplog.at_level(logging.WARNING, logger="kidneytumorseg"):
        result = evaluate_folder(predictions, references, show_progress_bar=False)
    assert result.summary.missing_cases == ("case_00004",)
    assert result.summary.case_count == 3
    assert "case_00004" in caplog.text and "no prediction" in caplog.text


def test_prediction_without_reference_is_refused_naming_it(three_cases, write_label_map) -> None:
    predictions, references = three_cases
    write_label_map(kidney_box(), predictions / "case_00099.mha")
    with pytest.raises(MissingInputError, match=r"No reference .*case_00099\.mha"):
        evaluate_folder(predictions, references, show_progress_bar=False)


def test_geometry_mismatch_is_refused_naming_both_files(three_cases, write_label_map) -> None:
    predictions, references = three_cases
    write_label_map(kidney_box(), predictions / "case_00001.nii.gz", spacing=(0.8, 0.8, 1.5))
    with pytest.raises(GeometryMismatchError) as raised:
        evaluate_folder(predictions, references, show_progress_bar=False)
    message = str(raised.value)
    assert str(predictions / "case_00001.nii.gz") in message
    assert str(references / "case_00001" / "segmentation.nii.gz") in message
    assert "resample" in message


def test_geometry_mismatch_in_a_worker_process_is_refused_too(three_cases, write_label_map) -> None:
    predictions, references = three_cases
    write_label_map(kidney_box(), predictions / "case_00001.nii.gz", origin=(5.0, 0.0, 0.0))
    with pytest.raises(GeometryMismatchError, match="case_00001"):
        evaluate_folder(predictions, references, jobs=2, show_progress_bar=False)


def test_empty_prediction_folder_is_refused(tmp_path: Path, kits_crops_dir: Path) -> None:
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "notes.txt").write_text("nothing here")
    with pytest.raises(MissingInputError, match=r"No predictions found in .*predictions"):
        evaluate_folder(tmp_path / "predictions", kits_crops_dir, show_progress_bar=False)


def test_missing_folders_are_named(tmp_path: Path, three_cases, kits_crops_dir: Path) -> None:
    predictions, _ = three_cases
    with pytest.raises(MissingInputError, match=r"prediction folder .*nowhere does not exist"):
        find_case_pairs(tmp_path / "nowhere", kits_crops_dir)
    with pytest.raises(MissingInputError, match=r"reference folder .*nowhere does not exist"):
        find_case_pairs(predictions, tmp_path / "nowhere")


def test_two_predictions_for_one_case_are_refused(three_cases, write_label_map) -> None:
    predictions, references = three_cases
    write_label_map(kidney_box(), predictions / "case_00002.nii.gz")  # besides case_00002/segmentation.nii.gz
    with pytest.raises(InputImageError, match=r"2 files for case_00002"):
        find_case_pairs(predictions, references)


def test_flat_references_hidden_files_and_folders_without_prediction(tmp_path: Path, write_label_map) -> None:
    predictions, references = tmp_path / "predictions", tmp_path / "references"
    write_label_map(kidney_box(), references / "case_00007.nii.gz")
    write_label_map(kidney_box(), predictions / "case_00007" / "segmentation.mha")
    write_label_map(kidney_box(), predictions / ".case_00008.nii.gz.partial.nii.gz")  # a crashed write
    (predictions / "logs").mkdir()
    (predictions / "logs" / "run.log").write_text("...")
    pairs, missing = find_case_pairs(predictions, references)
    assert [(p.case_id, p.prediction.name, p.reference.name) for p in pairs] == [
        ("case_00007", "segmentation.mha", "case_00007.nii.gz")
    ]
    assert missing == []


def test_real_crops_evaluated_against_themselves_score_perfectly(tmp_path: Path, kits_crops_dir: Path) -> None:
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    for case_dir in sorted(kits_crops_dir.glob("case_*")):
        shutil.copy(case_dir / "segmentation.nii.gz", predictions / f"{case_dir.name}.nii.gz")
    result = evaluate_folder(predictions, kits_crops_dir, show_progress_bar=False)
    assert result.summary.case_count == 3
    assert result.summary.mean_dice == 1.0 and result.summary.mean_surface_dice == 1.0
    cyst_case = next(c for c in result.cases if c.case_id == "case_00051")
    size = sitk.ReadImage(str(kits_crops_dir / "case_00051" / "segmentation.nii.gz")).GetSpacing()
    assert cyst_case.metrics.volume_ref_ml["cyst"] == pytest.approx(3116 * math.prod(size) / 1000)


def test_jobs_below_one_is_refused(three_cases) -> None:
    with pytest.raises(InputImageError, match="jobs must be at least 1"):
        evaluate_folder(*three_cases, jobs=0)
