"""Case selection of the equal-budget comparison: case-id files, disjoint sets, the test-case link folder."""

from __future__ import annotations

import pytest
from equal_budget.cases import check_split, link_cases, read_case_ids, write_case_ids


def test_reads_commas_and_lines_in_order_and_limits(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("case_00004,case_00001,\ncase_00003\n case_00000 \n")
    assert read_case_ids(path) == ["case_00004", "case_00001", "case_00003", "case_00000"]
    assert read_case_ids(path, limit=2) == ["case_00004", "case_00001"]


def test_write_then_read_round_trip(tmp_path):
    ids = ["case_00002", "case_00007"]
    assert read_case_ids(write_case_ids(ids, tmp_path / "sub" / "ids.txt")) == ids


@pytest.mark.parametrize(("text", "message"), [("case_00001,kidney", "not case ids"),
                                               ("case_00001,case_00001", "twice")])
def test_refuses_bad_files(tmp_path, text, message):
    path = tmp_path / "ids.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_case_ids(path)


def test_missing_file_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_pool.txt"):
        read_case_ids(tmp_path / "absent.txt")


def test_split_must_be_disjoint_and_complete(kits_dataset):
    check_split(kits_dataset, ["case_00000", "case_00001"], ["case_00002"])
    with pytest.raises(ValueError, match="both training and test"):
        check_split(kits_dataset, ["case_00000", "case_00001"], ["case_00001"])
    (kits_dataset / "case_00002" / "segmentation.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="case_00002"):
        check_split(kits_dataset, ["case_00000"], ["case_00002"])


def test_link_folder_holds_exactly_the_selection(kits_dataset, tmp_path):
    folder = link_cases(kits_dataset, ["case_00001", "case_00003"], tmp_path / "test_input")
    assert sorted(p.name for p in folder.iterdir()) == ["case_00001", "case_00003"]
    assert (folder / "case_00001" / "imaging.nii.gz").is_file()
    link_cases(kits_dataset, ["case_00003", "case_00004"], folder)
    assert sorted(p.name for p in folder.iterdir()) == ["case_00003", "case_00004"]
    assert (folder / "case_00004").resolve() == (kits_dataset / "case_00004").resolve()
