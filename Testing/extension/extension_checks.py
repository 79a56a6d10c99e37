"""Checks of the Slicer extension's CMake packaging, run against the stand-in for Slicer's macros.

``configure_with_standin`` runs ``cmake`` on the extension with ``-DSlicer_DIR`` pointing at
``cmake_standin/``, whose macros record what they are given in ``slicer_standin_record.jsonl``;
``read_record`` reads that record. ``build_and_install`` then builds the configured tree (the stand-in's
ctkMacroCompilePythonScript copies scripts and resources into the qt-scripted-modules folder at build
time, as CTK's does) and installs it into a prefix, as CPack does when it packages the extension. The
other functions compare what was recorded with the files of the module and with ``KidneyTumorSeg.s4ext``.

The files of a module (``module_files``) are every file under the module's folder except its
``CMakeLists.txt`` files, its ``Testing/`` folder, byte code (``__pycache__``, ``*.pyc``) and hidden
files: each of them must be listed in ``SCRIPTS`` or ``RESOURCES``, since the packaged extension holds
only what is listed.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STANDIN_DIR = Path(__file__).resolve().parent / "cmake_standin"
RECORD_NAME = "slicer_standin_record.jsonl"

# .s4ext keyword -> the CMake variable it mirrors (Slicer's extension description format).
S4EXT_TO_CMAKE = {
    "homepage": "EXTENSION_HOMEPAGE",
    "category": "EXTENSION_CATEGORY",
    "contributors": "EXTENSION_CONTRIBUTORS",
    "description": "EXTENSION_DESCRIPTION",
    "iconurl": "EXTENSION_ICONURL",
    "screenshoturls": "EXTENSION_SCREENSHOTURLS",
    "depends": "EXTENSION_DEPENDS",
    "status": "EXTENSION_STATUS",
}
# Values that are lists (space separated in the .s4ext, a string or a CMake list in CMake).
LIST_VALUED = {"screenshoturls", "depends"}


@dataclass
class StandInRecord:
    """What the stand-in's macros and include files were given during one configure."""

    scripted_modules: list[dict[str, Any]] = field(default_factory=list)
    python_scripts: list[dict[str, Any]] = field(default_factory=list)  # ctkMacroCompilePythonScript calls
    unittests: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=list)

    def module(self, name: str) -> dict[str, Any]:
        """The slicerMacroBuildScriptedModule call for module ``name``."""
        calls = [call for call in self.scripted_modules if call["NAME"] == name]
        if len(calls) != 1:
            raise LookupError(f"expected one scripted module {name!r}, recorded {len(calls)}")
        return calls[0]

    def compiled(self, target_name: str) -> dict[str, Any]:
        """The ctkMacroCompilePythonScript call with TARGET_NAME ``target_name``."""
        calls = [call for call in self.python_scripts if call["TARGET_NAME"] == target_name]
        if len(calls) != 1:
            raise LookupError(f"expected one ctkMacroCompilePythonScript {target_name!r}, recorded {len(calls)}")
        return calls[0]


def configure_with_standin(source_dir: Path, build_dir: Path, standin_dir: Path = STANDIN_DIR) -> Path:
    """Configures the extension in ``source_dir`` against the stand-in; returns the record file.

    Raises ``subprocess.CalledProcessError`` (with cmake's output) when the configure fails.
    """
    argv = [
        "cmake",
        "-S",
        str(source_dir),
        "-B",
        str(build_dir),
        f"-DSlicer_DIR={standin_dir}",
        "-DBUILD_TESTING=ON",
    ]
    log.info("configuring: %s", " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    log.debug("cmake output:\n%s", done.stdout)
    return build_dir / RECORD_NAME


def build_and_install(build_dir: Path, prefix: Path) -> None:
    """Builds a tree configured by ``configure_with_standin`` (copy targets only, nothing is compiled), then
    installs it into ``prefix``, as CPack does when it packages the extension.

    Raises ``subprocess.CalledProcessError`` (with cmake's output) when either step fails.
    """
    for argv in (
        ["cmake", "--build", str(build_dir)],
        ["cmake", "--install", str(build_dir), "--prefix", str(prefix)],
    ):
        log.info("running: %s", " ".join(argv))
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
        log.debug("cmake output:\n%s", done.stdout)


def python_files(folder: Path) -> set[str]:
    """The ``.py`` files under ``folder``, relative to it (posix), byte code folders and hidden files left out."""
    found = set()
    for path in folder.rglob("*.py"):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
            found.add(relative.as_posix())
    return found


def read_record(path: Path) -> StandInRecord:
    """Parses the JSON-lines record the stand-in writes."""
    record = StandInRecord()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        kind = entry["kind"]
        record.kinds.append(kind)
        if kind == "scripted_module":
            record.scripted_modules.append(entry)
        elif kind == "compile_python_script":
            record.python_scripts.append(entry)
        elif kind == "python_unittest":
            record.unittests.append(entry)
        elif kind == "cpack":
            record.metadata = dict(entry["metadata"])
    return record


def _is_packaged_candidate(relative: Path) -> bool:
    parts = relative.parts
    if parts[0] == "Testing" or relative.name == "CMakeLists.txt":
        return False
    if any(part == "__pycache__" or part.startswith(".") for part in parts):
        return False
    return relative.suffix not in {".pyc", ".pyo"}


def module_files(module_dir: Path) -> set[str]:
    """Every file of the module that the packaged extension needs, relative to ``module_dir`` (posix)."""
    found = set()
    for path in module_dir.rglob("*"):
        relative = path.relative_to(module_dir)
        if path.is_file() and _is_packaged_candidate(relative):
            found.add(relative.as_posix())
    return found


def _normalized(module_dir: Path, listed: Iterable[str]) -> set[str]:
    """Listed entries as posix paths relative to ``module_dir`` (Slicer accepts a script without .py)."""
    result = set()
    for entry in listed:
        path = Path(entry)
        if not path.is_absolute():
            path = module_dir / path
        if not path.exists() and path.with_name(path.name + ".py").exists():
            path = path.with_name(path.name + ".py")
        try:
            result.add(path.resolve().relative_to(module_dir.resolve()).as_posix())
        except ValueError:
            result.add(str(path))
    return result


def unlisted_files(module_dir: Path, listed: Iterable[str]) -> list[str]:
    """Files of the module missing from the listed scripts and resources (the package would lack them)."""
    return sorted(module_files(module_dir) - _normalized(module_dir, listed))


def missing_files(module_dir: Path, listed: Iterable[str]) -> list[str]:
    """Listed entries that are not existing files (as Slicer checks: ``entry`` or ``entry.py``)."""
    missing = []
    for entry in listed:
        path = Path(entry) if Path(entry).is_absolute() else module_dir / entry
        if not (path.is_file() or path.with_name(path.name + ".py").is_file()):
            missing.append(entry)
    return missing


def unittest_script(call: Mapping[str, Any]) -> Path | None:
    """The file slicer.testing.runUnitTest would import for a slicer_add_python_unittest call, if any."""
    for folder in call["search_path"]:
        candidate = Path(folder) / f"{call['test_name']}.py"
        if candidate.is_file():
            return candidate
    return None


def parse_s4ext(text: str) -> dict[str, str]:
    """Slicer's extension description: the first token of a non-comment line is the keyword, the rest
    of the line (spaces included, possibly empty) its value."""
    entries: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        if keyword in entries:
            raise ValueError(f"keyword {keyword!r} given twice")
        entries[keyword] = value.strip()
    return entries


def _list_items(value: str) -> list[str]:
    return value.replace(";", " ").split()


def s4ext_mismatches(s4ext: Mapping[str, str], metadata: Mapping[str, str]) -> list[str]:
    """Where the .s4ext and the CMake EXTENSION_* variables disagree (empty when they agree)."""
    problems = []
    for keyword, variable in S4EXT_TO_CMAKE.items():
        if keyword not in s4ext:
            problems.append(f".s4ext lacks {keyword!r}")
            continue
        if variable not in metadata:
            problems.append(f"CMake does not set {variable}")
            continue
        ours, theirs = s4ext[keyword], metadata[variable]
        if keyword in LIST_VALUED:
            same = _list_items(ours) == _list_items(theirs)
        else:
            same = ours == theirs.strip()
        if not same:
            problems.append(f"{keyword}: .s4ext {ours!r} != {variable} {theirs!r}")
    return problems


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, read from its IHDR chunk."""
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def github_repo_of(url: str) -> str:
    """``owner/name`` of a github.com page or clone URL, or of a raw.githubusercontent.com file URL."""
    for prefix in ("https://github.com/", "https://raw.githubusercontent.com/"):
        if url.startswith(prefix):
            owner, name = url[len(prefix) :].split("#")[0].split("/")[:2]
            return f"{owner}/{name.removesuffix('.git')}"
    raise ValueError(f"not a GitHub URL: {url}")


def raw_url_path(url: str) -> str:
    """The path inside the repository of a ``https://raw.githubusercontent.com/<owner>/<name>/<ref>/<path>`` URL."""
    prefix = "https://raw.githubusercontent.com/"
    if not url.startswith(prefix):
        raise ValueError(f"not a raw.githubusercontent.com URL: {url}")
    parts = url[len(prefix) :].split("/")
    if len(parts) < 4:
        raise ValueError(f"no file path in {url}")
    return "/".join(parts[3:])
