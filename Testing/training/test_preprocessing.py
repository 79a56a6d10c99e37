"""Preprocessing training cases: files and record, engine normalisation and resampling, resume, parallel =
serial, plan mismatch, bad cases, and no partial files after a failed write."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fixture_cases import SAMPLE_CASES as CASES
from fixture_cases import SAMPLE_DIR as SYNTHETIC
from fixture_cases import training_case

from kidneytumorseg.geometry import resample_array, resample_to_shape, resampled_shape, to_lps
from kidneytumorseg.normalization import normalize
from kidneytumorseg_training import preprocessing
from kidneytumorseg_training.datasets import DatasetError, TrainingCase, body_box
from kidneytumorseg_training.planning import PlansError, load_plans, plan_experiment
from kidneytumorseg_training.preprocessing import case_files, preprocess_case, preprocess_dataset

_case = training_case


@pytest.fixture(scope="module")
def coarse(fingerprint):
    """A fast plan: 6 mm voxels."""
    return plan_experiment(fingerprint, target_spacing=[6.0, 6.0, 6.0])


def _lps(case_id: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    image, spacing, _ = to_lps(sitk.ReadImage(str(SYNTHETIC / case_id / "imaging.nii.gz")))
    label, _, _ = to_lps(sitk.ReadImage(str(SYNTHETIC / case_id / "segmentation.nii.gz")))
    return image, label, spacing


def _load(out_dir: Path, case_id: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict]:
    files = case_files(out_dir, case_id)
    with np.load(files["locations"], allow_pickle=False) as npz:
        locations = {key: npz[key] for key in npz.files}
    return (np.load(files["image"], allow_pickle=False), np.load(files["label"], allow_pickle=False), locations,
            json.loads(files["record"].read_text()))


def test_case_files_record_and_locations(coarse, tmp_path):
    record = preprocess_case(_case(CASES[0]), coarse, tmp_path)
    image, label, locations, stored = _load(tmp_path, CASES[0])
    assert stored == record
    original_image, original_label, spacing = _lps(CASES[0])
    assert record["original_spacing"] == list(spacing) == [3.0, 2.0, 2.0]
    assert record["original_shape"] == [55, 190, 190]
    assert record["crop_box"] == body_box(original_image, original_label)
    extent = [stop - start for start, stop in record["crop_box"]]
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert image.shape == label.shape == resampled_shape(extent, spacing, [6.0, 6.0, 6.0])
    assert record["shape"] == list(image.shape) and record["spacing"] == [6.0, 6.0, 6.0]
    assert record["source_image"] == str(_case(CASES[0]).image) and record["case_id"] == CASES[0]
    assert set(np.unique(label)) <= {0, 1, 2, 3} and {1, 2} <= set(np.unique(label).tolist())
    for value in (1, 2, 3):
        rows = locations[f"class_{value}"]
        assert rows.dtype == np.int32 and rows.ndim == 2 and rows.shape[1] == 3
        assert len(rows) == min(record["class_voxels"][str(value)], 10_000)
        assert np.all(label[tuple(rows.T)] == value)
    # Kidney volume is roughly preserved by the one-hot resampling (6 mm voxels: 18x coarser than 3x2x2).
    kidney_ml = np.count_nonzero(original_label == 1) * 12 / 1000
    assert record["class_voxels"]["1"] * 216 / 1000 == pytest.approx(kidney_ml, rel=0.25)


def test_at_the_original_spacing_the_data_is_the_engine_normalised_crop(fingerprint, tmp_path):
    plans = plan_experiment(fingerprint, target_spacing=[3.0, 3.0, 3.0])
    record = preprocess_case(_case(CASES[1]), plans, tmp_path)
    image, label, _, _ = _load(tmp_path, CASES[1])
    original_image, original_label, _ = _lps(CASES[1])
    region = tuple(slice(start, stop) for start, stop in record["crop_box"])
    assert np.array_equal(image, normalize(original_image[region], plans["normalization"]))
    assert np.array_equal(label, original_label[region])
    assert np.count_nonzero(label) == np.count_nonzero(original_label)  # the crop keeps the whole mask


def test_resampled_data_is_normalize_then_resample_and_one_hot_argmax(coarse, tmp_path):
    record = preprocess_case(_case(CASES[0]), coarse, tmp_path)
    image, label, _, _ = _load(tmp_path, CASES[0])
    original_image, original_label, spacing = _lps(CASES[0])
    region = tuple(slice(start, stop) for start, stop in record["crop_box"])
    expected = resample_array(normalize(original_image[region], coarse["normalization"]), spacing, [6.0, 6.0, 6.0])
    assert np.array_equal(image, expected)
    one_hot = np.stack([original_label[region] == v for v in range(4)]).astype(np.float32)
    scores = resample_to_shape(one_hot, spacing, image.shape, [6.0, 6.0, 6.0], "linear")
    assert np.array_equal(label, np.argmax(scores, axis=0).astype(np.uint8))


def test_resume_skips_complete_cases_and_redoes_unfinished_ones(coarse, tmp_path):
    cases = [_case(c) for c in CASES]
    first = preprocess_dataset(cases, coarse, tmp_path, jobs=1, progress=False)
    assert first.done == CASES and not first.reused and not first.skipped
    assert load_plans(tmp_path) == coarse
    stamps = {c: case_files(tmp_path, c)["image"].stat().st_mtime_ns for c in CASES}
    again = preprocess_dataset(cases, coarse, tmp_path, jobs=1, progress=False)
    assert again.reused == CASES and again.done == []
    assert stamps == {c: case_files(tmp_path, c)["image"].stat().st_mtime_ns for c in CASES}
    case_files(tmp_path, CASES[1])["record"].unlink()  # as if killed before the JSON
    stale = tmp_path / f".{CASES[1]}.label.npy.x1y2.partial.npy"
    stale.write_bytes(b"half")
    third = preprocess_dataset(cases, coarse, tmp_path, jobs=1, progress=False)
    assert third.done == [CASES[1]] and third.reused == [CASES[0]]
    assert not stale.exists()
    assert case_files(tmp_path, CASES[0])["image"].stat().st_mtime_ns == stamps[CASES[0]]


def test_parallel_equals_serial_bit_for_bit(coarse, tmp_path):
    cases = [_case(c) for c in CASES]
    preprocess_dataset(cases, coarse, tmp_path / "serial", jobs=1, progress=False)
    report = preprocess_dataset(cases, coarse, tmp_path / "parallel", jobs=2, progress=False)
    assert report.done == CASES
    for case in CASES:
        serial, parallel = _load(tmp_path / "serial", case), _load(tmp_path / "parallel", case)
        assert np.array_equal(serial[0], parallel[0]) and np.array_equal(serial[1], parallel[1])
        assert serial[2].keys() == parallel[2].keys()
        assert all(np.array_equal(serial[2][k], parallel[2][k]) for k in serial[2])
        assert {k: v for k, v in serial[3].items() if k != "seconds"} == \
            {k: v for k, v in parallel[3].items() if k != "seconds"}


def test_a_folder_of_another_plan_is_refused(coarse, fingerprint, tmp_path):
    preprocess_dataset([_case(CASES[1])], coarse, tmp_path, jobs=1, progress=False)
    other = plan_experiment(fingerprint, target_spacing=[5.0, 5.0, 5.0])
    with pytest.raises(PlansError, match="different plan.*target_spacing"):
        preprocess_dataset([_case(CASES[1])], other, tmp_path, jobs=1, progress=False)
    assert load_plans(tmp_path) == coarse


def _bad_case(folder: Path) -> TrainingCase:
    folder.mkdir(parents=True)
    image = np.full((8, 16, 16), -1000, dtype=np.int16)
    image[2:6, 3:13, 3:13] = 40
    label = np.zeros((8, 16, 16), dtype=np.uint8)
    label[3:5, 5:9, 5:9] = 1
    label[4, 6, 6] = 5
    for array, name in ((image, "imaging.nii.gz"), (label, "segmentation.nii.gz")):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / name))
    return TrainingCase(folder.name, folder / "imaging.nii.gz", folder / "segmentation.nii.gz", "corrections")


@pytest.mark.parametrize("jobs", [1, 2])
def test_bad_cases_are_skipped_or_raised_naming_the_case(coarse, tmp_path, jobs):
    cases = [_bad_case(tmp_path / "in" / "case_bad"), _case(CASES[1])]
    report = preprocess_dataset(cases, coarse, tmp_path / "out", jobs=jobs, progress=False, on_error="skip")
    assert report.done == [CASES[1]] and list(report.skipped) == ["case_bad"]
    assert "labels 5" in report.skipped["case_bad"]
    assert not list((tmp_path / "out").glob("case_bad*"))
    with pytest.raises(DatasetError, match="case_bad"):
        preprocess_dataset(cases, coarse, tmp_path / "out", jobs=jobs, progress=False)


def test_a_full_disk_mid_case_leaves_no_partial_files(coarse, tmp_path, monkeypatch):
    real_save, calls = np.save, []

    def save_then_fail(handle, array, **kwargs):
        calls.append(array.dtype)
        if len(calls) == 2:  # the label file: the image file is already written
            handle.write(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(handle, array, **kwargs)

    monkeypatch.setattr(preprocessing.np, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        preprocess_dataset([_case(CASES[1])], coarse, tmp_path, jobs=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans.json"]


def test_argument_checks(coarse, tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        preprocess_dataset([_case(CASES[1])], coarse, tmp_path, on_error="ignore")
    with pytest.raises(DatasetError, match="case_00161.*more than once"):
        preprocess_dataset([_case(CASES[1]), _case(CASES[1])], coarse, tmp_path)
