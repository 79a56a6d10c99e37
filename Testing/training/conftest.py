"""Fixtures of the training-package tests: committed KiTS-derived masks (3 mm) and the synthetic sample."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import SimpleITK as sitk

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MASKS_3MM = FIXTURES / "kits23_masks_3mm"
SAMPLE_DIR = FIXTURES / "synthetic"


@cache
def _mask(case: str) -> sitk.Image:
    path = MASKS_3MM / case / "segmentation.nii.gz"
    if not path.is_file():
        pytest.fail(f"fixture {path} missing; it is committed: restore it from version control")
    return sitk.ReadImage(str(path))


@pytest.fixture(scope="session")
def mask_cases() -> list[str]:
    """Names of the committed 3 mm whole-abdomen KiTS masks."""
    names = sorted(p.name for p in MASKS_3MM.glob("case_*"))
    assert len(names) >= 6, f"expected the committed masks in {MASKS_3MM}"
    return names


@pytest.fixture(scope="session")
def load_mask():
    """``load_mask(case)`` returns the committed 3 mm mask of ``case`` (cached)."""
    return _mask


@pytest.fixture(scope="session")
def masks_3mm_dir() -> Path:
    return MASKS_3MM
