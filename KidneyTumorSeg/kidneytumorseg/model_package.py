"""Model packages: a folder with ``model.json`` and one ``.safetensors`` file per member.

The format is described in docs/engine-contracts.md; model_store reads .zip archives of packages. Every
weights file's SHA-256 is checked before the file is read, and weights are read with safetensors only: a
package carries numbers, never code (nothing is unpickled). torch and safetensors are imported inside the
functions that need them, so reading and listing manifests stays fast.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.errors import KidneyTumorSegError, ModelPackageError
from kidneytumorseg.labels import LABEL_COLORS, LABEL_NAMES
from kidneytumorseg.member_settings import MemberInputs, member_inputs

if TYPE_CHECKING:
    import torch

LOGGER = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
ROLES = ("segmenter", "localizer", "refiner")  # refiner: stage 2 (kidneytumorseg.refinement)
# preprocessing.image_interpolation: how the predictor resamples the image (kidneytumorseg.geometry.INTERPOLATORS)
IMAGE_INTERPOLATIONS = ("linear", "bspline", "nearest")
_OVERRIDE_KINDS = {**dict.fromkeys(("network", "preprocessing", "inference"), "an object"), "patch_size": "a list"}
_CHUNK_BYTES = 2**20
_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KINDS: dict[str, type | tuple[type, ...]] = {"an object": dict, "a list": list, "a string": str, "an integer": int}
_FIX = f"Correct {MANIFEST_NAME} or export the package again."

NetworkBuilder = Callable[[dict[str, Any]], "torch.nn.Module"]


@dataclass(frozen=True)
class MemberSpec:
    """One network of a package; network/patch_size/preprocessing/inference are the effective ones
    (the member's override where it has one, else the package default)."""

    name: str
    file: str
    sha256: str
    role: str
    network: dict[str, Any]
    patch_size: tuple[int, ...]
    preprocessing: dict[str, Any]
    inference: dict[str, Any]

    @property
    def inputs(self) -> MemberInputs:
        """2.5D context, median filter, stage input and output labels (kidneytumorseg.member_settings)."""
        return member_inputs(self.role, self.network, self.patch_size, self.preprocessing, self.inference)


@dataclass(frozen=True)
class ModelPackage:
    """A validated package folder. Create it with ``ModelPackage.load(folder)``."""

    path: Path
    manifest: dict[str, Any]
    name: str
    version: str
    description: str
    labels: dict[int, tuple[str, tuple[float, float, float]]]
    members: tuple[MemberSpec, ...]
    postprocessing: dict[str, Any]
    inference: dict[str, Any]
    provenance: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelPackage:
        """Read and validate ``path/model.json`` (``path`` may also be the model.json itself)."""
        folder = Path(path)
        folder = folder.parent if folder.name == MANIFEST_NAME and folder.is_file() else folder
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ModelPackageError(
                f"{manifest_path} does not exist: {folder} is not a model package. Give the folder that "
                f"holds {MANIFEST_NAME}, or import the package again from its original source."
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelPackageError(f"{manifest_path} is not valid JSON ({error}). {_FIX}") from error
        return cls(path=folder, manifest=manifest, **_parse_manifest(manifest, manifest_path))

    @property
    def segmenters(self) -> tuple[MemberSpec, ...]:
        return tuple(member for member in self.members if member.role == "segmenter")

    @property
    def refiners(self) -> tuple[MemberSpec, ...]:
        return tuple(member for member in self.members if member.role == "refiner")

    @property
    def localizer(self) -> MemberSpec | None:
        return next((member for member in self.members if member.role == "localizer"), None)

    def member(self, name: str) -> MemberSpec:
        """The member called ``name``; ModelPackageError listing the members if there is none."""
        for member in self.members:
            if member.name == name:
                return member
        names = ", ".join(member.name for member in self.members)
        raise ModelPackageError(f"Package {self.name}@{self.version} has no member {name!r}; it has: {names}.")

    def member_path(self, member: MemberSpec | str) -> Path:
        return self.path / (self.member(member) if isinstance(member, str) else member).file


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.10.0"`` -> ``(1, 10, 0)``, for sorting by semantic version; ModelPackageError if not MAJOR.MINOR.PATCH."""
    match = _VERSION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ModelPackageError(f"{text!r} is not a version of the form MAJOR.MINOR.PATCH, such as 1.0.0.")
    major, minor, patch = (int(group) for group in match.groups())
    return major, minor, patch


def _bad(where: Path, key: str, must: str, value: Any) -> ModelPackageError:
    return ModelPackageError(f"{where}: '{key}' must be {must}, not {value!r}. {_FIX}")


def _get(data: Mapping[str, Any], key: str, kind: str, where: Path, prefix: str = "", default: Any = ...) -> Any:
    if key not in data:
        if default is not ...:
            return default
        raise ModelPackageError(f"{where}: the required key '{prefix}{key}' is missing. {_FIX}")
    value = data[key]
    if not isinstance(value, _KINDS[kind]) or (isinstance(value, bool) and kind == "an integer"):
        raise _bad(where, prefix + key, kind, value)
    return value


def _numbers(value: Any, low: float, high: float, integer: bool = False) -> bool:
    kind = int if integer else (int, float)
    return isinstance(value, list) and all(
        isinstance(v, kind) and not isinstance(v, bool) and low <= v <= high for v in value
    )


def _patch_size(value: Any, key: str, where: Path) -> tuple[int, ...]:
    if not (_numbers(value, 1, float("inf"), integer=True) and len(value) in (2, 3)):
        raise _bad(where, key, "2 or 3 positive integers in array order [si, ap, lr]", value)
    return tuple(value)


def _check_preprocessing(value: dict[str, Any], key: str, where: Path) -> None:
    spacing = _get(value, "target_spacing", "a list", where, f"{key}.")
    if not (_numbers(spacing, 1e-6, float("inf")) and len(spacing) == 3):
        raise _bad(where, f"{key}.target_spacing", "3 positive numbers (mm) in array order [si, ap, lr]", spacing)
    normalization = _get(value, "normalization", "an object", where, f"{key}.")
    _get(normalization, "scheme", "a string", where, f"{key}.normalization.")
    interpolation = value.get("image_interpolation", "linear")
    if interpolation not in IMAGE_INTERPOLATIONS:
        raise _bad(where, f"{key}.image_interpolation", f"one of {list(IMAGE_INTERPOLATIONS)} (default linear)",
                   interpolation)


def _parse_labels(labels: dict[str, Any], where: Path) -> dict[int, tuple[str, tuple[float, float, float]]]:
    expected = {str(label): name for label, name in LABEL_NAMES.items()}
    if sorted(labels) != sorted(expected):
        raise _bad(where, "labels", f"an object with exactly the label ids {sorted(expected)} ({expected})", labels)
    parsed = {}
    for key, name in expected.items():
        entry = _get(labels, key, "an object", where, "labels.")
        if _get(entry, "name", "a string", where, f"labels.{key}.") != name:
            raise _bad(where, f"labels.{key}.name", repr(name), entry["name"])
        color = _get(entry, "color", "a list", where, f"labels.{key}.")
        if not (_numbers(color, 0.0, 1.0) and len(color) == 3):
            raise _bad(where, f"labels.{key}.color", "3 numbers from 0 to 1 (red, green, blue)", color)
        parsed[int(key)] = (name, (float(color[0]), float(color[1]), float(color[2])))
    return parsed


def _parse_member(entry: Any, index: int, defaults: dict[str, Any], where: Path) -> MemberSpec:
    prefix = f"members[{index}]."
    if not isinstance(entry, dict):
        raise _bad(where, f"members[{index}]", "an object", entry)
    name, file, sha256, role = (
        _get(entry, key, "a string", where, prefix) for key in ("name", "file", "sha256", "role")
    )
    if not _SAFE_NAME.match(name):
        raise _bad(where, prefix + "name", "letters, digits, '.', '_' and '-' only", name)
    if not (_SAFE_NAME.match(file) and file.endswith(".safetensors")):
        raise _bad(where, prefix + "file", "the name of a .safetensors file in the package folder", file)
    if not _SHA256.match(sha256):
        raise _bad(where, prefix + "sha256", "the file's SHA-256 as 64 lowercase hexadecimal digits", sha256)
    if role not in ROLES:
        raise _bad(where, prefix + "role", f"one of {list(ROLES)}", role)
    effective = {key: _get(entry, key, kind, where, prefix, defaults[key]) for key, kind in _OVERRIDE_KINDS.items()}
    patch_size = _patch_size(effective["patch_size"], prefix + "patch_size", where)
    _check_preprocessing(effective["preprocessing"], prefix + "preprocessing", where)
    effective = copy.deepcopy(effective)
    network, preprocessing, inference = effective["network"], effective["preprocessing"], effective["inference"]
    try:
        member_inputs(role, network, patch_size, preprocessing, inference)
    except ValueError as error:
        raise ModelPackageError(f"{where}: member {name!r}: {error}. {_FIX}") from error
    return MemberSpec(name, file, sha256, role, network, patch_size, preprocessing, inference)


def _parse_manifest(manifest: Any, where: Path) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise ModelPackageError(f"{where} must hold a JSON object, not {type(manifest).__name__}. {_FIX}")
    format_version = _get(manifest, "format_version", "an integer", where)
    if format_version != FORMAT_VERSION:
        raise ModelPackageError(
            f"{where}: 'format_version' is {format_version} but this KidneyTumorSeg reads format "
            f"{FORMAT_VERSION}. Update KidneyTumorSeg or export the package in format {FORMAT_VERSION}."
        )
    name = _get(manifest, "name", "a string", where)
    if not _SAFE_NAME.match(name):
        raise _bad(where, "name", "letters, digits, '.', '_' and '-' only", name)
    version = _get(manifest, "version", "a string", where)
    if not _VERSION.match(version):
        raise _bad(where, "version", "a version MAJOR.MINOR.PATCH such as 1.0.0", version)
    defaults = {key: _get(manifest, key, kind, where) for key, kind in _OVERRIDE_KINDS.items()}
    _patch_size(defaults["patch_size"], "patch_size", where)
    _check_preprocessing(defaults["preprocessing"], "preprocessing", where)
    entries = _get(manifest, "members", "a list", where)
    members = tuple(_parse_member(entry, index, defaults, where) for index, entry in enumerate(entries))
    for key in ("name", "file"):
        values = [getattr(member, key) for member in members]
        if len(set(values)) != len(values):
            raise _bad(where, f"members[].{key}", "different for every member", values)
    if not any(member.role == "segmenter" for member in members):
        raise ModelPackageError(f"{where}: 'members' needs at least one member with role 'segmenter'. {_FIX}")
    for member in members:
        if not (where.parent / member.file).is_file():
            raise ModelPackageError(
                f"{where.parent / member.file} (member {member.name!r}) is missing. The package is incomplete: "
                "import it again from its original source."
            )
    return {
        "name": name,
        "version": version,
        "description": _get(manifest, "description", "a string", where, default=""),
        "labels": _parse_labels(_get(manifest, "labels", "an object", where), where),
        "members": members,
        "postprocessing": copy.deepcopy(_get(manifest, "postprocessing", "an object", where)),
        "inference": copy.deepcopy(defaults["inference"]),
        "provenance": copy.deepcopy(_get(manifest, "provenance", "an object", where, default={})),
    }


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file as lowercase hex, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: Path, actual: str, expected: str) -> ModelPackageError:
    return ModelPackageError(
        f"{path} was modified or damaged (its SHA-256 is {actual}, {MANIFEST_NAME} says {expected}); "
        "re-import the package from its original source."
    )


def _member_file(package: ModelPackage, member: MemberSpec) -> Path:
    path = package.path / member.file
    if not path.is_file():
        raise ModelPackageError(
            f"{path} (member {member.name!r}) is missing; re-import the package from its original source."
        )
    return path


def verify(package: ModelPackage) -> None:
    """Check every member file against the SHA-256 in model.json; ModelPackageError naming the first bad file."""
    for member in package.members:
        path = _member_file(package, member)
        actual = file_sha256(path)
        if actual != member.sha256:
            raise _mismatch(path, actual, member.sha256)
    LOGGER.debug("Verified %d member files of %s@%s", len(package.members), package.name, package.version)


def load_member_weights(
    package: ModelPackage, member: MemberSpec | str, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The member's tensors. The bytes are hashed and then parsed by safetensors from the same buffer, so what
    is loaded is exactly what was verified; nothing is ever unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    spec = package.member(member) if isinstance(member, str) else member
    path = _member_file(package, spec)
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise _mismatch(path, actual, spec.sha256)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError, KeyError) as error:
        raise ModelPackageError(
            f"{path} is not a readable safetensors file ({error}); export the package again with "
            "write_package (safetensors only)."
        ) from error
    return {key: tensor.to(device) for key, tensor in tensors.items()}


def default_builder(config: dict[str, Any]) -> torch.nn.Module:
    """Build a network with ``kidneytumorseg.networks.build_network`` (imported only when needed)."""
    from kidneytumorseg.networks import build_network

    return build_network(config)


def build_member(
    package: ModelPackage,
    member: MemberSpec | str,
    builder: NetworkBuilder = default_builder,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """The member's network with its verified weights (strict), on ``device``, in eval mode."""
    spec = package.member(member) if isinstance(member, str) else member
    weights = load_member_weights(package, spec)
    manifest = package.path / MANIFEST_NAME
    try:
        network = builder(copy.deepcopy(spec.network))
    except KidneyTumorSegError:
        raise
    except (ValueError, TypeError, KeyError) as error:
        raise ModelPackageError(
            f"{manifest}: the 'network' of member {spec.name!r} does not describe a network this KidneyTumorSeg "
            f"can build ({error}). Update KidneyTumorSeg or export the package again."
        ) from error
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:600]
        raise ModelPackageError(
            f"The weights in {package.path / spec.file} do not fit the network description of member "
            f"{spec.name!r} in {manifest} ({detail}). Export the package again from the training run."
        ) from error
    return network.to(device).eval()


def move_into_place(staging: Path, target: Path, *, overwrite: bool) -> None:
    """Rename the complete folder ``staging`` to ``target`` (same file system). An existing ``target`` is
    replaced only when ``overwrite``: it is renamed aside first, and put back if the rename fails."""
    if target.exists() and not overwrite:
        raise ModelPackageError(f"{target} already exists; choose another folder or allow overwriting it.")
    holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent)) if target.exists() else None
    try:
        if holder is not None:
            os.rename(target, holder / "old")
        try:
            os.rename(staging, target)
        except BaseException:
            if holder is not None:
                os.rename(holder / "old", target)
            raise
    finally:
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)


def write_package(
    folder: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    preprocessing: Mapping[str, Any],
    network: Mapping[str, Any],
    patch_size: Sequence[int],
    inference: Mapping[str, Any],
    postprocessing: Mapping[str, Any],
    members: Sequence[tuple[Mapping[str, Any], Mapping[str, torch.Tensor]]],
    labels: Mapping[int, tuple[str, Sequence[float]]] | None = None,
    provenance: Mapping[str, Any] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> Path:
    """Write a package folder atomically: safetensors files and model.json with their SHA-256.

    ``members``: ``(info, state_dict)`` pairs; ``info`` has ``name``, optional ``role`` (default "segmenter"),
    ``file`` (default ``<name>.safetensors``) and overrides of network/patch_size/preprocessing/inference.
    ``labels`` defaults to the KiTS table. Everything is written to a hidden sibling folder, validated like
    ``ModelPackage.load`` and verified, then renamed to ``folder``; an existing ``folder`` is replaced only with
    ``overwrite=True``. Returns ``folder``.
    """
    from safetensors.torch import save_file

    target = Path(folder)
    if target.exists() and not overwrite:
        raise ModelPackageError(f"{target} already exists; pass overwrite=True to replace it or choose another folder.")
    labels = labels if labels is not None else {k: (LABEL_NAMES[k], LABEL_COLORS[k]) for k in LABEL_NAMES}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        member_entries = []
        for info, state_dict in members:
            entry = {key: copy.deepcopy(value) for key, value in info.items() if key not in ("sha256",)}
            entry.setdefault("role", "segmenter")
            entry.setdefault("file", f"{entry.get('name')}.safetensors")
            if not isinstance(entry["file"], str) or not _SAFE_NAME.match(entry["file"]):
                raise ModelPackageError(f"Member file {entry['file']!r}: use letters, digits, '.', '_', '-' only.")
            tensors = {key: tensor.detach().to("cpu").contiguous().clone() for key, tensor in state_dict.items()}
            save_file(tensors, str(staging / entry["file"]), metadata={"format": "pt"})
            entry["sha256"] = file_sha256(staging / entry["file"])
            member_entries.append(entry)
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "version": version,
            "description": description,
            "labels": {str(k): {"name": n, "color": [float(c) for c in rgb]} for k, (n, rgb) in labels.items()},
            "preprocessing": copy.deepcopy(dict(preprocessing)),
            "network": copy.deepcopy(dict(network)),
            "patch_size": [int(size) for size in patch_size],
            "inference": copy.deepcopy(dict(inference)),
            "postprocessing": copy.deepcopy(dict(postprocessing)),
            "members": member_entries,
            "provenance": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **(provenance or {})},
        }
        write_text_atomic(staging / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
        verify(ModelPackage.load(staging))
        move_into_place(staging, target, overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOGGER.info("Wrote model package %s@%s to %s", name, version, target)
    return target
