"""The manifest (model.json) of a model package: every malformed key is refused with an error that names the
file and the key, missing member files are named, and versions are MAJOR.MINOR.PATCH."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tiny_package import edit_manifest, set_key, write_tiny

from kidneytumorseg import model_manifest, model_package
from kidneytumorseg.errors import ModelPackageError
from kidneytumorseg.model_package import MANIFEST_NAME, ModelPackage, parse_version


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    return write_tiny(tmp_path / "tiny")


def test_missing_member_file_is_named(package_dir: Path) -> None:
    (package_dir / "fold0.safetensors").unlink()
    with pytest.raises(ModelPackageError, match=r"fold0\.safetensors \(member 'fold0'\) is missing"):
        ModelPackage.load(package_dir)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (set_key("network", KeyError), "required key 'network' is missing"),
        (set_key("members/0/sha256", KeyError), "required key 'members[0].sha256' is missing"),
        (set_key("labels/4", {"name": "liver", "color": [1, 0, 0]}), "'labels' must be an object with exactly"),
        (set_key("labels/2/name", "mass"), "'labels.2.name' must be 'tumor'"),
        (set_key("labels/1/color", [1.2, 0, 0]), "'labels.1.color' must be 3 numbers from 0 to 1"),
        (set_key("labels/3/color", [0.5, 0.5]), "'labels.3.color' must be 3 numbers"),
        (set_key("version", "1.0"), "'version' must be a version MAJOR.MINOR.PATCH"),
        (set_key("version", 1), "'version' must be a string"),
        (set_key("format_version", 2), "reads format 1"),
        (set_key("patch_size", [0, 8, 8]), "'patch_size' must be 2 or 3 positive integers"),
        (set_key("preprocessing/target_spacing", [1.0, 1.0]), "'preprocessing.target_spacing' must be 3 positive"),
        (set_key("members/0/role", "teacher"), "'members[0].role' must be one of"),
        (set_key("members/0/file", "../fold0.safetensors"), "'members[0].file' must be the name of a .safetensors"),
        (set_key("members/0/sha256", "abc"), "'members[0].sha256' must be the file's SHA-256"),
        (set_key("members/0/network", [1]), "'members[0].network' must be an object"),
        (set_key("members", []), "at least one member with role 'segmenter'"),
        (set_key("name", "../escape"), "'name' must be letters, digits"),
    ],
)
def test_bad_manifest_gives_an_error_naming_file_and_key(package_dir: Path, edit: Any, message: str) -> None:
    edit_manifest(package_dir, edit)
    with pytest.raises(ModelPackageError, match=re.escape(message)) as raised:
        ModelPackage.load(package_dir)
    assert str(package_dir / MANIFEST_NAME) in str(raised.value)


def test_parse_version_orders_semantically() -> None:
    assert parse_version("1.10.0") > parse_version("1.9.0") > parse_version("1.2.11")
    for bad in ("1.0", "1.0.0-rc1", "01.0.0", "v1.0.0"):
        with pytest.raises(ModelPackageError, match="MAJOR.MINOR.PATCH"):
            parse_version(bad)


@pytest.mark.parametrize(("text", "expected"), [("1.0.0", (1, 0, 0)), ("0.0.0", (0, 0, 0)), ("10.20.30", (10, 20, 30))])
def test_parse_version_accepts_major_minor_patch(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(text) == expected


@pytest.mark.parametrize("bad", ["01.0.0", "1.00.0", "1.0", "1.0.0.0", "1.0.0-rc1", " 1.0.0", "1.0.0\n", "", None, 1])
def test_parse_version_refuses_anything_else_naming_the_expected_form(bad: Any) -> None:
    with pytest.raises(ModelPackageError) as raised:
        parse_version(bad)
    assert str(raised.value) == f"{bad!r} is not a version of the form MAJOR.MINOR.PATCH, such as 1.0.0."


def test_model_package_reexports_the_manifest_names() -> None:
    for name in ("FORMAT_VERSION", "IMAGE_INTERPOLATIONS", "MANIFEST_NAME", "ROLES", "MemberSpec", "parse_version"):
        assert getattr(model_package, name) is getattr(model_manifest, name)
