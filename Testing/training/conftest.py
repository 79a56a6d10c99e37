"""Fixtures of the training-package tests: committed KiTS-derived masks (3 mm) and the synthetic sample."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import SimpleITK as sitk
from fixture_cases import FIXTURES, SAMPLE_CASES, training_case

MASKS_3MM = FIXTURES / "kits23_masks_3mm"


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


@pytest.fixture(scope="session")
def fingerprint():
    """The dataset fingerprint of the two committed synthetic cases."""
    from kidneytumorseg_training.planning import compute_fingerprint

    return compute_fingerprint([training_case(c) for c in SAMPLE_CASES], jobs=1, progress=False)
