"""A tiny model package with random weights (a 6 mm segmenter and a 12 mm localizer) for tests that need a
package the engine and the training package accept and that fine-tunes in seconds."""

from __future__ import annotations

from pathlib import Path

import torch

from kidneytumorseg.model_package import ModelPackage, load_member_weights, write_package, write_package_version
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.networks import build_network, plan_network

NORMALIZATION = {"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9}
PATCH, SPACING = (16, 32, 32), (6.0, 6.0, 6.0)


def make_tiny_store(root: Path) -> ModelStore:
    """A store (bundled folder empty) whose user folder holds tiny@1.0.0."""
    torch.manual_seed(0)
    network = plan_network(PATCH, SPACING, base_features=4, deep_supervision=False).to_dict()
    coarse = plan_network((16, 16, 16), (12.0, 12.0, 12.0), base_features=4, max_features=8).to_dict()
    localizer = {"name": "localizer", "role": "localizer", "network": coarse, "patch_size": [16, 16, 16],
                 "preprocessing": {"target_spacing": [12.0] * 3, "normalization": NORMALIZATION}}
    write_package(
        root / "user" / "tiny" / "1.0.0", name="tiny", version="1.0.0", description="random weights",
        preprocessing={"target_spacing": list(SPACING), "normalization": NORMALIZATION}, network=network,
        patch_size=list(PATCH), inference={"tile_overlap": 0.25, "mirror_axes": []},
        postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                        "min_component_ml": 0.0, "hysteresis": None},
        members=[({"name": "fold0"}, build_network(network).state_dict()),
                 (localizer, build_network(coarse).state_dict())],
        provenance={"recipe": "random weights for tests"})
    return ModelStore(root / "bundled", root / "user")


def write_shifted_copy(parent: ModelPackage, folder: Path, version: str, shift: float,
                       provenance: dict | None = None) -> Path:
    """``parent`` as another version whose segmenter weights are all moved by ``shift`` (the localizer kept): a
    stand-in for a fine-tuned version."""
    weights = {member.name: {k: v + shift if v.is_floating_point() else v
                             for k, v in load_member_weights(parent, member).items()}
               for member in parent.members if member.role != "localizer"}
    return write_package_version(parent, folder, version=version, weights=weights, provenance=provenance or {})


def add_tiny_refiner(store: ModelStore, version: str = "1.1.0") -> ModelPackage:
    """tiny@``version``: tiny@1.0.0's segmenter and localizer (the same weights) plus a random 3D refiner (tumor and
    cyst inside the kidney region, the cyst taken from stage 1): a two-stage package whose stage 1 segments all
    four KiTS labels."""
    parent = ModelPackage.load(store.find("tiny@1.0.0").path)
    torch.manual_seed(1)
    network = plan_network(PATCH, SPACING, num_classes=3, base_features=4, deep_supervision=False).to_dict()
    refiner = {"name": "refiner", "role": "refiner", "network": network, "patch_size": list(PATCH),
               "preprocessing": {"target_spacing": list(SPACING), "normalization": NORMALIZATION,
                                 "stage_input": {"mask_image": True, "mask_dilation_mm": 6.0, "crop_margin_mm": 12.0}},
               "inference": {"output_labels": [0, 2, 3], "stage_one_weight": {"kidney": 0.5, "tumor": 0.5, "cyst": 1}}}
    manifest = parent.manifest
    members = [(entry, load_member_weights(parent, entry["name"])) for entry in manifest["members"]]
    folder = write_package(
        parent.path.parent / version, name="tiny", version=version, description="random weights, two stages",
        preprocessing=manifest["preprocessing"], network=manifest["network"], patch_size=manifest["patch_size"],
        inference=manifest["inference"], postprocessing=manifest["postprocessing"],
        members=[*members, (refiner, build_network(network).state_dict())],
        provenance={"recipe": "random weights for tests"})
    return ModelPackage.load(folder)
