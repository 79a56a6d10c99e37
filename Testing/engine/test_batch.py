"""predict_files: single files, DICOM series, folders of cases, failures named, nothing half-written."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg.batch import find_inputs, predict_files
from kidneytumorseg.errors import Cancelled, MissingInputError, OutputPathError
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg.segmentation_file import read_segment_table


@pytest.fixture(scope="module")
def predictor(random_package, tmp_path_factory):
    store = ModelStore(tmp_path_factory.mktemp("bundled"), random_package)
    return Predictor.from_store("random-test", PredictionOptions(device="cpu", quality="fast"), store)


def write_dicom_series(image: sitk.Image, folder):
    """Write ``image`` as a CT DICOM series, one file per slice, with positions GDCM can sort."""
    folder.mkdir(parents=True)
    image = sitk.Cast(sitk.DICOMOrient(image, "LPS"), sitk.sitkInt16)  # axial slices
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()  # keep our series UID instead of a new one per file
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in {
            "0008|0060": "CT", "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0020|000e": "1.2.826.0.1.3680043.2.1125.2",
            "0020|0013": str(k + 1), "0008|0018": f"1.2.826.0.1.3680043.2.1125.3.{k + 1}",
            "0020|0032": "\\".join(f"{p:.6f}" for p in position),
            "0020|0037": "\\".join(f"{d:.6f}" for d in (direction[0], direction[3], direction[6],
                                                        direction[1], direction[4], direction[7])),
            "0018|0050": f"{image.GetSpacing()[2]:.4f}",
        }.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_)


def test_a_single_file_gives_a_label_map_and_a_segmentation(predictor, sample_ct, tmp_path):
    sitk.WriteImage(sample_ct, str(tmp_path / "ct.nii.gz"))
    report = predict_files(tmp_path / "ct.nii.gz", tmp_path / "out" / "labels.nrrd", predictor=predictor)
    [case] = report.outputs
    assert case.labels == tmp_path / "out" / "labels.nrrd" and case.segmentation == tmp_path / "out" / "labels.seg.nrrd"
    labels, segmentation = sitk.ReadImage(str(case.labels)), sitk.ReadImage(str(case.segmentation))
    assert labels.GetSize() == sample_ct.GetSize() and labels.GetOrigin() == sample_ct.GetOrigin()
    assert np.array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(segmentation))
    assert read_segment_table(case.segmentation)[2]["name"] == "tumor"
    assert report.model == "random-test@1.0.0"


def test_a_dicom_series_folder_is_read_with_its_geometry(predictor, sample_ct, tmp_path):
    write_dicom_series(sample_ct, tmp_path / "series")
    cases, single = find_inputs(tmp_path / "series")
    assert single and cases[0].path == tmp_path / "series"
    report = predict_files(tmp_path / "series", tmp_path / "out", predictor=predictor)
    labels = sitk.ReadImage(str(report.outputs[0].labels))
    expected = sitk.DICOMOrient(sample_ct, "LPS")
    assert labels.GetSize() == expected.GetSize()
    assert np.allclose(labels.GetSpacing(), expected.GetSpacing(), atol=1e-3)
    assert np.allclose(labels.GetOrigin(), expected.GetOrigin(), atol=1e-3)
    assert np.allclose(labels.GetDirection(), expected.GetDirection(), atol=1e-6)


def test_a_folder_of_cases_goes_on_past_a_bad_case(predictor, sample_ct, tmp_path):
    for name in ("case_00001", "case_00002"):
        (tmp_path / "in" / name).mkdir(parents=True)
        sitk.WriteImage(sample_ct, str(tmp_path / "in" / name / "imaging.nii.gz"))
    (tmp_path / "in" / "case_00003").mkdir()
    (tmp_path / "in" / "case_00003" / "imaging.nii.gz").write_text("not an image")
    report = predict_files(tmp_path / "in", tmp_path / "out", predictor=predictor)
    assert [c.name for c in report.outputs] == ["case_00001", "case_00002"]
    assert "case_00003" in report.failures and "could not be read" in report.failures["case_00003"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "case_00001.nii.gz", "case_00001.seg.nrrd", "case_00002.nii.gz", "case_00002.seg.nrrd"]


def test_cancelling_writes_nothing(predictor, sample_ct, tmp_path):
    sitk.WriteImage(sample_ct, str(tmp_path / "ct.nii.gz"))

    class Now:
        def is_set(self):
            return True

    with pytest.raises(Cancelled):
        predict_files(tmp_path / "ct.nii.gz", tmp_path / "out", predictor=predictor, cancel=Now())
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere, so an unwritable folder cannot be made")
def test_an_unwritable_output_fails_before_any_work(predictor, sample_ct, tmp_path):
    sitk.WriteImage(sample_ct, str(tmp_path / "ct.nii.gz"))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputPathError, match="not writable"):
        predict_files(tmp_path / "ct.nii.gz", locked / "out.nii.gz", predictor=predictor)


def test_an_output_path_under_a_file_fails_before_any_work(predictor, sample_ct, tmp_path):
    sitk.WriteImage(sample_ct, str(tmp_path / "ct.nii.gz"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputPathError, match="cannot create"):
        predict_files(tmp_path / "ct.nii.gz", tmp_path / "afile" / "sub" / "out.nii.gz", predictor=predictor)


def test_missing_and_empty_inputs_are_named(predictor, tmp_path):
    with pytest.raises(MissingInputError, match="nowhere"):
        predict_files(tmp_path / "nowhere", tmp_path / "out", predictor=predictor)
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="holds no CT"):
        predict_files(tmp_path / "empty", tmp_path / "out", predictor=predictor)
    shutil.rmtree(tmp_path / "empty")
