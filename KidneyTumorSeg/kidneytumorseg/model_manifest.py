"""The manifest of a model package: validates a package's ``model.json`` and turns it into typed values.

``parse_manifest`` checks every key the engine relies on (format version, name, version, labels, the package
defaults and each member's overrides) and returns the fields of ``kidneytumorseg.model_package.ModelPackage``,
with one ``MemberSpec`` per member. Every error is a ModelPackageError that names the manifest file and the key,
says what the value must be and what to do about it. Only the standard library and light engine modules are
imported here: reading a manifest never imports torch.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kidneytumorseg.errors import ModelPackageError
from kidneytumorseg.labels import LABEL_NAMES
from kidneytumorseg.member_settings import MemberInputs, member_inputs

FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
ROLES = ("segmenter", "localizer", "refiner")  # refiner: stage 2 (kidneytumorseg.refinement)
# preprocessing.image_interpolation: how the predictor resamples the image (kidneytumorseg.geometry.INTERPOLATORS)
IMAGE_INTERPOLATIONS = ("linear", "bspline", "nearest")
# Names of packages and member files: no path separators, no leading dot.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# The advice that ends every error about a malformed manifest.
MANIFEST_FIX = f"Correct {MANIFEST_NAME} or export the package again."
_OVERRIDE_KINDS = {**dict.fromkeys(("network", "preprocessing", "inference"), "an object"), "patch_size": "a list"}
_VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KINDS: dict[str, type | tuple[type, ...]] = {"an object": dict, "a list": list, "a string": str, "an integer": int}


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


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.10.0"`` -> ``(1, 10, 0)``, for sorting by semantic version; ModelPackageError if not MAJOR.MINOR.PATCH."""
    match = _VERSION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ModelPackageError(f"{text!r} is not a version of the form MAJOR.MINOR.PATCH, such as 1.0.0.")
    major, minor, patch = (int(group) for group in match.groups())
    return major, minor, patch


def _bad(where: Path, key: str, must: str, value: Any) -> ModelPackageError:
    return ModelPackageError(f"{where}: '{key}' must be {must}, not {value!r}. {MANIFEST_FIX}")


def _get(data: Mapping[str, Any], key: str, kind: str, where: Path, prefix: str = "", default: Any = ...) -> Any:
    if key not in data:
        if default is not ...:
            return default
        raise ModelPackageError(f"{where}: the required key '{prefix}{key}' is missing. {MANIFEST_FIX}")
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
    if not SAFE_NAME.fullmatch(name):
        raise _bad(where, prefix + "name", "letters, digits, '.', '_' and '-' only", name)
    if not (SAFE_NAME.fullmatch(file) and file.endswith(".safetensors")):
        raise _bad(where, prefix + "file", "the name of a .safetensors file in the package folder", file)
    if not _SHA256.fullmatch(sha256):
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
        raise ModelPackageError(f"{where}: member {name!r}: {error}. {MANIFEST_FIX}") from error
    return MemberSpec(name, file, sha256, role, network, patch_size, preprocessing, inference)


def parse_manifest(manifest: Any, where: Path) -> dict[str, Any]:
    """Validate the decoded ``model.json`` at ``where`` and return the ModelPackage fields other than ``path`` and
    ``manifest`` (name, version, description, labels, members, postprocessing, inference, provenance), deep-copied
    so that they share nothing with ``manifest``. Every member file must exist beside ``where``; its SHA-256 is
    not checked here (``kidneytumorseg.model_package.verify`` does that). ModelPackageError on the first problem."""
    if not isinstance(manifest, dict):
        raise ModelPackageError(f"{where} must hold a JSON object, not {type(manifest).__name__}. {MANIFEST_FIX}")
    format_version = _get(manifest, "format_version", "an integer", where)
    if format_version != FORMAT_VERSION:
        raise ModelPackageError(
            f"{where}: 'format_version' is {format_version} but this KidneyTumorSeg reads format "
            f"{FORMAT_VERSION}. Update KidneyTumorSeg or export the package in format {FORMAT_VERSION}."
        )
    name = _get(manifest, "name", "a string", where)
    if not SAFE_NAME.fullmatch(name):
        raise _bad(where, "name", "letters, digits, '.', '_' and '-' only", name)
    version = _get(manifest, "version", "a string", where)
    if not _VERSION.fullmatch(version):
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
        raise ModelPackageError(f"{where}: 'members' needs at least one member with role 'segmenter'. {MANIFEST_FIX}")
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
