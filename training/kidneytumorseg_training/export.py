"""Turn finished runs into one model package (members = runs) that the engine's predictor runs as-is."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_package import write_package
from kidneytumorseg_training.checkpoint import load_weights
from kidneytumorseg_training.planning import load_plans
from kidneytumorseg_training.trainer import BEST, LATEST
from kidneytumorseg_training.training_config import TrainingConfig

LOGGER = logging.getLogger(__name__)
DEFAULT_INFERENCE: dict[str, Any] = {"tile_overlap": 0.5, "mirror_axes": [0, 1, 2], "gaussian_sigma_scale": 0.125}
DEFAULT_POSTPROCESSING: dict[str, Any] = {"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                                          "min_component_ml": 0.2, "hysteresis": None}


def _run_member(run_dir: Path, checkpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(member settings, state_dict)`` of one run: its network, patch size and preprocessing."""
    config = TrainingConfig.load(run_dir)
    state = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    plans = load_plans(config.preprocessed)
    folder = run_dir / (BEST if checkpoint == "best" else LATEST)
    if not folder.exists():
        raise KidneyTumorSegError(f"{run_dir} has no {folder.name}; train it first (or export --checkpoint latest).")
    network = dict(state.get("network") or config.network or plans["network"])
    network["deep_supervision"] = False
    weights = load_weights(folder)
    settings = {
        "network": network,
        "patch_size": list(state.get("patch_size") or config.patch_size or plans["patch_size"]),
        "preprocessing": {"target_spacing": list(plans["target_spacing"]),
                          "normalization": dict(plans["normalization"])},
    }
    return settings, weights


def export_package(
    runs: Sequence[str | os.PathLike[str]],
    destination: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    localizer: str | os.PathLike[str] | None = None,
    checkpoint: str = "best",
    member_names: Sequence[str] | None = None,
    inference: Mapping[str, Any] | None = None,
    postprocessing: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> Path:
    """Write ``runs`` (and an optional localizer run) as one package folder; returns the folder.

    The first run's network, patch size and preprocessing become the package defaults; a run that differs
    carries its own as a member override, so plain and residual members can live in one package.
    """
    if not runs:
        raise KidneyTumorSegError("Export needs at least one run folder.")
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}.")
    names = list(member_names or [Path(run).name for run in runs])
    if len(names) != len(runs) or len(set(names)) != len(names):
        raise KidneyTumorSegError(f"Member names {names} must be unique, one per run.")
    loaded = [_run_member(Path(run), checkpoint) for run in runs]
    defaults = loaded[0][0]
    members = []
    for member_name, (settings, weights) in zip(names, loaded, strict=True):
        info: dict[str, Any] = {"name": member_name, "role": "segmenter"}
        info.update({key: value for key, value in settings.items() if value != defaults[key]})
        members.append((info, weights))
    if localizer is not None:
        settings, weights = _run_member(Path(localizer), checkpoint)
        members.append(({"name": "localizer", "role": "localizer", **settings}, weights))
    return write_package(
        destination, name=name, version=version, preprocessing=defaults["preprocessing"],
        network=defaults["network"], patch_size=defaults["patch_size"],
        inference=dict(inference or DEFAULT_INFERENCE), postprocessing=dict(postprocessing or DEFAULT_POSTPROCESSING),
        members=members, provenance=dict(provenance or {}), description=description, overwrite=overwrite,
    )
