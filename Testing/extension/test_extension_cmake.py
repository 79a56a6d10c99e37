"""The extension's CMake packaging, configured with a stand-in for Slicer's extension macros.

The slicer-core-sdk wheel does not carry slicerMacroBuildScriptedModule or slicer_add_python_unittest,
so ``cmake`` runs on the extension with ``cmake_standin/`` as ``Slicer_DIR``: its macros parse their
arguments as Slicer's do and record them. The tests check that every listed file exists, that every
file of the module is listed (the packaged extension holds only what is listed), that the self-test is
registered, and that the EXTENSION_* metadata is complete and agrees with KidneyTumorSeg.s4ext. The
configured tree is then built and installed (as CPack does when it packages the extension) to check that
the training package, which the module's Fine-tune runs, lands beside KidneyTumorSeg.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from extension_checks import (
    RECORD_NAME,
    S4EXT_TO_CMAKE,
    StandInRecord,
    build_and_install,
    configure_with_standin,
    github_repo_of,
    missing_files,
    module_files,
    parse_s4ext,
    png_size,
    python_files,
    raw_url_path,
    read_record,
    s4ext_mismatches,
    unittest_script,
    unlisted_files,
)

REPO = Path(__file__).resolve().parents[2]
MODULE_NAME = "KidneyTumorSeg"
MODULE_DIR = REPO / MODULE_NAME
# The training package, as a source checkout holds it, and where it must land in the packaged extension.
TRAINING_PACKAGE = "kidneytumorseg_training"
TRAINING_SOURCE = REPO / "training"
# The stand-in's Slicer_QTSCRIPTEDMODULES_LIB_DIR: the module folder, under the build tree and the prefix.
QT_SCRIPTED_MODULES = "lib/Slicer-5.8/qt-scripted-modules"


def _require_cmake() -> None:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH: the extension's CMake packaging cannot be configured")
    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler on PATH: project() in the extension's CMakeLists.txt needs one")


def _configure(source_dir: Path, build_dir: Path) -> StandInRecord:
    return read_record(configure_with_standin(source_dir, build_dir))


def _listed(record: StandInRecord) -> list[str]:
    module = record.module(MODULE_NAME)
    return [*module["SCRIPTS"], *module["RESOURCES"]]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_cmake()
    build = tmp_path_factory.mktemp("extension-build")
    configure_with_standin(REPO, build)
    return build


@pytest.fixture(scope="module")
def record(build_dir: Path) -> StandInRecord:
    return read_record(build_dir / RECORD_NAME)


@pytest.fixture(scope="module")
def install_prefix(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The configured extension, built (copies only) and installed into a fresh prefix."""
    prefix = tmp_path_factory.mktemp("extension-install")
    build_and_install(build_dir, prefix)
    return prefix


def _load_module_file(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Imports one Python file under ``name`` (registered in sys.modules only for the test)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_configure_goes_through_the_slicer_entry_points(record: StandInRecord) -> None:
    assert record.kinds[:2] == ["find_package", "use_file"]
    assert record.kinds[-2:] == ["generate_config", "cpack"], "the two includes must close CMakeLists.txt"
    assert [module["NAME"] for module in record.scripted_modules] == [MODULE_NAME]
    module = record.module(MODULE_NAME)
    assert Path(module["source_dir"]) == MODULE_DIR
    assert module["flags"] == ["WITH_GENERIC_TESTS"]


def test_every_listed_file_exists(record: StandInRecord) -> None:
    module = record.module(MODULE_NAME)
    assert module["SCRIPTS"][0] == f"{MODULE_NAME}.py"
    assert all(script.endswith(".py") for script in module["SCRIPTS"])
    assert missing_files(MODULE_DIR, _listed(record)) == []


def test_every_module_file_is_listed(record: StandInRecord) -> None:
    assert unlisted_files(MODULE_DIR, _listed(record)) == []
    module = record.module(MODULE_NAME)
    listed = set(module["SCRIPTS"]) | set(module["RESOURCES"])
    assert not any("__pycache__" in entry or entry.endswith(".pyc") for entry in listed)
    # The scripts of the engine and the logic library, and the resources, in their own lists.
    expected_scripts = {f"{MODULE_NAME}.py"} | {
        name for name in module_files(MODULE_DIR) if name.endswith(".py") and not name.startswith("Resources/")
    }
    assert set(module["SCRIPTS"]) == expected_scripts
    assert all(resource.startswith("Resources/") for resource in module["RESOURCES"])
    assert f"Resources/Icons/{MODULE_NAME}.png" in module["RESOURCES"]


def test_self_test_and_generic_test_are_registered(record: StandInRecord) -> None:
    by_name = {call["test_name"]: call for call in record.unittests}
    assert set(by_name) == {MODULE_NAME, f"qSlicer{MODULE_NAME}ModuleGenericTest"}
    assert all(call["unparsed"] == [] for call in record.unittests)
    # slicer.testing.runUnitTest imports the module's file itself.
    assert unittest_script(by_name[MODULE_NAME]) == MODULE_DIR / f"{MODULE_NAME}.py"
    generic = by_name[f"qSlicer{MODULE_NAME}ModuleGenericTest"]
    assert generic["TESTNAME_PREFIX"] == "nomainwindow_"
    assert unittest_script(generic) is not None


def test_training_package_is_copied_beside_the_module_script(record: StandInRecord, build_dir: Path) -> None:
    """Fine-tune runs ``python -m kidneytumorseg_training.cli.main`` with the module folder on PYTHONPATH, so
    every .py file of the package is copied, keeping its package layout, into the folder where
    KidneyTumorSeg.py lands, and installed from there as the module's own scripts are."""
    module = record.compiled(MODULE_NAME)  # what slicerMacroBuildScriptedModule does with SCRIPTS/RESOURCES
    training = record.compiled(f"{MODULE_NAME}Training")
    assert Path(training["current_source_dir"]) == MODULE_DIR
    assert Path(training["source_dir"]) == TRAINING_SOURCE
    destination = (build_dir / QT_SCRIPTED_MODULES).resolve()
    assert Path(training["DESTINATION_DIR"]).resolve() == destination
    assert Path(module["destination_dir"]) == Path(training["destination_dir"]) == destination
    assert training["INSTALL_DIR"] == module["INSTALL_DIR"] == f"./{QT_SCRIPTED_MODULES}"
    assert training["flags"] == module["flags"] == ["NO_INSTALL_SUBDIR"]

    expected = {f"{TRAINING_PACKAGE}/{name}" for name in python_files(TRAINING_SOURCE / TRAINING_PACKAGE)}
    assert {
        f"{TRAINING_PACKAGE}/__init__.py",
        f"{TRAINING_PACKAGE}/cli/__init__.py",
        f"{TRAINING_PACKAGE}/cli/main.py",
        f"{TRAINING_PACKAGE}/cli/finetune.py",
        f"{TRAINING_PACKAGE}/synthetic/__init__.py",
    } <= expected
    assert sorted(training["SCRIPTS"]) == sorted(expected)
    assert training["RESOURCES"] == []
    copies = {Path(source): Path(copy) for source, copy in training["copies"]}
    assert copies == {TRAINING_SOURCE / name: destination / name for name in expected}
    assert destination / f"{MODULE_NAME}.py" in {Path(copy) for _, copy in module["copies"]}


def test_build_and_install_lay_the_training_package_beside_the_module(build_dir: Path, install_prefix: Path) -> None:
    package_source = TRAINING_SOURCE / TRAINING_PACKAGE
    expected = python_files(package_source)
    assert {"__init__.py", "cli/main.py", "synthetic/__init__.py"} <= expected
    assert [path.name for path in install_prefix.iterdir()] == ["lib"]
    for module_folder in (build_dir / QT_SCRIPTED_MODULES, install_prefix / QT_SCRIPTED_MODULES):
        assert (module_folder / f"{MODULE_NAME}.py").is_file(), module_folder
        assert (module_folder / f"{MODULE_NAME}Lib" / "engine_command.py").is_file()
        package = module_folder / TRAINING_PACKAGE
        assert (package / "__init__.py").is_file()
        assert (package / "cli" / "main.py").is_file()
        assert python_files(package) == expected
        for name in expected:
            assert (package / name).read_bytes() == (package_source / name).read_bytes(), name
        # Nothing of the package is flattened into the module folder: its only top-level script is the module's.
        assert [path.name for path in module_folder.glob("*.py")] == [f"{MODULE_NAME}.py"]


def test_installed_module_runs_the_installed_training_package(
    install_prefix: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """engine_command.TRAINING_DIRS of the installed module names the installed module folder, and the worker
    Fine-tune starts (its PYTHONPATH, no site-packages, so no editable install of this checkout) imports
    kidneytumorseg_training.cli.main from there."""
    module_folder = (install_prefix / QT_SCRIPTED_MODULES).resolve()
    engine_command = _load_module_file(
        module_folder / f"{MODULE_NAME}Lib" / "engine_command.py", "_installed_engine_command", monkeypatch
    )
    assert module_folder == engine_command.MODULE_DIR
    entry = Path(TRAINING_PACKAGE, "cli", "main.py")
    found = [folder for folder in engine_command.TRAINING_DIRS if (folder / entry).is_file()]
    assert found == [module_folder]

    monkeypatch.delenv("PYTHONPATH", raising=False)
    command = engine_command.EngineCommand(python=sys.executable)
    argv = command.finetune("model", tmp_path / "corrections", tmp_path / "work")
    entry_point = argv[argv.index("-m") + 1]
    assert entry_point == f"{TRAINING_PACKAGE}.cli.main"
    probe = "import importlib.util, sys; print(importlib.util.find_spec(sys.argv[1]).origin)"
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, entry_point],
        env=command.environment(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert Path(done.stdout.strip()) == module_folder / TRAINING_PACKAGE / "cli" / "main.py"


def test_extension_metadata_is_set(record: StandInRecord) -> None:
    metadata = record.metadata
    assert metadata["EXTENSION_NAME"] == MODULE_NAME
    for variable in S4EXT_TO_CMAKE.values():
        assert metadata.get(variable, "").strip(), f"{variable} is not set"
    assert metadata["EXTENSION_DEPENDS"] == "PyTorch"
    assert metadata["EXTENSION_HOMEPAGE"].startswith("https://")
    # Icon and screenshots are files of this repository, served raw from GitHub.
    repo = github_repo_of(metadata["EXTENSION_HOMEPAGE"])
    for url in [metadata["EXTENSION_ICONURL"], *metadata["EXTENSION_SCREENSHOTURLS"].replace(";", " ").split()]:
        assert github_repo_of(url) == repo, url
        assert (REPO / raw_url_path(url)).is_file(), f"{url} names no file of the repository"
    assert png_size(REPO / raw_url_path(metadata["EXTENSION_ICONURL"])) == (128, 128)


def test_category_is_the_module_category(record: StandInRecord) -> None:
    source = (MODULE_DIR / f"{MODULE_NAME}.py").read_text(encoding="utf-8")
    categories = re.search(r"parent\.categories\s*=\s*\[(.*?)\]", source, re.DOTALL)
    assert categories is not None, "the module sets no parent.categories"
    assert f'"{record.metadata["EXTENSION_CATEGORY"]}"' in categories.group(1)


def test_s4ext_agrees_with_cmake(record: StandInRecord) -> None:
    s4ext = parse_s4ext((REPO / f"{MODULE_NAME}.s4ext").read_text(encoding="utf-8"))
    assert s4ext_mismatches(s4ext, record.metadata) == []
    assert s4ext["scm"] == "git"
    assert s4ext["scmrevision"]
    assert s4ext["build_subdirectory"] == "."
    assert s4ext["enabled"] in {"0", "1"}
    assert github_repo_of(s4ext["scmurl"]) == github_repo_of(s4ext["homepage"])


def test_new_files_in_the_folders_the_module_ships_are_listed(tmp_path: Path) -> None:
    """A copy of the extension gains the files that come next (UI, requirements, a new engine module and a
    model file); configuring it lists them all, while a script beside the module file is reported unlisted."""
    _require_cmake()
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy2(REPO / "CMakeLists.txt", source / "CMakeLists.txt")
    module = source / MODULE_NAME
    shutil.copytree(MODULE_DIR, module, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(TRAINING_SOURCE, source / "training", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    training_added = [f"{TRAINING_PACKAGE}/synthetic/new_organ.py", f"{TRAINING_PACKAGE}/schedules/__init__.py"]
    for name in [*training_added, f"{TRAINING_PACKAGE}/__pycache__/x.cpython-310.pyc"]:
        (source / "training" / name).parent.mkdir(parents=True, exist_ok=True)
        (source / "training" / name).write_text("# added by the test\n", encoding="utf-8")
    added = [
        f"Resources/UI/{MODULE_NAME}.ui",
        "Resources/requirements.txt",
        "Resources/Models/other/1.0.0/model.json",
        "kidneytumorseg/networks/new_block.py",
        f"{MODULE_NAME}Lib/new_widget.py",
    ]
    for name in [*added, f"{MODULE_NAME}Helpers.py", "kidneytumorseg/__pycache__/x.cpython-310.pyc"]:
        (module / name).parent.mkdir(parents=True, exist_ok=True)
        (module / name).write_text("# added by the test\n", encoding="utf-8")

    configured = _configure(source, tmp_path / "build")
    listed = _listed(configured)
    assert set(added) <= set(listed)
    assert unlisted_files(module, listed) == [f"{MODULE_NAME}Helpers.py"]
    assert missing_files(module, listed) == []
    training_scripts = configured.compiled(f"{MODULE_NAME}Training")["SCRIPTS"]
    assert set(training_added) <= set(training_scripts)
    assert {f"{TRAINING_PACKAGE}/{name}" for name in python_files(source / "training" / TRAINING_PACKAGE)} == set(
        training_scripts
    )


def test_configure_fails_without_the_training_entry_point(tmp_path: Path) -> None:
    """A checkout whose training package lacks cli/main.py (what Fine-tune runs) does not configure."""
    _require_cmake()
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy2(REPO / "CMakeLists.txt", source / "CMakeLists.txt")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "Resources")
    shutil.copytree(MODULE_DIR, source / MODULE_NAME, ignore=ignore)
    shutil.copytree(TRAINING_SOURCE, source / "training", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (source / "training" / TRAINING_PACKAGE / "cli" / "main.py").unlink()
    with pytest.raises(subprocess.CalledProcessError) as failure:
        _configure(source, tmp_path / "build")
    message = " ".join(failure.value.stderr.split())  # cmake wraps long messages
    assert f"{TRAINING_PACKAGE}/cli/main.py: Fine-tune needs it" in message


def test_unlisted_and_missing_files_are_reported(tmp_path: Path) -> None:
    module = tmp_path / "Module"
    for name in [
        "Module.py",
        "ModuleLib/__init__.py",
        "ModuleLib/__pycache__/__init__.cpython-310.pyc",
        "Resources/Icons/Module.png",
        "Resources/UI/Module.ui",
        "Resources/.DS_Store",
        "CMakeLists.txt",
        "Testing/Python/CMakeLists.txt",
        "Testing/Python/ModuleTest.py",
    ]:
        (module / name).parent.mkdir(parents=True, exist_ok=True)
        (module / name).write_bytes(b"")

    assert module_files(module) == {
        "Module.py",
        "ModuleLib/__init__.py",
        "Resources/Icons/Module.png",
        "Resources/UI/Module.ui",
    }
    complete = ["Module.py", "ModuleLib/__init__.py", "Resources/Icons/Module.png", "Resources/UI/Module.ui"]
    assert unlisted_files(module, complete) == []
    assert unlisted_files(module, ["Module", *complete[1:]]) == []  # Slicer accepts a script without .py
    assert unlisted_files(module, complete[:-1]) == ["Resources/UI/Module.ui"]
    assert missing_files(module, [*complete, "Resources/UI/Gone.ui"]) == ["Resources/UI/Gone.ui"]


def test_s4ext_parsing_and_comparison() -> None:
    s4ext = parse_s4ext("# comment\n\nscm git\ndescription Two  words, kept.\ndepends A B\nscreenshoturls \n")
    assert s4ext == {"scm": "git", "description": "Two  words, kept.", "depends": "A B", "screenshoturls": ""}
    with pytest.raises(ValueError, match="twice"):
        parse_s4ext("scm git\nscm svn\n")

    metadata = {variable: "x" for variable in S4EXT_TO_CMAKE.values()}
    s4ext = {keyword: "x" for keyword in S4EXT_TO_CMAKE}
    assert s4ext_mismatches(s4ext, metadata) == []
    assert s4ext_mismatches({**s4ext, "depends": "A B"}, {**metadata, "EXTENSION_DEPENDS": "A;B"}) == []
    assert s4ext_mismatches({**s4ext, "category": "Other"}, metadata) == [
        "category: .s4ext 'Other' != EXTENSION_CATEGORY 'x'"
    ]
    assert s4ext_mismatches({k: v for k, v in s4ext.items() if k != "iconurl"}, metadata) == [".s4ext lacks 'iconurl'"]
