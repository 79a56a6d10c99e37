"""Model packages: a folder with ``model.json`` and one ``.safetensors`` file per member.

The format is described in docs/engine-contracts.md; kidneytumorseg.model_manifest validates model.json and
model_store reads .zip archives of packages. Every weights file's SHA-256 is checked before the file is read, and
weights are read with safetensors only: a package carries numbers, never code (nothing is unpickled). torch and
safetensors are imported inside the functions that need them, so reading and listing manifests stays fast.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
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
from kidneytumorseg.model_manifest import (
    FORMAT_VERSION,
    IMAGE_INTERPOLATIONS,
    MANIFEST_FIX,
    MANIFEST_NAME,
    ROLES,
    SAFE_NAME,
    MemberSpec,
    parse_manifest,
    parse_version,
)

if TYPE_CHECKING:
    import torch

LOGGER = logging.getLogger(__name__)

# The manifest's names (kidneytumorseg.model_manifest) are part of this module's interface too.
__all__ = ["FORMAT_VERSION", "IMAGE_INTERPOLATIONS", "MANIFEST_NAME", "ROLES", "MemberSpec", "ModelPackage",
           "NetworkBuilder", "build_member", "default_builder", "file_sha256", "load_member_weights",
           "move_into_place", "parse_version", "verify", "write_package"]

_CHUNK_BYTES = 2**20

NetworkBuilder = Callable[[dict[str, Any]], "torch.nn.Module"]


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
            raise ModelPackageError(f"{manifest_path} is not valid JSON ({error}). {MANIFEST_FIX}") from error
        return cls(path=folder, manifest=manifest, **parse_manifest(manifest, manifest_path))

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
            if not isinstance(entry["file"], str) or not SAFE_NAME.fullmatch(entry["file"]):
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


def write_package_version(
    package: ModelPackage,
    folder: str | os.PathLike[str],
    *,
    version: str,
    weights: Mapping[str, Mapping[str, torch.Tensor]],
    provenance: Mapping[str, Any] | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """``package`` written as another version: its manifest, the members named in ``weights`` holding those
    tensors, every other member's weights copied (verified on the way). ``description`` defaults to the package's."""
    members = [(entry, weights.get(entry["name"]) or load_member_weights(package, entry["name"]))
               for entry in package.manifest["members"]]
    manifest = package.manifest
    return write_package(
        folder, name=package.name, version=version, preprocessing=manifest["preprocessing"],
        network=manifest["network"], patch_size=manifest["patch_size"], inference=manifest["inference"],
        postprocessing=manifest["postprocessing"], members=members, labels=package.labels, provenance=provenance,
        description=package.description if description is None else description, overwrite=overwrite)
