"""The model store: model packages installed side by side as ``<dir>/<name>/<version>/model.json``.

Two folders are searched: the packages bundled with the extension (read-only) and the user's own. Imports
are staged in a hidden folder inside the user folder, validated and verified there, then renamed into place,
so a failed import leaves the store exactly as it was. Package .zip archives are extracted safely here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kidneytumorseg.errors import MissingInputError, ModelNotFoundError, ModelPackageError
from kidneytumorseg.model_package import MANIFEST_NAME, ModelPackage, move_into_place, parse_version, verify

LOGGER = logging.getLogger(__name__)

MODELS_DIR_ENV = "KIDNEYTUMORSEG_MODELS_DIR"
APP_NAME = "KidneyTumorSeg"
MAX_ARCHIVE_BYTES = 8 * 2**30
_CHUNK_BYTES = 2**20
_IMPORT_HINT = "Import a package with `kidneytumorseg models import PACKAGE.zip` (or ModelStore.import_package)."


def default_bundled_dir() -> Path:
    """``KidneyTumorSeg/Resources/Models`` of this checkout or installed extension."""
    return Path(__file__).resolve().parents[1] / "Resources" / "Models"


def default_user_dir() -> Path:
    """$KIDNEYTUMORSEG_MODELS_DIR if set, else the per-user data folder of the platform."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / APP_NAME / "models"


@dataclass(frozen=True)
class StoreEntry:
    """One installed package."""

    name: str
    version: str
    source: str  # "bundled" or "user"
    path: Path
    description: str = ""

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"name@1.2.0"`` -> ``("name", "1.2.0")``; ``"name"`` -> ``("name", None)``."""
    name, _, version = spec.strip().partition("@")
    if not name or (version and not re.match(r"^\d+\.\d+\.\d+$", version)):
        raise ModelNotFoundError(f"{spec!r} is not a model name: write NAME or NAME@VERSION, e.g. kits-demo@1.0.0.")
    return name, version or None


class ModelStore:
    """Packages in ``bundled_dir`` (shipped, never modified) and ``user_dir`` (imported by the user)."""

    def __init__(self, bundled_dir: str | os.PathLike[str], user_dir: str | os.PathLike[str]) -> None:
        self.bundled_dir = Path(bundled_dir)
        self.user_dir = Path(user_dir)

    @classmethod
    def default(cls) -> ModelStore:
        return cls(default_bundled_dir(), default_user_dir())

    def _scan(self) -> list[StoreEntry]:
        """Entries from the folder layout alone (no manifest read), sorted by name, version, then user last."""
        entries = []
        for source, root in (("bundled", self.bundled_dir), ("user", self.user_dir)):
            for manifest in root.glob(f"*/*/{MANIFEST_NAME}") if root.is_dir() else ():
                folder = manifest.parent
                if folder.name.startswith(".") or folder.parent.name.startswith("."):
                    continue  # staging folders of imports in progress
                try:
                    parse_version(folder.name)
                except ModelPackageError:
                    LOGGER.warning("Ignoring %s: the folder name is not a version MAJOR.MINOR.PATCH.", folder)
                    continue
                entries.append(StoreEntry(folder.parent.name, folder.name, source, folder))
        return sorted(entries, key=lambda e: (e.name, parse_version(e.version), e.source == "user"))

    def list(self) -> list[StoreEntry]:
        """Valid installed packages, sorted by name then semantic version; invalid ones are logged and skipped."""
        entries = []
        for entry in self._scan():
            try:
                package = ModelPackage.load(entry.path)
            except ModelPackageError as error:
                LOGGER.warning("Skipping the damaged package %s: %s", entry.path, error)
                continue
            if (package.name, package.version) != (entry.name, entry.version):
                LOGGER.warning("Skipping %s: its model.json says %s@%s.", entry.path, package.name, package.version)
                continue
            entries.append(StoreEntry(entry.name, entry.version, entry.source, entry.path, package.description))
        return entries

    def find(self, spec: str) -> StoreEntry:
        """The entry for ``name`` (newest version; the user's copy wins a tie) or ``name@version``."""
        name, version = split_spec(spec)
        scanned = self._scan()
        matches = [e for e in scanned if e.name == name and (version is None or e.version == version)]
        if not matches:
            available = ", ".join(f"{e.spec} ({e.source})" for e in scanned)
            where = f"looked in {self.user_dir} and {self.bundled_dir}"
            listing = f"Available: {available}." if available else f"The model store is empty ({where})."
            raise ModelNotFoundError(f"No model {spec!r} in the model store. {listing} {_IMPORT_HINT}")
        return matches[-1]

    def resolve(self, spec: str) -> ModelPackage:
        """The validated package for ``name`` or ``name@version`` (see ``find``)."""
        entry = self.find(spec)
        package = ModelPackage.load(entry.path)
        if (package.name, package.version) != (entry.name, entry.version):
            raise ModelPackageError(
                f"{entry.path / MANIFEST_NAME} describes {package.name}@{package.version}, not {entry.spec}: the "
                "store was edited by hand. Remove that folder and import the package again."
            )
        return package

    def verify(self, spec: str) -> ModelPackage:
        """Check the SHA-256 of every member file of the package; ModelPackageError naming a bad file."""
        package = self.resolve(spec)
        verify(package)
        return package

    def import_package(self, source: str | os.PathLike[str], overwrite: bool = False) -> StoreEntry:
        """Install a package .zip or folder into the user folder; returns its entry.

        The package is copied to a hidden staging folder in the user folder, loaded and verified there, then
        renamed to ``<user_dir>/<name>/<version>``. On any failure the store is left exactly as it was.
        """
        source = Path(source)
        if not source.exists():
            raise MissingInputError(f"{source} does not exist; give the path of a package .zip or package folder.")
        created = [d for d in (self.user_dir, *self.user_dir.parents) if not d.exists()]
        self.user_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=self.user_dir))
        name_dir = None
        try:
            if source.is_dir():
                package_dir = locate_package_folder(source)
                shutil.copytree(package_dir, staging / "package", symlinks=False)
                package_dir = staging / "package"
            elif zipfile.is_zipfile(source):
                package_dir = read_package_archive(source, staging / "archive")
            else:
                raise ModelPackageError(f"{source} is neither a .zip archive nor a folder holding {MANIFEST_NAME}.")
            package = ModelPackage.load(package_dir)
            verify(package)
            target = self.user_dir / package.name / package.version
            if target.exists() and not overwrite:
                raise ModelPackageError(
                    f"{package.name}@{package.version} is already in the store at {target}. Import with "
                    "--overwrite (overwrite=True) to replace it, or give the package a new version."
                )
            name_dir = None if target.parent.exists() else target.parent
            target.parent.mkdir(exist_ok=True)
            move_into_place(package_dir, target, overwrite=overwrite)
            name_dir = None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in ([name_dir] if name_dir is not None else []) + created:
                _remove_if_empty(folder)
        LOGGER.info("Imported %s@%s into %s", package.name, package.version, target)
        return StoreEntry(package.name, package.version, "user", target, package.description)

    def remove(self, spec: str) -> StoreEntry:
        """Delete the user's package ``name@version``; bundled packages are refused."""
        name, version = split_spec(spec)
        if version is None:
            raise ModelNotFoundError(f"Say which version of {name!r} to remove, as {name}@VERSION.")
        entry = self.find(spec)
        if entry.source != "user":
            raise ModelPackageError(
                f"{entry.spec} is bundled with the extension ({entry.path}) and cannot be removed; "
                "only packages you imported can be."
            )
        holder = Path(tempfile.mkdtemp(prefix=".remove-", dir=self.user_dir))
        os.rename(entry.path, holder / "package")  # the package vanishes at once, never half-deleted
        shutil.rmtree(holder)
        _remove_if_empty(entry.path.parent)
        LOGGER.info("Removed %s (%s)", entry.spec, entry.path)
        return entry


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def locate_package_folder(root: Path) -> Path:
    """``root`` if it holds model.json, else its only sub-folder that does; ModelPackageError otherwise."""
    if (root / MANIFEST_NAME).is_file():
        return root
    children = sorted(root.iterdir()) if root.is_dir() else []
    found = [p for p in children if not p.name.startswith(("__MACOSX", ".")) and (p / MANIFEST_NAME).is_file()]
    if len(found) != 1:
        problem = "several folders with" if found else "no"
        raise ModelPackageError(
            f"{root} has {problem} {MANIFEST_NAME} at its top or one folder down; a package is one folder "
            f"holding {MANIFEST_NAME} and its .safetensors files."
        )
    return found[0]


def _archive_entry_target(into: Path, info: zipfile.ZipInfo, archive: Path) -> Path:
    parts = info.filename.replace("\\", "/").split("/")
    if info.filename.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", info.filename) or ".." in parts:
        raise ModelPackageError(
            f"{archive} contains the unsafe path {info.filename!r} (absolute or with '..'); refusing to extract "
            "it. Use a package archive made by KidneyTumorSeg or from a trusted source."
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ModelPackageError(f"{archive} contains the symbolic link {info.filename!r}; refusing to extract it.")
    return into.joinpath(*[part for part in parts if part not in ("", ".")])


def read_package_archive(
    zip_path: str | os.PathLike[str], into: str | os.PathLike[str], *, max_bytes: int = MAX_ARCHIVE_BYTES
) -> Path:
    """Safely extract a package .zip into the folder ``into`` and return the package folder inside it.

    Absolute paths, '..' and symbolic links are refused before anything is written, as are archives whose
    content exceeds ``max_bytes``. The package folder may be at the archive's root or one folder down.
    """
    archive, into = Path(zip_path), Path(into)
    try:
        with zipfile.ZipFile(archive) as zipped:
            infos = zipped.infolist()
            targets = [_archive_entry_target(into, info, archive) for info in infos]
            declared = sum(info.file_size for info in infos)
            if declared > max_bytes:
                raise ModelPackageError(
                    f"{archive} would unpack to {declared / 2**30:.2f} GiB, more than the limit of "
                    f"{max_bytes / 2**30:.2f} GiB for a model package; check that this is the right archive."
                )
            into.mkdir(parents=True, exist_ok=True)
            written = 0
            for info, target in zip(infos, targets, strict=True):
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(info) as source, open(target, "wb") as sink:
                    while chunk := source.read(_CHUNK_BYTES):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ModelPackageError(f"{archive} unpacks to more than its declared size; refusing it.")
                        sink.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as error:
        raise ModelPackageError(
            f"{archive} is not a readable zip archive ({error}); give a package .zip or the package folder."
        ) from error
    LOGGER.debug("Extracted %s into %s", archive, into)
    return locate_package_folder(into)
