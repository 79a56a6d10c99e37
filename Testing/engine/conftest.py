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
