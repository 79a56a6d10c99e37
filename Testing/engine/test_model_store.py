"""The model store: side-by-side versions, resolving, safe and all-or-nothing imports, verify and remove."""

from __future__ import annotations

import logging
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from kidneytumorseg.errors import MissingInputError, ModelNotFoundError, ModelPackageError
from kidneytumorseg.model_package import MANIFEST_NAME, write_package
from kidneytumorseg.model_store import (
    MODELS_DIR_ENV,
    ModelStore,
    default_bundled_dir,
    default_user_dir,
    read_package_archive,
)


def make_package(folder: Path, name: str = "tiny", version: str = "1.0.0", description: str = "") -> Path:
    return write_package(
        folder,
        name=name,
        version=version,
        description=description or f"{name} {version}",
        preprocessing={"target_spacing": [3.0, 1.5, 1.5], "normalization": {"scheme": "clip_zscore"}},
        network={"features": 2},
        patch_size=[8, 8, 8],
        inference={},
        postprocessing={},
        members=[({"name": "fold0"}, {"weight": torch.arange(6, dtype=torch.float32)})],
    )


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*")):
            zipped.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def snapshot(root: Path) -> list[tuple[str, bytes | None]]:
    if not root.exists():
        return []
    return sorted((p.relative_to(root).as_posix(), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "user"))
    return ModelStore(tmp_path / "bundled", default_user_dir())


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    return tmp_path / "sources"


def test_default_store_uses_the_env_var_and_the_extension_resources(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "mine"))
    store = ModelStore.default()
    assert store.user_dir == tmp_path / "mine"
    assert store.bundled_dir == default_bundled_dir()
    assert default_bundled_dir().parts[-3:] == ("KidneyTumorSeg", "Resources", "Models")


@pytest.mark.parametrize(
    ("platform", "variables", "expected"),
    [
        ("linux", {"XDG_DATA_HOME": "{tmp}/xdg"}, "{tmp}/xdg/KidneyTumorSeg/models"),
        ("linux", {}, "{tmp}/home/.local/share/KidneyTumorSeg/models"),
        ("darwin", {}, "{tmp}/home/Library/Application Support/KidneyTumorSeg/models"),
        ("win32", {"LOCALAPPDATA": "{tmp}/local"}, "{tmp}/local/KidneyTumorSeg/models"),
    ],
)
def test_default_user_dir_per_platform(tmp_path, monkeypatch, platform, variables, expected) -> None:
    for variable in (MODELS_DIR_ENV, "XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value.format(tmp=tmp_path))
    monkeypatch.setattr(sys, "platform", platform)
    assert default_user_dir() == Path(expected.format(tmp=tmp_path))


def test_import_folder_and_zip_side_by_side_and_resolve_the_newest(store: ModelStore, sources: Path) -> None:
    for version in ("1.9.0", "1.10.0", "1.2.0"):
        store.import_package(make_package(sources / version, version=version))
    nested_zip = zip_folder(make_package(sources / "other", name="other"), sources / "other.zip", prefix="other/")
    entry = store.import_package(nested_zip)
    assert (entry.name, entry.version, entry.source) == ("other", "1.0.0", "user")
    assert entry.path == store.user_dir / "other" / "1.0.0"
    assert [(e.name, e.version) for e in store.list()] == [
        ("other", "1.0.0"),
        ("tiny", "1.2.0"),
        ("tiny", "1.9.0"),
        ("tiny", "1.10.0"),
    ]
    assert store.list()[3].description == "tiny 1.10.0"
    assert store.resolve("tiny").version == "1.10.0"
    assert store.resolve("tiny@1.9.0").version == "1.9.0"
    assert store.verify("tiny@1.2.0").version == "1.2.0"
    assert not any(p.name.startswith(".") for p in store.user_dir.iterdir())


def test_a_zip_with_the_package_at_its_root_imports(store: ModelStore, sources: Path) -> None:
    archive = zip_folder(make_package(sources / "tiny"), sources / "tiny.zip")
    assert store.import_package(archive).path.joinpath(MANIFEST_NAME).is_file()


def test_user_copy_wins_a_tie_with_the_bundled_one(store: ModelStore, sources: Path) -> None:
    make_package(store.bundled_dir / "tiny" / "1.0.0", description="bundled")
    make_package(store.bundled_dir / "tiny" / "2.0.0", version="2.0.0", description="bundled two")
    assert store.resolve("tiny").description == "bundled two"
    store.import_package(make_package(sources / "tiny", version="2.0.0", description="mine"))
    assert store.resolve("tiny").description == "mine"
    assert store.resolve("tiny@2.0.0").description == "mine"
    assert [(e.version, e.source) for e in store.list()] == [
        ("1.0.0", "bundled"),
        ("2.0.0", "bundled"),
        ("2.0.0", "user"),
    ]


def test_resolve_unknown_lists_what_is_available_and_how_to_import(store: ModelStore, sources: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="The model store is empty") as raised:
        store.resolve("kits")
    assert "kidneytumorseg models import" in str(raised.value)
    store.import_package(make_package(sources / "tiny"))
    with pytest.raises(ModelNotFoundError, match=r"No model 'kits'.*Available: tiny@1\.0\.0 \(user\)"):
        store.resolve("kits")
    with pytest.raises(ModelNotFoundError, match="Available: tiny@1.0.0"):
        store.resolve("tiny@3.0.0")
    with pytest.raises(ModelNotFoundError, match="NAME or NAME@VERSION"):
        store.resolve("tiny@latest")


def test_importing_an_existing_version_needs_overwrite(store: ModelStore, sources: Path) -> None:
    store.import_package(make_package(sources / "a", description="first"))
    before = snapshot(store.user_dir)
    second = make_package(sources / "b", description="second")
    with pytest.raises(ModelPackageError, match=r"tiny@1\.0\.0 is already in the store.*--overwrite"):
        store.import_package(second)
    assert snapshot(store.user_dir) == before
    store.import_package(second, overwrite=True)
    assert store.resolve("tiny").description == "second"
    assert not any(p.name.startswith(".") for p in store.user_dir.iterdir())


def _evil_zip(archive: Path, package: Path, name: str, link: bool = False) -> Path:
    zip_folder(package, archive)
    with zipfile.ZipFile(archive, "a") as zipped:
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zipped.writestr(info, "/etc/passwd" if link else "owned")
    return archive


@pytest.mark.parametrize(
    ("entry", "link", "message"),
    [
        ("../escaped.txt", False, "unsafe path '../escaped.txt'"),
        ("tiny/../../escaped.txt", False, "unsafe path"),
        ("/tmp/escaped.txt", False, "unsafe path '/tmp/escaped.txt'"),
        ("C:/escaped.txt", False, "unsafe path"),
        ("link", True, "symbolic link 'link'"),
    ],
)
def test_unsafe_archives_are_refused_and_the_store_is_unchanged(store, sources, tmp_path, entry, link, message) -> None:
    store.import_package(make_package(sources / "kept", name="kept"))
    before = snapshot(store.user_dir)
    archive = _evil_zip(sources / "evil.zip", make_package(sources / "tiny"), entry, link)
    with pytest.raises(ModelPackageError, match=message):
        store.import_package(archive)
    assert snapshot(store.user_dir) == before
    assert not list(tmp_path.rglob("escaped.txt")) and not Path("/tmp/escaped.txt").exists()


def test_an_archive_over_the_size_limit_is_refused(sources: Path, tmp_path: Path) -> None:
    archive = zip_folder(make_package(sources / "tiny"), sources / "tiny.zip")
    with pytest.raises(ModelPackageError, match="more than the limit"):
        read_package_archive(archive, tmp_path / "out", max_bytes=100)
    assert not (tmp_path / "out").exists()


def test_tampered_or_broken_imports_leave_the_store_exactly_as_it_was(store: ModelStore, sources: Path) -> None:
    store.import_package(make_package(sources / "kept", name="kept"))
    before = snapshot(store.user_dir)
    tampered = make_package(sources / "tiny")
    data = bytearray((tampered / "fold0.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "fold0.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="was modified or damaged"):
        store.import_package(tampered)
    with pytest.raises(ModelPackageError, match="was modified or damaged"):
        store.import_package(zip_folder(tampered, sources / "tampered.zip"))
    (sources / "notes.txt").write_text("not a package")
    with pytest.raises(ModelPackageError, match="neither a .zip archive nor a folder"):
        store.import_package(sources / "notes.txt")
    (sources / "empty").mkdir()
    with pytest.raises(ModelPackageError, match="no model.json at its top or one folder down"):
        store.import_package(sources / "empty")
    with pytest.raises(MissingInputError, match="does not exist"):
        store.import_package(sources / "absent.zip")
    assert snapshot(store.user_dir) == before


def test_a_failed_first_import_does_not_even_create_the_user_folder(store: ModelStore, sources: Path) -> None:
    (sources / "empty").mkdir(parents=True)
    with pytest.raises(ModelPackageError):
        store.import_package(sources / "empty")
    assert not store.user_dir.exists()


def test_verify_names_a_file_damaged_after_import(store: ModelStore, sources: Path) -> None:
    entry = store.import_package(make_package(sources / "tiny"))
    (entry.path / "fold0.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelPackageError, match=r"fold0\.safetensors was modified or damaged"):
        store.verify("tiny")


def test_list_skips_damaged_packages_with_a_warning(store: ModelStore, sources: Path, caplog) -> None:
    entry = store.import_package(make_package(sources / "tiny"))
    (entry.path / "fold0.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="kidneytumorseg.model_store"):
        assert store.list() == []
    assert "Skipping the damaged package" in caplog.text
    with pytest.raises(ModelPackageError, match="is missing"):
        store.resolve("tiny")  # a damaged package is reported, never silently replaced by another version


def test_remove_deletes_user_packages_and_refuses_bundled_ones(store: ModelStore, sources: Path) -> None:
    make_package(store.bundled_dir / "shipped" / "1.0.0", name="shipped")
    store.import_package(make_package(sources / "a", version="1.0.0"))
    store.import_package(make_package(sources / "b", version="2.0.0"))
    with pytest.raises(ModelPackageError, match="bundled with the extension.*cannot be removed"):
        store.remove("shipped@1.0.0")
    with pytest.raises(ModelNotFoundError, match="Say which version"):
        store.remove("tiny")
    assert store.remove("tiny@2.0.0").version == "2.0.0"
    assert store.resolve("tiny").version == "1.0.0"
    store.remove("tiny@1.0.0")
    assert not (store.user_dir / "tiny").exists()
    assert [e.spec for e in store.list()] == ["shipped@1.0.0"]
    assert (store.bundled_dir / "shipped" / "1.0.0" / MANIFEST_NAME).is_file()
    with pytest.raises(ModelNotFoundError, match="No model 'tiny@1.0.0'"):
        store.remove("tiny@1.0.0")


def test_hand_edited_store_folders_are_reported(store: ModelStore, sources: Path) -> None:
    entry = store.import_package(make_package(sources / "tiny"))
    shutil.move(entry.path, store.user_dir / "tiny" / "1.5.0")
    with pytest.raises(ModelPackageError, match="describes tiny@1.0.0, not tiny@1.5.0"):
        store.resolve("tiny")
