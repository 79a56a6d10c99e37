"""Finding training cases in the three layouts (KiTS23, nnU-Net raw, corrections) and checking them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg.errors import MissingInputError
from kidneytumorseg_training.datasets import (
    DatasetError,
    TrainingCase,
    body_box,
    check_case,
    find_training_cases,
    load_case,
)

SYNTHETIC = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic"
CASES = ["case_00112", "case_00161"]


def _link_case(source: Path, folder: Path, with_record: str | None = None) -> None:
    folder.mkdir(parents=True)
    for name in ("imaging.nii.gz", "segmentation.nii.gz"):
        os.symlink(source / name, folder / name)
    if with_record:
        (folder / with_record).write_text("{}")


def _small_case(folder: Path, image: np.ndarray | None = None, label: np.ndarray | None = None,
                label_spacing: tuple[float, float, float] = (2.0, 2.0, 3.0)) -> TrainingCase:
    """A tiny case (8 x 16 x 16) with kidney and tumor; ``image``/``label`` arrays replace the defaults."""
    folder.mkdir(parents=True, exist_ok=True)
    if image is None:
        image = np.full((8, 16, 16), -1000, dtype=np.int16)
        image[2:6, 3:13, 3:13] = 40
    if label is None:
        label = np.zeros((8, 16, 16), dtype=np.uint8)
        label[3:5, 5:9, 5:9] = 1
        label[3:5, 6:8, 6:8] = 2
    for array, name, spacing in ((image, "imaging.nii.gz", (2.0, 2.0, 3.0)),
                                 (label, "segmentation.nii.gz", label_spacing)):
        written = sitk.GetImageFromArray(array)
        written.SetSpacing(spacing)
        sitk.WriteImage(written, str(folder / name))
    return TrainingCase(folder.name, folder / "imaging.nii.gz", folder / "segmentation.nii.gz", "kits")


def test_kits_layout_including_a_synthetic_dataset(tmp_path):
    for case in CASES:
        _link_case(SYNTHETIC / case, tmp_path / case, with_record="synthetic.json")
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "synthetic"}))  # as build-dataset writes it
    (tmp_path / "NOTICE.md").write_text("notice")
    found = find_training_cases(tmp_path)
    assert [c.case_id for c in found] == CASES
    assert all(c.source == "kits" for c in found)
    assert found[0].image == tmp_path / CASES[0] / "imaging.nii.gz"
    assert found[0].label == tmp_path / CASES[0] / "segmentation.nii.gz"
    assert [c.case_id for c in find_training_cases(tmp_path, cases=[CASES[1]])] == [CASES[1]]


def test_unusable_kits_folders_are_skipped_with_a_warning_naming_them(tmp_path, caplog):
    _link_case(SYNTHETIC / CASES[0], tmp_path / CASES[0], with_record="synthetic.json")
    (tmp_path / "case_00999").mkdir()
    os.symlink(SYNTHETIC / CASES[1] / "imaging.nii.gz", tmp_path / "case_00999" / "imaging.nii.gz")
    _link_case(SYNTHETIC / CASES[1], tmp_path / "case_00500")  # no synthetic.json: an unfinished build
    with caplog.at_level(logging.WARNING):
        found = find_training_cases(tmp_path)
    assert [c.case_id for c in found] == [CASES[0]]
    assert "case_00999" in caplog.text and "segmentation.nii.gz" in caplog.text
    assert "case_00500" in caplog.text and "synthetic.json" in caplog.text


def test_nnunet_raw_layout_with_its_file_ending(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    for case, case_id in zip(CASES, ("kits_112", "kits_161"), strict=True):
        for name, target in (("imaging", f"imagesTr/{case_id}_0000.mha"), ("segmentation", f"labelsTr/{case_id}.mha")):
            sitk.WriteImage(sitk.ReadImage(str(SYNTHETIC / case / f"{name}.nii.gz")), str(tmp_path / target))
    (tmp_path / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3},
        "numTraining": 2, "file_ending": ".mha"}))
    found = find_training_cases(tmp_path)
    assert [(c.case_id, c.source) for c in found] == [("kits_112", "nnunet"), ("kits_161", "nnunet")]
    assert found[0].image == tmp_path / "imagesTr" / "kits_112_0000.mha"
    assert found[0].label == tmp_path / "labelsTr" / "kits_112.mha"
    check_case(found[0])


def test_nnunet_label_without_image_is_skipped_and_multichannel_refused(tmp_path, caplog):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    os.symlink(SYNTHETIC / CASES[0] / "imaging.nii.gz", tmp_path / "imagesTr" / "a_0000.nii.gz")
    os.symlink(SYNTHETIC / CASES[0] / "segmentation.nii.gz", tmp_path / "labelsTr" / "a.nii.gz")
    os.symlink(SYNTHETIC / CASES[1] / "segmentation.nii.gz", tmp_path / "labelsTr" / "b.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    with caplog.at_level(logging.WARNING):
        assert [c.case_id for c in find_training_cases(tmp_path)] == ["a"]
    assert "b_0000.nii.gz" in caplog.text
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "PET"}}))
    with pytest.raises(DatasetError, match="single CT channel"):
        find_training_cases(tmp_path)


def test_corrections_layout_skips_half_written_exports(tmp_path, caplog):
    _link_case(SYNTHETIC / CASES[0], tmp_path / "case_a", with_record="correction.json")
    _link_case(SYNTHETIC / CASES[1], tmp_path / "case_b")  # no correction.json: export interrupted
    (tmp_path / "case_c").mkdir()
    os.symlink(SYNTHETIC / CASES[1] / "imaging.nii.gz", tmp_path / "case_c" / "imaging.nii.gz")
    (tmp_path / "case_c" / "correction.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        found = find_training_cases(tmp_path)
    assert [(c.case_id, c.source) for c in found] == [("case_a", "corrections")]
    assert "case_b" in caplog.text and "correction.json" in caplog.text
    assert "case_c" in caplog.text and "segmentation.nii.gz" in caplog.text


def test_a_root_matching_no_layout_says_which_layouts_are_expected(tmp_path, masks_3mm_dir):
    with pytest.raises(DatasetError, match="nnU-Net raw"):
        find_training_cases(tmp_path)
    with pytest.raises(DatasetError, match="build-dataset"):
        find_training_cases(masks_3mm_dir)  # masks only
    with pytest.raises(MissingInputError):
        find_training_cases(tmp_path / "absent")


def test_unknown_case_names_are_named(tmp_path):
    _link_case(SYNTHETIC / CASES[0], tmp_path / CASES[0])
    with pytest.raises(DatasetError, match="case_00042"):
        find_training_cases(tmp_path, cases=[CASES[0], "case_00042"])


def test_check_case_accepts_a_good_case(tmp_path):
    check_case(_small_case(tmp_path / "case_good"))
    case = TrainingCase(CASES[1], SYNTHETIC / CASES[1] / "imaging.nii.gz",
                        SYNTHETIC / CASES[1] / "segmentation.nii.gz", "kits")
    image, label = load_case(case)
    assert image.GetSize() == label.GetSize()


def _bad_cases(tmp_path: Path) -> dict[str, tuple[TrainingCase, str]]:
    label5 = np.zeros((8, 16, 16), dtype=np.uint8)
    label5[3:5, 5:9, 5:9] = 1
    label5[4, 6, 6] = 5
    no_kidney = np.zeros((8, 16, 16), dtype=np.uint8)
    no_kidney[3:5, 5:9, 5:9] = 2
    unreadable = _small_case(tmp_path / "case_unreadable")
    unreadable.image.write_bytes(b"not a nifti file at all")
    flat = _small_case(tmp_path / "case_flat")
    sitk.WriteImage(sitk.Image([16, 16], sitk.sitkInt16), str(flat.image))
    missing = _small_case(tmp_path / "case_missing")
    missing.label.unlink()
    return {
        "geometry": (_small_case(tmp_path / "case_geometry", label_spacing=(2.0, 2.0, 2.5)), "same voxel grid"),
        "labels": (_small_case(tmp_path / "case_labels", label=label5), "labels 5"),
        "unreadable": (unreadable, "could not be read"),
        "2d": (flat, "2D"),
        "missing": (missing, "no such file"),
        "empty": (_small_case(tmp_path / "case_empty", image=np.zeros((8, 16, 16), np.int16)), "empty"),
        "no_kidney": (_small_case(tmp_path / "case_nokidney", label=no_kidney), "no kidney"),
    }


@pytest.mark.parametrize("problem", ["geometry", "labels", "unreadable", "2d", "missing", "empty", "no_kidney"])
def test_check_case_names_the_case_and_the_problem(tmp_path, problem):
    case, message = _bad_cases(tmp_path)[problem]
    with pytest.raises(DatasetError, match=message) as raised:
        check_case(case)
    assert case.case_id in str(raised.value)


def test_4d_image_is_refused(tmp_path):
    case = _small_case(tmp_path / "case_4d")
    sitk.WriteImage(sitk.Image([4, 4, 4, 2], sitk.sitkInt16), str(case.image))
    with pytest.raises(DatasetError, match="case_4d.*4D"):
        check_case(case)


def test_body_box_unites_body_and_mask_with_a_margin():
    image = np.full((20, 30, 30), -1000.0, dtype=np.float32)
    image[5:10, 10:20, 12:18] = 0.0
    label = np.zeros(image.shape, dtype=np.uint8)
    label[8:12, 11:13, 13:14] = 1
    assert body_box(image, label) == [[3, 14], [8, 22], [10, 20]]
    image[:] = -1000.0
    label[:] = 0
    label[0:2, 0:30, 29] = 1
    assert body_box(image, label) == [[0, 4], [0, 30], [27, 30]]
