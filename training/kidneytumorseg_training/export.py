"""Turn finished runs into one model package (members = runs) that the engine's predictor runs as-is.

A run's role follows from its config: a run with ``stage_input`` is a refiner (stage 2), any other a segmenter;
the localizer is given apart. Each member carries what the engine needs to rebuild its input and read its
outputs (docs/cascades.md): ``preprocessing.context_slices`` (2.5D), ``preprocessing.median_filter``,
``preprocessing.stage_input`` (refiners) and ``inference.output_labels`` (a ``label_map`` run).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kidneytumorseg.class_mapping import output_labels_from_label_map
from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_package import ModelPackage, load_member_weights, write_package
from kidneytumorseg_training.checkpoint import load_weights
from kidneytumorseg_training.planning import load_plans
from kidneytumorseg_training.trainer import BEST, LATEST
from kidneytumorseg_training.training_config import TrainingConfig

LOGGER = logging.getLogger(__name__)
DEFAULT_INFERENCE: dict[str, Any] = {"tile_overlap": 0.5, "mirror_axes": [0, 1, 2], "gaussian_sigma_scale": 0.125}
DEFAULT_POSTPROCESSING: dict[str, Any] = {"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                                          "min_component_ml": 0.2, "hysteresis": None}


def _member_preprocessing(config: TrainingConfig, plans: Mapping[str, Any]) -> dict[str, Any]:
    preprocessing: dict[str, Any] = {"target_spacing": list(plans["target_spacing"]),
                                     "normalization": dict(plans["normalization"])}
    if plans.get("image_interpolation", "linear") != "linear":  # "bspline": the predictor resamples alike
        preprocessing["image_interpolation"] = str(plans["image_interpolation"])
    if config.context_slices is not None:
        preprocessing["context_slices"] = int(config.context_slices)
    median = int(config.median_filter or plans.get("median_filter", 0) or 0)
    if median:
        preprocessing["median_filter"] = median
    if config.stage_input is not None:
        preprocessing["stage_input"] = dict(config.stage_input)
    return preprocessing


def _run_member(run_dir: Path, checkpoint: str, inference: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(member settings, state_dict)`` of one run: its role, network, patch size, preprocessing and inference
    (``inference`` with the run's output labels added)."""
    config = TrainingConfig.load(run_dir)
    state = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    plans = load_plans(config.preprocessed)
    folder = run_dir / (BEST if checkpoint == "best" else LATEST)
    if not folder.exists():
        raise KidneyTumorSegError(f"{run_dir} has no {folder.name}; train it first (or export --checkpoint latest).")
    network = dict(state.get("network") or config.network or plans["network"])
    network["deep_supervision"] = False
    weights = load_weights(folder)
    patch = list(state.get("patch_size") or config.patch_size or plans["patch_size"])
    member_inference = dict(inference if inference is not None else DEFAULT_INFERENCE)
    if config.label_map is not None:
        member_inference["output_labels"] = list(output_labels_from_label_map(config.label_map))
    settings = {
        "role": "refiner" if config.is_refiner else "segmenter",
        "network": network,
        "patch_size": patch[-2:] if config.context_slices is not None else patch,
        "preprocessing": _member_preprocessing(config, plans),
        "inference": member_inference,
    }
    return settings, weights


def _base_members(base: Path) -> tuple[dict[str, Any], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """``(package defaults, [(member settings with name and role, weights)])`` of an existing package, each
    member's weights checked against its sha256."""
    package = ModelPackage.load(base)
    defaults = {key: package.manifest[key] for key in ("network", "patch_size", "preprocessing", "inference")}
    defaults["postprocessing"] = dict(package.postprocessing)
    defaults["labels"] = {label: (name, list(color)) for label, (name, color) in package.labels.items()}
    members = []
    for member in package.members:
        settings = {"name": member.name, "role": member.role, "network": member.network,
                    "patch_size": list(member.patch_size), "preprocessing": member.preprocessing,
                    "inference": member.inference}
        members.append((settings, load_member_weights(package, member)))
    return defaults, members


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
    base: str | os.PathLike[str] | None = None,
    replace: bool = False,
    stage_one_weight: float | Mapping[str, float] | None = None,
) -> Path:
    """Write ``runs`` (and an optional localizer run) as one package folder; returns the folder.

    Runs with a ``stage_input`` become refiners (stage 2), the others segmenters; at least one member must be a
    segmenter. The first segmenter's network, patch size and preprocessing become the package defaults; a run
    that differs carries its own as a member override, so plain and residual members, 2.5D refiners and 3D
    segmenters can live in one package.

    ``base``: an existing package folder whose members (weights checked against their sha256), defaults, labels
    and post-processing the new package keeps, the runs' members added to them, e.g. a refiner trained for a
    bundled package. A ``localizer`` run replaces the base's localizer. ``replace``: a run named like a base
    member takes that member's place (its position in the member list too, so the first segmenter, which the
    ``fast`` quality runs, stays first), e.g. one fold retrained; without it such a clash is an error.
    ``stage_one_weight``: the refiner runs' ``inference.stage_one_weight`` (a number, or per class
    ``{"kidney": w, "tumor": w, "cyst": w}``; docs/cascades.md); an error when no run is a refiner.
    """
    if not runs:
        raise KidneyTumorSegError("Export needs at least one run folder.")
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}.")
    names = list(member_names or [Path(run).name for run in runs])
    if len(names) != len(runs) or len(set(names)) != len(names):
        raise KidneyTumorSegError(f"Member names {names} must be unique, one per run.")
    base_defaults, kept = _base_members(Path(base)) if base is not None else ({}, [])
    if localizer is not None:
        kept = [(settings, weights) for settings, weights in kept if settings["role"] != "localizer"]
    taken = sorted({settings["name"] for settings, _ in kept} & set(names))
    if taken and not replace:
        raise KidneyTumorSegError(f"{base} already has member(s) {taken}; name the runs otherwise with --members, "
                                  f"or give --replace to put the runs in their place.")
    package_inference = dict(inference or base_defaults.get("inference") or DEFAULT_INFERENCE)
    loaded = list(kept)
    positions = {settings["name"]: index for index, (settings, _) in enumerate(kept)}
    refiner_runs = 0
    for member_name, run in zip(names, runs, strict=True):
        settings, weights = _run_member(Path(run), checkpoint, package_inference)
        if settings["role"] == "refiner":
            refiner_runs += 1
            if stage_one_weight is not None:
                settings["inference"] = {**settings["inference"], "stage_one_weight": stage_one_weight}
        if member_name in positions and settings["role"] != kept[positions[member_name]][0]["role"]:
            raise KidneyTumorSegError(f"Run {run} is a {settings['role']}, but the base's member {member_name!r} is a "
                                      f"{kept[positions[member_name]][0]['role']}; a replacement must keep the role.")
        entry = ({"name": member_name, **settings}, weights)
        if member_name in positions:
            loaded[positions[member_name]] = entry
        else:
            loaded.append(entry)
    if stage_one_weight is not None and not refiner_runs:
        raise KidneyTumorSegError("A stage_one_weight is for refiners (runs with a stage_input), and none of the runs "
                                  "given is one; leave it out or export the refiner run.")
    if not any(settings["role"] == "segmenter" for settings, _ in loaded):
        raise KidneyTumorSegError("Every run given is a refiner (it has a stage_input); export the stage-1 run(s) "
                                  "with them, or give their package as --base.")
    defaults = base_defaults or next(settings for settings, _ in loaded if settings["role"] == "segmenter")
    package_defaults = {**defaults, "inference": package_inference}
    members = []
    for settings, weights in loaded:
        info: dict[str, Any] = {"name": settings["name"], "role": settings["role"]}
        info.update({key: value for key, value in settings.items()
                     if key not in ("name", "role") and value != package_defaults[key]})
        members.append((info, weights))
    if localizer is not None:
        settings, weights = _run_member(Path(localizer), checkpoint, package_inference)
        members.append(({"name": "localizer", **settings, "role": "localizer"}, weights))
    return write_package(
        destination, name=name, version=version, preprocessing=defaults["preprocessing"],
        network=defaults["network"], patch_size=defaults["patch_size"], inference=package_inference,
        postprocessing=dict(postprocessing or base_defaults.get("postprocessing") or DEFAULT_POSTPROCESSING),
        members=members, labels=base_defaults.get("labels"), provenance=dict(provenance or {}),
        description=description, overwrite=overwrite,
    )
