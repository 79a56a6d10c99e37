"""KiTS layout -> nnU-Net v2 raw layout: file names, links, dataset.json with the plain KiTS labels."""

from __future__ import annotations

import json

import pytest
from equal_budget.nnunet_raw import dataset_folder_name, write_raw_dataset


def test_layout_links_and_dataset_json(kits_dataset, tmp_path):
    raw = write_raw_dataset(kits_dataset, tmp_path / "raw", 501, "KiTSSynthetic", ["case_00000", "case_00001"],
                            ["case_00004"])
    assert raw.folder == tmp_path / "raw" / "Dataset501_KiTSSynthetic"
    assert sorted(p.name for p in (raw.folder / "imagesTr").iterdir()) == ["case_00000_0000.nii.gz",
                                                                          "case_00001_0000.nii.gz"]
    assert sorted(p.name for p in (raw.folder / "labelsTr").iterdir()) == ["case_00000.nii.gz", "case_00001.nii.gz"]
    assert [p.name for p in (raw.folder / "imagesTs").iterdir()] == ["case_00004_0000.nii.gz"]
    assert (raw.folder / "labelsTr" / "case_00001.nii.gz").resolve() == \
        (kits_dataset / "case_00001" / "segmentation.nii.gz").resolve()
    assert raw.test_image("case_00004").resolve() == (kits_dataset / "case_00004" / "imaging.nii.gz").resolve()
    meta = json.loads((raw.folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3}
    assert "regions_class_order" not in meta
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["numTraining"] == 2
    assert meta["file_ending"] == ".nii.gz"


def test_rerun_leaves_only_the_new_selection(kits_dataset, tmp_path):
    write_raw_dataset(kits_dataset, tmp_path, 7, "K", ["case_00000", "case_00001"], ["case_00004"])
    raw = write_raw_dataset(kits_dataset, tmp_path, 7, "K", ["case_00002"], ["case_00003"])
    assert [p.name for p in (raw.folder / "labelsTr").iterdir()] == ["case_00002.nii.gz"]
    assert [p.name for p in (raw.folder / "imagesTs").iterdir()] == ["case_00003_0000.nii.gz"]
    assert json.loads((raw.folder / "dataset.json").read_text())["numTraining"] == 1


def test_missing_image_is_reported(kits_dataset, tmp_path):
    (kits_dataset / "case_00001" / "imaging.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="case_00001"):
        write_raw_dataset(kits_dataset, tmp_path, 501, "K", ["case_00001"], ["case_00002"])


@pytest.mark.parametrize(("dataset_id", "name"), [(0, "K"), (1000, "K"), (5, "a-b")])
def test_folder_name_rules(dataset_id, name):
    with pytest.raises(ValueError):
        dataset_folder_name(dataset_id, name)
    assert dataset_folder_name(12, "Kits_2") == "Dataset012_Kits_2"
