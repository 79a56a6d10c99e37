"""The case preprocessed once, padded so that every peer tiles it alike, and saved with the networks' weights.

Everything a measurement process needs lies in one work folder: ``setup.json`` (:class:`Setup`),
``volume.npy``, ``kidney.npy``, ``coarse_kidney.npy``, ``network.safetensors`` and ``localizer.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from safetensors.torch import load_file, save_file

from kidneytumorseg.geometry import resample_array, resample_to_shape, resampled_shape, to_lps
from kidneytumorseg.networks import build_network, count_parameters, plan_network
from kidneytumorseg.normalization import normalize
from kidneytumorseg.sliding_window import tile_slices
from peer_comparison.variants import SlidingWindowConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CASE = REPO / "Testing" / "fixtures" / "synthetic" / "case_00112"
# The model package defaults (docs/engine-contracts.md): CT clipped to [-79, 304] HU, then z-scored.
CT_NORMALIZATION = {"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9}


@dataclass
class Setup:
    """What every measurement process needs, saved as ``setup.json`` next to the arrays and weights."""

    case: str
    spacing: tuple[float, float, float]
    original_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    padding: list[tuple[int, int]]
    patch_size: tuple[int, int, int]
    overlap: float
    mirror_axes: tuple[int, ...]
    num_classes: int
    network: dict[str, Any]
    parameters: int
    tiles: int
    margin_mm: float
    localizer_spacing: tuple[float, float, float]
    localizer_patch: tuple[int, int, int]
    localizer_network: dict[str, Any]
    coarse_shape: tuple[int, int, int]
    threads: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> SlidingWindowConfig:
        patch = tuple(int(p) for p in self.patch_size)
        return SlidingWindowConfig(patch, self.overlap, tuple(self.mirror_axes), self.num_classes)  # type: ignore[arg-type]

    def save(self, workdir: Path) -> None:
        (workdir / "setup.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, workdir: Path) -> Setup:
        return cls(**json.loads((workdir / "setup.json").read_text()))


def aligned_padding(
    shape: Sequence[int], patch: Sequence[int], overlap: float
) -> tuple[list[tuple[int, int]], list[str]]:
    """Zero padding (before, after) per axis after which MONAI's tiles start where nnU-Net's and ours do.

    An axis longer than the tile is padded to ``tile + k * step`` voxels, half before and half after (the odd
    voxel after); an axis no longer than the tile is left alone, and so is one whose step is not whole (with a
    note saying so, the second item returned).
    """
    padding, notes = [], []
    for axis, (n, p) in enumerate(zip(shape, patch, strict=True)):
        step = p * (1.0 - overlap)
        if n <= p:
            padding.append((0, 0))  # one tile, padded to the patch the same way by all three
            continue
        if abs(step - round(step)) > 1e-9:
            notes.append(f"axis {axis}: the tile step {step:g} is not whole; MONAI's tiles differ from ours there")
            padding.append((0, 0))
            continue
        missing = p + math.ceil((n - p) / round(step)) * round(step) - n
        padding.append((missing // 2, missing - missing // 2))
    return padding, notes


def _read_case(case: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The case's CT and reference mask (LPS arrays on one grid) and its spacing."""
    image_path, mask_path = case / "imaging.nii.gz", case / "segmentation.nii.gz"
    for path in (image_path, mask_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; --case must be a folder with imaging.nii.gz and "
                                    f"segmentation.nii.gz (e.g. {DEFAULT_CASE}).")
    ct, spacing, _ = to_lps(sitk.ReadImage(str(image_path)))
    reference, reference_spacing, _ = to_lps(sitk.ReadImage(str(mask_path)))
    if reference.shape != ct.shape or not np.allclose(reference_spacing, spacing):
        raise ValueError(f"{mask_path} is not on the grid of {image_path}.")
    return ct, reference, spacing


def prepare(args: argparse.Namespace, workdir: Path) -> Setup:
    """Preprocess the case, plan and build the networks, save everything; return the setup."""
    case = Path(args.case)
    ct, reference, spacing = _read_case(case)
    target = tuple(float(s) for s in args.spacing)
    volume = resample_array(normalize(ct, CT_NORMALIZATION), spacing, target, "linear")
    kidney = resample_to_shape(reference.astype(np.float32), spacing, volume.shape, target, "nearest") > 0

    patch = tuple(int(p) for p in args.patch)
    padding, notes = aligned_padding(volume.shape, patch, args.overlap) if args.align else ([(0, 0)] * 3, [])
    if not args.align:
        notes.append("--no-align: MONAI's tiles may start elsewhere than nnU-Net's and ours")
    original_shape = tuple(int(n) for n in volume.shape)
    volume = np.ascontiguousarray(np.pad(volume, padding, constant_values=0.0), dtype=np.float32)
    kidney = np.pad(kidney, padding, constant_values=False)

    config = plan_network(patch, target, base_features=args.features, max_features=args.max_features)
    torch.manual_seed(0)
    network = build_network(config)
    save_file(network.state_dict(), str(workdir / "network.safetensors"))
    localizer_patch = tuple(int(p) for p in args.localizer_patch)
    localizer_spacing = tuple(float(s) for s in args.localizer_spacing)
    localizer_config = plan_network(localizer_patch, localizer_spacing, base_features=args.localizer_features,
                                    max_features=args.max_features)
    torch.manual_seed(1)
    save_file(build_network(localizer_config).state_dict(), str(workdir / "localizer.safetensors"))

    coarse_shape = resampled_shape(volume.shape, target, localizer_spacing)
    coarse_kidney = resample_to_shape(kidney.astype(np.float32), target, coarse_shape, localizer_spacing,
                                      "linear") >= 0.5
    np.save(workdir / "volume.npy", volume)
    np.save(workdir / "kidney.npy", kidney)
    np.save(workdir / "coarse_kidney.npy", coarse_kidney)

    padded_for_tiles = [max(n, p) for n, p in zip(volume.shape, patch, strict=True)]
    setup = Setup(
        case=str(case), spacing=target, original_shape=original_shape, shape=tuple(int(n) for n in volume.shape),
        padding=padding, patch_size=patch, overlap=float(args.overlap), mirror_axes=(0, 1, 2) if args.mirror else (),
        num_classes=config.num_classes, network=config.to_dict(), parameters=count_parameters(network),
        tiles=len(tile_slices(padded_for_tiles, patch, args.overlap)), margin_mm=float(args.margin_mm),
        localizer_spacing=localizer_spacing, localizer_patch=localizer_patch,
        localizer_network=localizer_config.to_dict(), coarse_shape=tuple(int(n) for n in coarse_shape),
        threads=args.threads, notes=notes,
    )
    setup.save(workdir)
    return setup


def load_network(config: dict[str, Any], weights: Path) -> torch.nn.Module:
    """A network built from its saved config (``NetworkConfig.to_dict()``) with the saved weights, eval mode."""
    network = build_network(config)
    network.load_state_dict(load_file(str(weights)))
    network.deep_supervision = False
    return network.eval()
