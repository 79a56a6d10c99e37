"""Shared fixtures of the engine tests: the committed real-mask crops and label-map builders.

Tests get these as fixtures rather than importing this module, so they do not depend on which
``conftest`` module Python has imported last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parents[2]
KITS_CROPS_DIR = REPO_ROOT / "Testing" / "fixtures" / "kits23_crops"
SHARED_MASKS_DIR = REPO_ROOT.parent / "shared" / "data" / "kits23-masks"


def _label_map_image(
    array: np.ndarray,
    spacing: Sequence[float] = (0.8, 0.8, 3.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
) -> sitk.Image:
    """A uint8 label map from a numpy (z, y, x) array; spacing and origin in SimpleITK (x, y, z) order."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    return image


@pytest.fixture(scope="session")
def make_label_map() -> Callable[..., sitk.Image]:
    """Build a label map image: ``make_label_map(array, spacing=(x, y, z), origin=(x, y, z))``."""
    return _label_map_image


@pytest.fixture(scope="session")
def write_label_map() -> Callable[..., Path]:
    """Write a numpy label map to a path (folders created) and return the path; geometry as make_label_map."""

    def write(array: np.ndarray, path: Path, **geometry: Sequence[float]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(_label_map_image(array, **geometry), str(path), useCompression=True)
        return path

    return write


@pytest.fixture(scope="session")
def kits_crops_dir() -> Path:
    """Folder of the committed KiTS23 crops, in KiTS layout (case_XXXXX/segmentation.nii.gz)."""
    if not any(KITS_CROPS_DIR.glob("case_*/segmentation.nii.gz")):
        pytest.fail(f"No fixtures in {KITS_CROPS_DIR}; they are committed: restore them from version control.")
    return KITS_CROPS_DIR


@pytest.fixture(scope="session")
def kits_crops(kits_crops_dir: Path) -> dict[str, sitk.Image]:
    """The committed crops of real KiTS23 masks, by case id (made by scripts/make_fixtures.py)."""
    paths = sorted(kits_crops_dir.glob("case_*/segmentation.nii.gz"))
    return {path.parent.name: sitk.ReadImage(str(path)) for path in paths}


@pytest.fixture(scope="session")
def shared_masks_dir() -> Path:
    """Where the full KiTS23 masks are when ../shared is present (tests using it must skip otherwise)."""
    return SHARED_MASKS_DIR


SAMPLE_CT = REPO_ROOT / "Testing" / "fixtures" / "synthetic" / "case_00161" / "imaging.nii.gz"


def _random_package(folder: Path, *, with_localizer: bool = True, spacing: Sequence[float] = (6.0, 6.0, 6.0),
                    patch: Sequence[int] = (16, 32, 32), segmenters: int = 2, version: str = "1.0.0") -> Path:
    """A real model package (our planner, U-Net and writer) with random weights: fast, meaningless labels."""
    import torch

    from kidneytumorseg.model_package import write_package
    from kidneytumorseg.networks import build_network, plan_network

    torch.manual_seed(0)
    network = plan_network(patch, spacing, base_features=4, max_features=16).to_dict()
    members = [({"name": f"fold{i}"}, build_network(network).state_dict()) for i in range(segmenters)]
    if with_localizer:
        coarse_patch, coarse_spacing = (16, 16, 16), (12.0, 12.0, 12.0)
        coarse = plan_network(coarse_patch, coarse_spacing, base_features=4, max_features=8).to_dict()
        members.append(({"name": "localizer", "role": "localizer", "network": coarse, "patch_size": list(coarse_patch),
                         "preprocessing": {"target_spacing": list(coarse_spacing),
                                           "normalization": {"scheme": "clip_zscore", "clip": [-79, 304],
                                                             "mean": 101.0, "std": 76.9}}},
                        build_network(coarse).state_dict()))
    return write_package(
        folder, name="random-test", version=version, description="random weights, for tests",
        preprocessing={"target_spacing": list(spacing),
                       "normalization": {"scheme": "clip_zscore", "clip": [-79, 304], "mean": 101.0, "std": 76.9}},
        network=network, patch_size=list(patch), inference={"tile_overlap": 0.25, "mirror_axes": [0, 1, 2]},
        postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                        "min_component_ml": 0.0, "hysteresis": None},
        members=members, provenance={"recipe": "random weights for tests"},
    )


@pytest.fixture(scope="session")
def random_package(tmp_path_factory) -> Path:
    """A store folder (``<dir>/random-test/1.0.0``) holding a random-weight package with a localizer."""
    store = tmp_path_factory.mktemp("store")
    _random_package(store / "random-test" / "1.0.0")
    return store


@pytest.fixture(scope="session")
def make_random_package() -> Callable[..., Path]:
    return _random_package


@pytest.fixture(scope="session")
def sample_ct() -> sitk.Image:
    """The committed synthetic CT (3 mm, from a KiTS23 mask), as SimpleITK image."""
    return sitk.ReadImage(str(SAMPLE_CT))
