"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder: ``model.safetensors`` (the network's state dict), ``optimizer.safetensors`` (the
optimizer's per-parameter tensors, keyed ``<param index>.<name>``), ``state.json`` (epoch, optimizer
hyper-parameters, scheduler state, history, anything JSON-safe). It is written to a hidden sibling folder
and renamed into place, so a kill at any moment leaves either the old or the new checkpoint, never half of
one. Resuming therefore never unpickles a file, in line with the model packages.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from kidneytumorseg.errors import KidneyTumorSegError

LOGGER = logging.getLogger(__name__)
STATE_NAME = "state.json"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                       meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: str | os.PathLike[str], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, state: Mapping[str, Any]) -> Path:
    """Write a checkpoint folder atomically (replacing an older one at the same place)."""
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        weights = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        save_file(weights, str(staging / "model.safetensors"))
        meta: dict[str, Any] = {"state": dict(state)}
        if optimizer is not None:
            tensors, optimizer_meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(staging / "optimizer.safetensors"))
            meta["optimizer"] = optimizer_meta
        (staging / STATE_NAME).write_text(json.dumps(meta, indent=1) + "\n")
        for file in staging.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        old = target.parent / f".{target.name}.old"
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def find_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The checkpoint folder to resume from: ``folder`` itself, or its ``.old`` twin when a kill fell between
    the two renames of :func:`save_checkpoint`; None when neither is complete."""
    target = Path(folder)
    for candidate in (target, target.parent / f".{target.name}.old"):
        if (candidate / STATE_NAME).is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    return None


def load_checkpoint(folder: str | os.PathLike[str], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Load weights (strict) and optimizer state into the given objects; return the JSON state."""
    found = find_checkpoint(folder)
    if found is None:
        raise KidneyTumorSegError(f"No complete checkpoint in {folder}: it needs {STATE_NAME} and model.safetensors. "
                                  f"Start the run again without resuming.")
    meta = json.loads((found / STATE_NAME).read_text())
    try:
        model.load_state_dict(load_file(str(found / "model.safetensors")), strict=True)
    except RuntimeError as error:
        raise KidneyTumorSegError(f"The checkpoint in {found} does not fit this network ({error}); it was made "
                                  f"with another plan. Use a new run folder.") from error
    if optimizer is not None and "optimizer" in meta and (found / "optimizer.safetensors").is_file():
        _restore_optimizer(optimizer, load_file(str(found / "optimizer.safetensors")), meta["optimizer"])
    return meta["state"]


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a checkpoint folder (never unpickled)."""
    path = Path(path)
    if not path.is_file():
        found = find_checkpoint(path)
        if found is None:
            raise KidneyTumorSegError(f"{path} is neither a .safetensors file nor a folder holding a complete "
                                      f"checkpoint; give the run's checkpoint_best or checkpoint_latest.")
        path = found / "model.safetensors"
    return load_file(str(path))


def load_initial_weights(model: torch.nn.Module, path: str | os.PathLike[str], partial: bool = False) -> list[str]:
    """Load ``path`` (a ``.safetensors`` file or checkpoint folder) into ``model``; returns the names left as
    initialised. ``partial`` loads only the tensors whose name and shape match (a warm start of a network with
    other output classes or extra deep-supervision heads, e.g. a refiner from its stage-1 segmenter) and fails
    when fewer than half of the model's tensors match, which means the file is of another architecture."""
    weights = load_weights(path)
    if not partial:
        model.load_state_dict(weights, strict=True)
        return []
    own = model.state_dict()
    matching = {name: tensor for name, tensor in weights.items()
                if name in own and tuple(own[name].shape) == tuple(tensor.shape)}
    if len(matching) * 2 < len(own):
        raise KidneyTumorSegError(
            f"Only {len(matching)} of the network's {len(own)} tensors match {path} by name and shape: it holds "
            f"another architecture. Give the weights of a network with the same stages and features "
            f"(the stage-1 run's network), or leave the warm start out.")
    model.load_state_dict(matching, strict=False)
    left = sorted(set(own) - set(matching))
    LOGGER.info("Warm start from %s: %d of %d tensors loaded; left as initialised: %s", path, len(matching),
                len(own), ", ".join(left) or "none")
    return left
