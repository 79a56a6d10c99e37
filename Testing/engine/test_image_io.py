"""Reading, validating and atomically writing images: every bad input gives a clear error naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg import image_io
from kidneytumorseg.errors import GeometryMismatchError, InputImageError, MissingInputError
from kidneytumorseg.image_io import (
    check_same_geometry,
    image_suffix,
    read_image,
    read_label_map,
    write_image_atomic,
)


def test_label_map_round_trip_keeps_values_and_geometry(tmp_path: Path, make_label_map) -> None:
    labels = np.zeros((5, 6, 7), dtype=np.uint8)
    labels[1:3, 2:4, 3:6] = 2
    image = make_label_map(labels, spacing=(0.7, 0.8, 2.5), origin=(-10.0, 20.0, 30.0))
    image.SetDirection((0, 0, 1, 0, 1, 0, -1, 0, 0))
    path = write_image_atomic(image, tmp_path / "case_00001" / "segmentation.nii.gz")
    read = read_label_map(path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), labels)
    check_same_geometry(read, image, "read", "written")  # raises if anything moved


def test_labels_outside_0_to_3_are_refused_naming_file_and_labels(tmp_path: Path, write_label_map) -> None:
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[0, 0, 0], labels[1, 1, 1] = 5, 7
    path = write_label_map(labels, tmp_path / "bad_labels.nii.gz")
    with pytest.raises(InputImageError, match=r"bad_labels\.nii\.gz contains labels 5, 7 outside 0\.\.3"):
        read_label_map(path)


def test_non_integer_label_map_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "probabilities.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 3, 3), 0.5, dtype=np.float32)), str(path))
    with pytest.raises(InputImageError, match=r"probabilities\.nii\.gz holds non-integer values"):
        read_label_map(path)


def test_2d_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), dtype=np.uint8)), str(path))
    with pytest.raises(InputImageError, match=r"slice\.nii\.gz is 2D .*a 3D volume is needed"):
        read_image(path)


def test_4d_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "timeseries.nii.gz"
    sitk.WriteImage(sitk.Image([4, 4, 4, 2], sitk.sitkUInt8), str(path))
    with pytest.raises(InputImageError, match=r"timeseries\.nii\.gz is 4D .*pick one time point"):
        read_label_map(path)


def test_rgb_image_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "colour.nrrd"
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3), str(path))
    with pytest.raises(InputImageError, match=r"colour\.nrrd has 3 components per voxel"):
        read_image(path)


def test_non_image_file_with_image_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "case_00001.nii.gz"
    path.write_bytes(b"this is not a NIfTI file\n" * 10)
    with pytest.raises(InputImageError, match=r"case_00001\.nii\.gz could not be read as an image"):
        read_label_map(path)


def test_unsupported_suffix_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("0 1 2 3\n")
    with pytest.raises(InputImageError, match=r"labels\.txt: unsupported file type"):
        read_image(path)


def test_missing_file_and_missing_case_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match=r"nothere\.nii\.gz: no such file"):
        read_image(tmp_path / "nothere.nii.gz")
    missing_case = tmp_path / "case_00042" / "segmentation.nii.gz"
    with pytest.raises(MissingInputError, match=r"case_00042/segmentation\.nii\.gz: no such file"):
        read_label_map(missing_case)


def test_folder_given_instead_of_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "case_00001").mkdir()
    with pytest.raises(InputImageError, match=r"case_00001 is a folder"):
        read_image(tmp_path / "case_00001")


def test_image_suffix_recognises_double_suffixes() -> None:
    assert image_suffix("a/case_00001.nii.gz") == ".nii.gz"
    assert image_suffix("Segmentation.SEG.NRRD") == ".seg.nrrd"
    assert image_suffix("volume.mha") == ".mha"
    assert image_suffix("notes.txt") == ""


def test_failed_write_leaves_old_file_intact_and_no_partial_file(tmp_path: Path, monkeypatch, make_label_map) -> None:
    target = tmp_path / "segmentation.nii.gz"
    old_image = make_label_map(np.ones((3, 3, 3), dtype=np.uint8))
    write_image_atomic(old_image, target)
    old_bytes = target.read_bytes()

    def write_half_then_fail(image: sitk.Image, path: str, useCompression: bool = False) -> None:  # noqa: N803
        Path(path).write_bytes(b"half an image")
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(image_io.sitk, "WriteImage", write_half_then_fail)
    with pytest.raises(RuntimeError, match="No space left"):
        write_image_atomic(make_label_map(np.zeros((3, 3, 3), dtype=np.uint8)), target)
    assert target.read_bytes() == old_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segmentation.nii.gz"]


def test_writing_to_an_unsupported_suffix_is_refused(tmp_path: Path, make_label_map) -> None:
    with pytest.raises(InputImageError, match=r"out\.png: cannot write this file type"):
        write_image_atomic(make_label_map(np.zeros((2, 2, 2))), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_geometry_mismatch_names_both_images_and_what_differs(make_label_map) -> None:
    a = make_label_map(np.zeros((4, 4, 4)))
    b = make_label_map(np.zeros((4, 4, 4)), origin=(0.0, 0.0, 5.0))
    with pytest.raises(GeometryMismatchError, match=r"pred\.nrrd and ref\.nii\.gz .*origin"):
        check_same_geometry(a, b, "pred.nrrd", "ref.nii.gz")
