"""Two CT "domains" of tiny kidney phantoms, for fine-tuning checks that must finish in minutes on a CPU.

Each case is a 6 mm volume of a body (soft tissue, air around it) holding one ellipsoid kidney (label 1) with a
tumor (2) at its edge and, in odd cases, a cyst (3). In the ``original`` domain the tumor enhances less than the
kidney (a portal-venous look); in the ``shifted`` domain it enhances more (an arterial-phase look: a
hyper-enhancing tumor), the noise is higher and the calibration is off by +15 HU. A network trained on the
original domain takes the shifted tumor for kidney, which is what fine-tuning on corrected shifted cases must fix.

Cases are written as "Export correction" writes them (imaging.nii.gz, segmentation.nii.gz, correction.json),
which is also a KiTS-layout dataset the fine-tuning can replay. :func:`random_store` holds a package of random
weights at the phantoms' spacing to start from; :func:`mean_dice` scores a version on phantoms.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.labels import KITS_REGIONS
from kidneytumorseg.metrics import compute_case_metrics
from kidneytumorseg.model_package import write_package
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.networks import build_network, plan_network
from kidneytumorseg.predictor import PredictionOptions, Predictor

SHAPE = (24, 40, 40)  # z, y, x voxels at 6 mm
SPACING = 6.0
# HU of background (soft tissue), kidney, tumor, cyst; noise sd; calibration offset
DOMAINS = {
    "original": {"hu": (0.0, 180.0, 90.0, 10.0), "noise": 12.0, "offset": 0.0},
    "shifted": {"hu": (0.0, 180.0, 290.0, 10.0), "noise": 30.0, "offset": 15.0},
}
AIR_HU = -1000.0
NORMALIZATION = {"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9}
PATCH = (16, 32, 32)


def phantom(seed: int, domain: str) -> tuple[sitk.Image, sitk.Image]:
    """The CT (HU, int16) and label map of case ``seed`` in ``domain``; the geometry is the same for every case."""
    settings = DOMAINS[domain]
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = np.array([12.0, 20.0, 20.0]) + rng.uniform(-3, 3, size=3)
    radii = np.array([5.0, 9.0, 6.5]) * rng.uniform(0.85, 1.15, size=3)

    def ball(middle: np.ndarray, axes: np.ndarray) -> np.ndarray:
        return sum(((grid[i] - middle[i]) / axes[i]) ** 2 for i in range(3)) <= 1

    label = np.zeros(SHAPE, np.uint8)
    label[ball(centre, radii)] = 1
    side = 1 if seed % 2 else -1
    label[ball(centre + np.array([0.0, side * 0.6 * radii[1], 0.0]), np.full(3, rng.uniform(3.2, 4.2)))] = 2
    if seed % 2:
        label[ball(centre - np.array([0.0, 0.5 * radii[1], -1.5]), np.full(3, 1.8))] = 3
    image = np.choose(label, settings["hu"]).astype(np.float32) + settings["offset"]
    body = ((grid[1] - 20.0) / 19.0) ** 2 + ((grid[2] - 20.0) / 19.5) ** 2 <= 1
    image[~body] = AIR_HU
    image += rng.normal(0.0, settings["noise"], SHAPE).astype(np.float32)
    ct = sitk.GetImageFromArray(np.round(image).astype(np.int16))
    mask = sitk.GetImageFromArray(label)
    for item in (ct, mask):
        item.SetSpacing((SPACING,) * 3)
        item.SetOrigin((-120.0, -120.0, -70.0))
    return ct, mask


def write_cases(folder: Path, seeds: range | list[int], domain: str) -> Path:
    """Write the cases ``case_<seed>`` of ``domain`` into ``folder`` as exported corrections; returns it."""
    for seed in seeds:
        case = folder / f"case_{seed:05d}"
        case.mkdir(parents=True)
        ct, mask = phantom(seed, domain)
        sitk.WriteImage(ct, str(case / "imaging.nii.gz"))
        sitk.WriteImage(mask, str(case / "segmentation.nii.gz"))
        (case / "correction.json").write_text(json.dumps(
            {"model": "tiny", "version": "test", "time": "2026-01-01T00:00:00+00:00", "note": f"{domain} phantom"}))
    return folder


def random_store(root: Path, name: str = "phantom", base_features: int = 8) -> ModelStore:
    """A store (``root``/bundled empty, ``root``/user) holding ``name``@1.0.0: one segmenter with random weights
    (seeded) at the phantoms' spacing, no localizer."""
    import torch

    torch.manual_seed(0)
    network = plan_network(PATCH, (SPACING,) * 3, base_features=base_features, deep_supervision=False).to_dict()
    write_package(root / "user" / name / "1.0.0", name=name, version="1.0.0", description="random weights",
                  preprocessing={"target_spacing": [SPACING] * 3, "normalization": NORMALIZATION},
                  network=network, patch_size=list(PATCH), inference={"tile_overlap": 0.25, "mirror_axes": []},
                  postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                                  "min_component_ml": 0.0, "hysteresis": None},
                  members=[({"name": "fold0"}, build_network(network).state_dict())],
                  provenance={"recipe": "random weights for phantom checks"})
    return ModelStore(root / "bundled", root / "user")


def mean_dice(store: ModelStore, spec: str, seeds: range | list[int], domain: str) -> dict[str, float]:
    """Mean Dice per KiTS region of ``spec`` (default quality, CPU) on the phantoms ``seeds`` of ``domain``."""
    predictor = Predictor.from_store(spec, PredictionOptions(device="cpu"), store=store)
    metrics = [compute_case_metrics(predictor.segment(ct).labels, mask)
               for ct, mask in (phantom(seed, domain) for seed in seeds)]
    return {region.name: float(np.mean([m.dice[region.name] for m in metrics])) for region in KITS_REGIONS}
