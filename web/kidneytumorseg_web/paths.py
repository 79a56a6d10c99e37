"""Server-side files the browser may name: only CT files inside the folders the operator configured.

The page never sends a server path of its own making. It picks one of the keys ``list_files()`` offered
(``<folder label>/<path inside the folder>``), and every key is resolved again here: ``..`` parts, absolute
paths outside the folders, symbolic links that lead out of them and anything that is not a CT file are
refused with ``PathRefused``. Uploaded files keep only a cleaned base name (``safe_upload_name``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LOGGER = logging.getLogger("kidneytumorseg_web")

# The CT formats the page offers and accepts (Slicer's volume readers open them; the engine does too).
CT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class PathRefused(ValueError):  # noqa: N818 - reads as what happened to the request
    """A path the browser named is not an allowed CT file; the message says what may be chosen instead."""


def is_ct_file_name(name: str) -> bool:
    return name.lower().endswith(CT_SUFFIXES)


def safe_upload_name(name: str) -> str:
    """The base name of an uploaded file, reduced to ``A-Z a-z 0-9 _ . -``; refused unless it is a CT file.

    Browsers send base names, but a hand-made request can send ``../../x.nii.gz``: the folder part is dropped."""
    base = PurePosixPath(str(name).replace("\\", "/")).name
    cleaned = _UNSAFE_NAME.sub("_", base).lstrip(".")
    if not cleaned or not is_ct_file_name(cleaned):
        raise PathRefused(f"'{name}' is not a CT file this page can open; upload one of "
                          f"{', '.join(CT_SUFFIXES)} (a single file; for DICOM, convert the series to NIfTI first).")
    return cleaned


@dataclass(frozen=True)
class DataFolder:
    label: str  # the first part of the keys offered to the page
    root: Path  # resolved, existing


class DataFolders:
    """The server folders the operator allowed (``--data-dir``, repeatable), and the CT files inside them."""

    def __init__(self, folders: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.folders: list[DataFolder] = []
        used: set[str] = set()
        for folder in folders:
            root = Path(folder).expanduser()
            if not root.is_dir():
                raise ValueError(f"The data folder {root} does not exist or is not a folder; create it or pass an "
                                 "existing folder to --data-dir.")
            root = root.resolve()
            if any(root == known.root for known in self.folders):
                continue
            label, n = root.name or "data", 2
            while label in used:
                label, n = f"{root.name or 'data'}-{n}", n + 1
            used.add(label)
            self.folders.append(DataFolder(label, root))

    def __bool__(self) -> bool:
        return bool(self.folders)

    def key_for(self, path: Path) -> str | None:
        """The key of ``path`` (resolved) inside one of the folders, else None."""
        for folder in self.folders:
            if path.is_relative_to(folder.root):
                return f"{folder.label}/{path.relative_to(folder.root).as_posix()}"
        return None

    def resolve(self, requested: str) -> Path:
        """The CT file named by ``requested`` (a key, or an absolute path inside a folder); else PathRefused."""
        text = str(requested or "").strip()
        if not text or "\x00" in text:
            raise PathRefused("No file was named; pick a CT from the list.")
        if not self.folders:
            raise PathRefused("This server has no data folders configured; upload the CT instead (the operator "
                              "can allow folders with --data-dir).")
        if os.path.isabs(text):
            candidate = Path(text)
        else:
            label, _, inside = text.partition("/")
            folder = next((f for f in self.folders if f.label == label), None)
            parts = PurePosixPath(inside).parts
            if folder is None or not parts or ".." in parts or PurePosixPath(inside).is_absolute():
                raise PathRefused(f"'{text}' is not one of the offered files; pick a CT from the list "
                                  f"(allowed folders: {', '.join(f.label for f in self.folders)}).")
            candidate = folder.root.joinpath(*parts)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise PathRefused(f"'{text}' does not exist (any more); refresh the list and pick again.") from None
        if self.key_for(resolved) is None:
            LOGGER.warning("Refused a path outside the data folders: %r", text)
            raise PathRefused(f"'{text}' lies outside the allowed data folders; only files inside "
                              f"{', '.join(str(f.root) for f in self.folders)} can be opened.")
        if not resolved.is_file() or not is_ct_file_name(resolved.name):
            raise PathRefused(f"'{text}' is not a CT file ({', '.join(CT_SUFFIXES)}); pick one from the list.")
        return resolved

    def list_files(self, max_files: int = 1000, max_depth: int = 4) -> list[str]:
        """Keys of the CT files in the folders (hidden entries and links out of a folder left out), sorted."""
        keys: list[str] = []
        for folder in self.folders:
            for path in _walk(folder.root, max_depth):
                key = self.key_for(path.resolve()) if path.is_symlink() else self.key_for(path)
                if key is not None:
                    keys.append(f"{folder.label}/{path.relative_to(folder.root).as_posix()}")
                if len(keys) >= max_files:
                    LOGGER.warning("Listing stopped at %d files; point --data-dir at smaller folders.", max_files)
                    return sorted(keys)
        return sorted(keys)


def _walk(root: Path, max_depth: int) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(root, followlinks=False):
        depth = len(Path(directory).relative_to(root).parts)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".")) if depth < max_depth else []
        for name in sorted(files):
            if not name.startswith(".") and is_ct_file_name(name):
                yield Path(directory) / name
