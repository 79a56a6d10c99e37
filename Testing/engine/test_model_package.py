"""Model packages: writing, validating, verifying and loading, with a tiny injected network builder."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from kidneytumorseg.errors import ModelPackageError
from kidneytumorseg.labels import LABEL_COLORS
from kidneytumorseg.model_package import (
    MANIFEST_NAME,
    ModelPackage,
    build_member,
    file_sha256,
    load_member_weights,
    move_into_place,
    parse_version,
    verify,
    write_package,
)

NETWORK = {"in_channels": 1, "num_classes": 4, "features": 2}
PREPROCESSING = {"target_spacing": [3.0, 1.5, 1.5], "normalization": {"scheme": "clip_zscore", "clip": [-79, 304]}}
INFERENCE = {"tile_overlap": 0.5, "mirror_axes": [0, 1, 2]}
POSTPROCESSING = {"max_kidney_components": 2, "hysteresis": None}


def tiny_builder(config: dict[str, Any]) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv3d(config["in_channels"], config["features"], 3, padding=1),
        torch.nn.Conv3d(config["features"], config["num_classes"], 1),
    )


def tiny_network(seed: int = 0, config: dict[str, Any] = NETWORK) -> torch.nn.Module:
    torch.manual_seed(seed)
    return tiny_builder(config)


def write_tiny(folder: Path, **changes: Any) -> Path:
    arguments: dict[str, Any] = {
        "name": "tiny",
        "version": "1.0.0",
        "preprocessing": PREPROCESSING,
        "network": NETWORK,
        "patch_size": [8, 8, 8],
        "inference": INFERENCE,
        "postprocessing": POSTPROCESSING,
        "members": [({"name": "fold0"}, tiny_network().state_dict())],
        "provenance": {"recipe": "test"},
        "description": "a tiny test package",
    }
    return write_package(folder, **{**arguments, **changes})


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    return write_tiny(tmp_path / "tiny")


def edit_manifest(folder: Path, edit: Any) -> None:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    edit(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_written_package_loads_back_with_equal_weights_and_fields(package_dir: Path) -> None:
    package = ModelPackage.load(package_dir)
    assert (package.name, package.version, package.description) == ("tiny", "1.0.0", "a tiny test package")
    assert package.labels[2] == ("tumor", LABEL_COLORS[2]) and sorted(package.labels) == [1, 2, 3]
    (member,) = package.members
    assert (member.name, member.file, member.role) == ("fold0", "fold0.safetensors", "segmenter")
    assert member.sha256 == file_sha256(package_dir / "fold0.safetensors")
    assert member.network == NETWORK and member.patch_size == (8, 8, 8) and member.preprocessing == PREPROCESSING
    assert package.postprocessing == POSTPROCESSING and package.provenance["recipe"] == "test"
    assert "created" in package.provenance and package.segmenters == (member,) and package.localizer is None
    verify(package)
    weights = load_member_weights(package, "fold0")
    expected = tiny_network().state_dict()
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[key], expected[key]) for key in expected)
    network = build_member(package, member, builder=tiny_builder)
    assert not network.training
    sample = torch.randn(1, 1, 4, 4, 4)
    with torch.no_grad():
        assert torch.allclose(network(sample), tiny_network().eval()(sample))
    assert sorted(p.name for p in package_dir.parent.iterdir()) == ["tiny"]  # no staging folder left behind


def test_member_overrides_replace_the_package_defaults(tmp_path: Path) -> None:
    localizer_network = {"in_channels": 1, "num_classes": 2, "features": 3}
    localizer_info = {
        "name": "localizer",
        "role": "localizer",
        "network": localizer_network,
        "patch_size": [16, 16, 16],
        "preprocessing": {"target_spacing": [6.0, 6.0, 6.0], "normalization": {"scheme": "clip_zscore"}},
    }
    members = [
        ({"name": "fold0"}, tiny_network().state_dict()),
        (localizer_info, tiny_network(1, localizer_network).state_dict()),
    ]
    package = ModelPackage.load(write_tiny(tmp_path / "two", members=members))
    assert package.localizer is not None and package.localizer.patch_size == (16, 16, 16)
    assert package.localizer.network == localizer_network and package.localizer.inference == INFERENCE
    assert package.member("fold0").preprocessing == PREPROCESSING
    assert build_member(package, "localizer", builder=tiny_builder)[1].out_channels == 2
    with pytest.raises(ModelPackageError, match="no member 'fold9'; it has: fold0, localizer"):
        package.member("fold9")


def test_tampered_weights_fail_verification_and_are_never_built(package_dir: Path) -> None:
    package = ModelPackage.load(package_dir)
    weights_file = package_dir / "fold0.safetensors"
    flip_one_byte(weights_file)
    with pytest.raises(ModelPackageError, match="was modified or damaged") as raised:
        verify(package)
    assert str(weights_file) in str(raised.value) and "re-import the package from its original source" in str(
        raised.value
    )
    with pytest.raises(ModelPackageError, match="fold0.safetensors was modified or damaged"):
        build_member(package, "fold0", builder=tiny_builder)


def test_missing_member_file_is_named(package_dir: Path) -> None:
    (package_dir / "fold0.safetensors").unlink()
    with pytest.raises(ModelPackageError, match=r"fold0\.safetensors \(member 'fold0'\) is missing"):
        ModelPackage.load(package_dir)


def test_missing_manifest_and_invalid_json_are_named(tmp_path: Path, package_dir: Path) -> None:
    with pytest.raises(ModelPackageError, match="model.json does not exist"):
        ModelPackage.load(tmp_path / "nowhere")
    (package_dir / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelPackageError, match="model.json is not valid JSON"):
        ModelPackage.load(package_dir)


def _set(path: str, value: Any) -> Any:
    def edit(manifest: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target = manifest
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("network", KeyError), "required key 'network' is missing"),
        (_set("members/0/sha256", KeyError), "required key 'members[0].sha256' is missing"),
        (_set("labels/4", {"name": "liver", "color": [1, 0, 0]}), "'labels' must be an object with exactly"),
        (_set("labels/2/name", "mass"), "'labels.2.name' must be 'tumor'"),
        (_set("labels/1/color", [1.2, 0, 0]), "'labels.1.color' must be 3 numbers from 0 to 1"),
        (_set("labels/3/color", [0.5, 0.5]), "'labels.3.color' must be 3 numbers"),
        (_set("version", "1.0"), "'version' must be a version MAJOR.MINOR.PATCH"),
        (_set("version", 1), "'version' must be a string"),
        (_set("format_version", 2), "reads format 1"),
        (_set("patch_size", [0, 8, 8]), "'patch_size' must be 2 or 3 positive integers"),
        (_set("preprocessing/target_spacing", [1.0, 1.0]), "'preprocessing.target_spacing' must be 3 positive"),
        (_set("members/0/role", "teacher"), "'members[0].role' must be one of"),
        (_set("members/0/file", "../fold0.safetensors"), "'members[0].file' must be the name of a .safetensors"),
        (_set("members/0/sha256", "abc"), "'members[0].sha256' must be the file's SHA-256"),
        (_set("members/0/network", [1]), "'members[0].network' must be an object"),
        (_set("members", []), "at least one member with role 'segmenter'"),
        (_set("name", "../escape"), "'name' must be letters, digits"),
    ],
)
def test_bad_manifest_gives_an_error_naming_file_and_key(package_dir: Path, edit: Any, message: str) -> None:
    edit_manifest(package_dir, edit)
    with pytest.raises(ModelPackageError, match=re.escape(message)) as raised:
        ModelPackage.load(package_dir)
    assert str(package_dir / MANIFEST_NAME) in str(raised.value)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("a model package file was unpickled")

    for owner, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(owner, name, refuse)


def test_a_pickle_renamed_safetensors_is_refused_and_never_unpickled(package_dir: Path, no_unpickling) -> None:
    weights_file = package_dir / "fold0.safetensors"
    torch.save(tiny_network().state_dict(), weights_file)  # pickles (Pickler is not patched), never unpickles
    package = ModelPackage.load(package_dir)
    with pytest.raises(ModelPackageError, match="was modified or damaged"):
        build_member(package, "fold0", builder=tiny_builder)
    # Even with a manifest that vouches for the pickle's hash, it is not read as weights.
    edit_manifest(package_dir, _set("members/0/sha256", file_sha256(weights_file)))
    with pytest.raises(ModelPackageError, match="is not a readable safetensors file"):
        build_member(ModelPackage.load(package_dir), "fold0", builder=tiny_builder)


def test_weights_that_do_not_fit_the_network_are_refused(package_dir: Path) -> None:
    package = ModelPackage.load(package_dir)
    wider = lambda config: tiny_builder({**config, "features": 5})  # noqa: E731
    with pytest.raises(ModelPackageError, match="do not fit the network description of member 'fold0'"):
        build_member(package, "fold0", builder=wider)
    deeper = lambda config: torch.nn.Sequential(*tiny_builder(config), torch.nn.Conv3d(4, 4, 1))  # noqa: E731
    with pytest.raises(ModelPackageError, match="do not fit"):
        build_member(package, "fold0", builder=deeper)


def test_a_network_description_the_builder_rejects_is_a_package_error(package_dir: Path) -> None:
    def picky(config: dict[str, Any]) -> torch.nn.Module:
        raise ValueError("block type 'fancy' is unknown")

    with pytest.raises(ModelPackageError, match="does not describe a network.*block type 'fancy'"):
        build_member(ModelPackage.load(package_dir), "fold0", builder=picky)


def test_write_package_never_overwrites_unless_asked(package_dir: Path) -> None:
    with pytest.raises(ModelPackageError, match="already exists; pass overwrite=True"):
        write_tiny(package_dir, version="2.0.0")
    assert ModelPackage.load(package_dir).version == "1.0.0"
    write_tiny(package_dir, version="2.0.0", overwrite=True)
    assert ModelPackage.load(package_dir).version == "2.0.0"
    assert sorted(p.name for p in package_dir.parent.iterdir()) == ["tiny"]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="'version' must be a version"):
        write_tiny(tmp_path / "bad", version="1.0")
    assert list(tmp_path.iterdir()) == []


def test_move_into_place_puts_the_old_folder_back_when_the_rename_fails(tmp_path: Path, monkeypatch) -> None:
    old, new = tmp_path / "target", tmp_path / "staging"
    old.mkdir()
    (old / "keep.txt").write_text("old")
    new.mkdir()
    real_rename = os.rename

    def failing_rename(source: Any, destination: Any) -> None:
        if Path(source) == new:
            raise OSError(28, "disk full")
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        move_into_place(new, old, overwrite=True)
    assert (old / "keep.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging", "target"]


def test_parse_version_orders_semantically() -> None:
    assert parse_version("1.10.0") > parse_version("1.9.0") > parse_version("1.2.11")
    for bad in ("1.0", "1.0.0-rc1", "01.0.0", "v1.0.0"):
        with pytest.raises(ModelPackageError, match="MAJOR.MINOR.PATCH"):
            parse_version(bad)


def test_refiners_carry_their_stage_input_and_inconsistent_members_are_refused(tmp_path: Path) -> None:
    refiner_network = {"in_channels": 2, "num_classes": 3, "features": 2}
    refiner = {"name": "tumor", "role": "refiner", "network": refiner_network,
               "preprocessing": {**PREPROCESSING, "stage_input": {"probability_channels": ["kidney_and_mass"]}},
               "inference": {**INFERENCE, "output_labels": [0, 2, 3]}}
    members = [({"name": "fold0"}, tiny_network().state_dict()),
               (refiner, tiny_network(1, refiner_network).state_dict())]
    package = ModelPackage.load(write_tiny(tmp_path / "two-stage", members=members))
    assert [m.name for m in package.refiners] == ["tumor"] and [m.name for m in package.segmenters] == ["fold0"]
    inputs = package.member("tumor").inputs
    assert inputs.stage_input.probability_channels == ("kidney_and_mass",) and inputs.output_labels == (0, 2, 3)
    assert package.member("fold0").inputs.stage_input is None
    no_stage = {**refiner, "preprocessing": PREPROCESSING}
    with pytest.raises(ModelPackageError, match="member 'tumor': a refiner needs 'preprocessing.stage_input'"):
        write_tiny(tmp_path / "bad", members=[members[0], (no_stage, members[1][1])])
    wrong_channels = {**refiner, "network": {**refiner_network, "in_channels": 1}}
    with pytest.raises(ModelPackageError, match="in_channels 1 but its input has 2 channels"):
        write_tiny(tmp_path / "bad2", members=[members[0], (wrong_channels, members[1][1])])
