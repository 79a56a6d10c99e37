"""Model packages: writing, verifying and loading, with a tiny injected network builder (the validation of
model.json itself is tested in test_model_manifest.py)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_package import (
    INFERENCE,
    NETWORK,
    POSTPROCESSING,
    PREPROCESSING,
    edit_manifest,
    set_key,
    tiny_builder,
    tiny_network,
    write_tiny,
)

from kidneytumorseg.errors import ModelPackageError
from kidneytumorseg.labels import LABEL_COLORS
from kidneytumorseg.model_package import (
    MANIFEST_NAME,
    ModelPackage,
    build_member,
    file_sha256,
    load_member_weights,
    move_into_place,
    verify,
    write_package_version,
)


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    return write_tiny(tmp_path / "tiny")


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


def test_missing_manifest_and_invalid_json_are_named(tmp_path: Path, package_dir: Path) -> None:
    with pytest.raises(ModelPackageError, match="model.json does not exist"):
        ModelPackage.load(tmp_path / "nowhere")
    (package_dir / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelPackageError, match="model.json is not valid JSON"):
        ModelPackage.load(package_dir)


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
    edit_manifest(package_dir, set_key("members/0/sha256", file_sha256(weights_file)))
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


def test_another_version_replaces_the_named_members_and_copies_the_rest(tmp_path):
    members = [({"name": "fold0"}, tiny_network().state_dict()), ({"name": "fold1"}, tiny_network().state_dict())]
    old = ModelPackage.load(write_tiny(tmp_path / "old", members=members))
    new_weights = {k: v + 1 for k, v in load_member_weights(old, "fold1").items()}
    new = ModelPackage.load(write_package_version(old, tmp_path / "new", version="1.0.1",
                                                  weights={"fold1": new_weights}, provenance={"parent": "tiny@1.0.0"}))
    verify(new)
    assert (new.version, new.description, new.provenance["parent"]) == ("1.0.1", old.description, "tiny@1.0.0")
    assert new.member("fold0").sha256 == old.member("fold0").sha256
    assert all(torch.equal(new_weights[k], v) for k, v in load_member_weights(new, "fold1").items())
    assert new.manifest["postprocessing"] == old.manifest["postprocessing"] and new.labels == old.labels
    with pytest.raises(ModelPackageError, match="already exists"):
        write_package_version(old, tmp_path / "new", version="1.0.1", weights={})
