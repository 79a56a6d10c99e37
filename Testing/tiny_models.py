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
