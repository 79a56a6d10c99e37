"""The ``kidneytumorseg models`` command end to end through ``main()``: output and exit codes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from kidneytumorseg.cli.main import USER_ERROR_EXIT_CODE, main
from kidneytumorseg.model_package import write_package
from kidneytumorseg.model_store import MODELS_DIR_ENV


def make_zip(folder: Path, version: str = "1.0.0", description: str = "tiny test model") -> Path:
    package = write_package(
        folder / version,
        name="tiny",
        version=version,
        description=description,
        preprocessing={"target_spacing": [3.0, 1.5, 1.5], "normalization": {"scheme": "clip_zscore"}},
        network={"features": 2},
        patch_size=[8, 8, 8],
        inference={},
        postprocessing={},
        members=[({"name": "fold0"}, {"weight": torch.ones(3)})],
    )
    archive = folder / f"tiny-{version}.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(package.iterdir()):
            zipped.write(path, f"tiny/{path.name}")
    return archive


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    return {"store": tmp_path / "store", "bundled": tmp_path / "bundled", "sources": tmp_path / "sources"}


def models(folders: dict[str, Path], *arguments: str) -> int:
    return main(["models", *arguments, "--store-dir", str(folders["store"]), "--bundled-dir", str(folders["bundled"])])


def test_list_import_verify_remove_end_to_end(folders: dict[str, Path], capsys) -> None:
    assert models(folders, "list") == 0
    assert "No model packages installed" in capsys.readouterr().out

    archive = make_zip(folders["sources"])
    assert models(folders, "import", str(archive)) == 0
    target = folders["store"] / "tiny" / "1.0.0"
    assert capsys.readouterr().out == f"Imported tiny@1.0.0 into {target}\n"

    assert models(folders, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "version", "source", "description"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["tiny", "1.0.0", "user", "tiny", "test", "model"]

    assert models(folders, "verify", "tiny") == 0
    assert "tiny@1.0.0: all 1 member files match their SHA-256" in capsys.readouterr().out

    assert models(folders, "remove", "tiny@1.0.0") == 0
    assert capsys.readouterr().out.startswith("Removed tiny@1.0.0")
    assert not (folders["store"] / "tiny").exists()


def test_verify_of_a_damaged_package_is_a_user_error(folders: dict[str, Path], capsys) -> None:
    assert models(folders, "import", str(make_zip(folders["sources"]))) == 0
    (folders["store"] / "tiny" / "1.0.0" / "fold0.safetensors").write_bytes(b"tampered")
    capsys.readouterr()
    assert models(folders, "verify", "tiny@1.0.0") == USER_ERROR_EXIT_CODE == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "fold0.safetensors was modified or damaged" in captured.err
    assert "Traceback" not in captured.err


def test_reimport_needs_overwrite(folders: dict[str, Path], capsys) -> None:
    archive = make_zip(folders["sources"])
    assert models(folders, "import", str(archive)) == 0
    assert models(folders, "import", str(archive)) == 2
    assert "already in the store" in capsys.readouterr().err
    assert models(folders, "import", str(archive), "--overwrite") == 0


def test_unknown_models_and_bundled_removal_are_user_errors(folders: dict[str, Path], capsys) -> None:
    write_package(
        folders["bundled"] / "shipped" / "1.0.0",
        name="shipped",
        version="1.0.0",
        preprocessing={"target_spacing": [3.0, 1.5, 1.5], "normalization": {"scheme": "clip_zscore"}},
        network={},
        patch_size=[8, 8, 8],
        inference={},
        postprocessing={},
        members=[({"name": "fold0"}, {"weight": torch.ones(3)})],
    )
    assert models(folders, "verify", "kits") == 2
    assert "No model 'kits' in the model store. Available: shipped@1.0.0 (bundled)" in capsys.readouterr().err
    assert models(folders, "remove", "shipped@1.0.0") == 2
    assert "bundled with the extension" in capsys.readouterr().err
    assert models(folders, "list") == 0
    assert "shipped  1.0.0    bundled" in capsys.readouterr().out


def test_the_env_var_names_the_store_and_options_may_come_first(folders, monkeypatch, capsys) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(folders["store"]))
    archive = make_zip(folders["sources"], description="from env")
    assert main(["models", "--bundled-dir", str(folders["bundled"]), "import", str(archive)]) == 0
    assert (folders["store"] / "tiny" / "1.0.0" / "model.json").is_file()
    capsys.readouterr()
    assert main(["models", "--bundled-dir", str(folders["bundled"]), "list"]) == 0
    assert "from env" in capsys.readouterr().out


def test_remove_needs_a_version_and_actions_are_required(folders: dict[str, Path], capsys) -> None:
    assert models(folders, "remove", "tiny") == 2
    assert "Say which version" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["models"])
    assert raised.value.code == 2
