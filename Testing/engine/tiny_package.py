"""A tiny one-member model package for the model_package and model_manifest tests, with an injected network
builder (two convolutions) and helpers that edit its model.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from kidneytumorseg.model_package import MANIFEST_NAME, write_package

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


def edit_manifest(folder: Path, edit: Any) -> None:
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    edit(manifest)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))


def set_key(path: str, value: Any) -> Any:
    """An edit for ``edit_manifest``: set the key at ``path`` ("members/0/sha256") to ``value``, or delete it
    when ``value`` is ``KeyError``."""

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
