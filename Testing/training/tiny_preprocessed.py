"""A tiny preprocessed dataset written straight in the contract's format (docs/training-contracts.md).

Each case is a 24x48x48 volume with a bright ellipsoid "kidney" holding a darker "tumor" and, in some
cases, a "cyst", on a noisy background: learnable in a few dozen CPU steps, so trainer tests run in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kidneytumorseg.networks import plan_network

SHAPE = (24, 48, 48)
PATCH = [16, 32, 32]
SPACING = [3.0, 2.0, 2.0]


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = np.array([12, 24, 24]) + rng.integers(-4, 5, size=3)
    radii = np.array([6, 10, 8]) * rng.uniform(0.8, 1.2, size=3)
    distance = sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3))
    label = np.zeros(SHAPE, np.uint8)
    label[distance <= 1] = 1
    tumor_centre = centre + np.array([0, 4, 0])
    label[sum(((grid[i] - tumor_centre[i]) / 5.0) ** 2 for i in range(3)) <= 1] = 2
    if seed % 2:
        cyst_centre = centre - np.array([0, 5, 2])
        label[sum(((grid[i] - cyst_centre[i]) / 2.5) ** 2 for i in range(3)) <= 1] = 3
    image = rng.normal(0, 0.3, SHAPE).astype(np.float32)
    image += np.choose(label, [-1.0, 1.0, 3.0, -0.2]).astype(np.float32)
    return image, label


def write_tiny_preprocessed(folder: Path, cases: int = 4, base_features: int = 4) -> Path:
    """Write ``cases`` cases and a plans.json into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    network = plan_network(PATCH, SPACING, base_features=base_features, max_features=32,
                           deep_supervision=True).to_dict()
    plans = {"format_version": 1, "name": "tiny", "dataset": "synthetic ellipsoids", "budget": "cpu",
             "target_spacing": SPACING,
             "normalization": {"scheme": "clip_zscore", "clip": [-100.0, 300.0], "mean": 100.0, "std": 50.0},
             "image_interpolation": "linear", "patch_size": PATCH, "batch_size": 2, "network": network,
             "num_classes": 4, "fingerprint": {}}
    (folder / "plans.json").write_text(json.dumps(plans))
    for index in range(cases):
        case_id = f"case_{index:05d}"
        image, label = _case(index)
        np.save(folder / f"{case_id}.image.npy", image)
        np.save(folder / f"{case_id}.label.npy", label)
        locations = {f"class_{c}": np.argwhere(label == c).astype(np.int32) for c in (1, 2, 3)}
        np.savez(folder / f"{case_id}.locations.npz", **locations)
        meta = {"case_id": case_id, "source_image": "generated", "original_spacing": SPACING,
                "original_shape": list(SHAPE), "crop_box": [[0, n] for n in SHAPE], "shape": list(SHAPE),
                "spacing": SPACING, "class_voxels": {str(c): int((label == c).sum()) for c in (1, 2, 3)}}
        (folder / f"{case_id}.json").write_text(json.dumps(meta))
    return folder
