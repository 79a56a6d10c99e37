"""Folder confinement of the web front-end: only CT files inside the configured folders can be named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kidneytumorseg_web.paths import DataFolders, PathRefused, safe_upload_name


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    (data / "case1").mkdir(parents=True)
    (data / "case1" / "imaging.nii.gz").write_bytes(b"x")
    (data / "case1" / "notes.txt").write_text("not a CT")
    (data / ".hidden").mkdir()
    (data / ".hidden" / "secret.nii.gz").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "other.nii.gz").write_bytes(b"x")
    os.symlink(outside / "other.nii.gz", data / "link-out.nii.gz")
    os.symlink(outside, data / "dir-out")
    os.symlink(data / "case1" / "imaging.nii.gz", data / "link-in.nii.gz")
    return {"data": data, "outside": outside}


def test_lists_ct_files_inside_the_folders_only(tree):
    folders = DataFolders([tree["data"]])
    assert folders.list_files() == ["data/case1/imaging.nii.gz", "data/link-in.nii.gz"]


def test_resolves_an_offered_key_and_an_absolute_path_inside(tree):
    folders = DataFolders([tree["data"]])
    wanted = (tree["data"] / "case1" / "imaging.nii.gz").resolve()
    assert folders.resolve("data/case1/imaging.nii.gz") == wanted
    assert folders.resolve(str(wanted)) == wanted
    assert folders.resolve("data/link-in.nii.gz") == wanted


@pytest.mark.parametrize("requested", [
    "data/../outside/other.nii.gz",          # traversal in a key
    "data/case1/../../outside/other.nii.gz",
    "../outside/other.nii.gz",               # unknown folder label
    "/etc/passwd",                           # absolute, outside
    "data/link-out.nii.gz",                  # a link out of the folder
    "data/dir-out/other.nii.gz",             # a linked folder out of the folder
    "data//etc/passwd",
    "data/case1/notes.txt",                  # inside, but not a CT
    "data/case1",                            # a folder
    "data/case1/missing.nii.gz",
    "data/case1/imaging.nii.gz\x00.txt",
    "",
])
def test_refuses_paths_outside_or_not_ct(tree, requested):
    folders = DataFolders([tree["data"]])
    with pytest.raises(PathRefused):
        folders.resolve(requested)


def test_refuses_the_absolute_path_of_a_file_outside(tree):
    folders = DataFolders([tree["data"]])
    with pytest.raises(PathRefused, match="outside the allowed data folders"):
        folders.resolve(str(tree["outside"] / "other.nii.gz"))


def test_no_folders_configured_refuses_everything(tree):
    with pytest.raises(PathRefused, match="no data folders"):
        DataFolders([]).resolve(str(tree["data"] / "case1" / "imaging.nii.gz"))


def test_labels_are_unique_and_missing_folders_are_an_error(tmp_path):
    (tmp_path / "a" / "ct").mkdir(parents=True)
    (tmp_path / "b" / "ct").mkdir(parents=True)
    folders = DataFolders([tmp_path / "a" / "ct", tmp_path / "b" / "ct", tmp_path / "a" / "ct"])
    assert [f.label for f in folders.folders] == ["ct", "ct-2"]
    with pytest.raises(ValueError, match="does not exist"):
        DataFolders([tmp_path / "missing"])


@pytest.mark.parametrize(("name", "cleaned"), [
    ("imaging.nii.gz", "imaging.nii.gz"),
    ("../../etc/cron.d/x.nii.gz", "x.nii.gz"),
    ("C:\\Users\\me\\scan 1.nrrd", "scan_1.nrrd"),
    ("..hidden.mha", "hidden.mha"),
])
def test_upload_names_keep_a_clean_base_name(name, cleaned):
    assert safe_upload_name(name) == cleaned


@pytest.mark.parametrize("name", ["", "notes.txt", "archive.zip", "../..", "x.nii.gz.exe"])
def test_upload_names_must_be_ct_files(name):
    with pytest.raises(PathRefused):
        safe_upload_name(name)
