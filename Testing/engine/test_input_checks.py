"""Checks on a CT before prediction: each refusal names the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.errors import InputImageError, InsufficientMemoryError, NotCTError
from kidneytumorseg.input_checks import (
    check_ct_volume,
    check_prediction_memory,
    estimate_prediction_bytes,
)

SPACING = (3.0, 0.8, 0.8)


@pytest.fixture()
def ct() -> np.ndarray:
    """Air around a soft-tissue body, in HU."""
    volume = np.full((10, 20, 20), -1000.0, dtype=np.float32)
    volume[:, 4:16, 4:16] = np.random.default_rng(0).normal(40.0, 30.0, size=(10, 12, 12))
    return volume


def test_a_ct_passes(ct):
    check_ct_volume(ct, SPACING)
    check_ct_volume(ct.astype(np.int16), SPACING)


@pytest.mark.parametrize("shape", [(20, 20), (2, 10, 20, 20)])
def test_not_3d_is_refused(shape):
    with pytest.raises(InputImageError, match=f"{len(shape)} dimensions.*3D CT volume is needed"):
        check_ct_volume(np.zeros(shape, dtype=np.float32), SPACING)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_counted(ct, bad):
    ct[0, 0, :3] = bad
    with pytest.raises(InputImageError, match="3 voxels that are NaN or infinite.*Re-export"):
        check_ct_volume(ct, SPACING)


def test_empty_and_constant_are_refused():
    with pytest.raises(InputImageError, match="empty"):
        check_ct_volume(np.zeros((0, 4, 4), dtype=np.float32), SPACING)
    with pytest.raises(InputImageError, match="constant.*-1000.*right series"):
        check_ct_volume(np.full((4, 4, 4), -1000.0, dtype=np.float32), SPACING)


@pytest.mark.parametrize("spacing", [(0.001, 0.8, 0.8), (3.0, 50.0, 0.8), (3.0, 0.8, float("nan"))])
def test_absurd_spacing_is_refused(ct, spacing):
    with pytest.raises(InputImageError, match="absurd spacing.*0.1..20 mm.*fix the spacing"):
        check_ct_volume(ct, spacing)


def test_mr_like_intensities_refused_unless_allowed():
    mr = np.random.default_rng(1).uniform(0.0, 1200.0, size=(8, 16, 16)).astype(np.float32)
    with pytest.raises(NotCTError, match="does not look like a CT.*allow_non_ct=True / --allow-non-ct"):
        check_ct_volume(mr, SPACING)
    check_ct_volume(mr, SPACING, allow_non_ct=True)


def test_ct_without_rescale_intercept_is_refused(ct):
    with pytest.raises(NotCTError, match="rescale intercept"):
        check_ct_volume(ct + 1024.0, SPACING)


def test_no_air_is_refused(ct):
    ct[ct < -500] = -200.0  # negative, but nothing as dark as air
    with pytest.raises(NotCTError, match="nothing below -500 HU"):
        check_ct_volume(ct, SPACING)


def test_memory_estimate_and_check():
    small = estimate_prediction_bytes((20, 40, 40), SPACING, SPACING)
    coarse = estimate_prediction_bytes((20, 40, 40), SPACING, (6.0, 1.6, 1.6))
    assert 0 < coarse < small
    assert estimate_prediction_bytes((40, 40, 40), SPACING, SPACING) > small
    check_prediction_memory((20, 40, 40), SPACING, SPACING, available=10 * small)
    with pytest.raises(InsufficientMemoryError, match="20x40x40.*Crop the CT"):
        check_prediction_memory((20, 40, 40), SPACING, SPACING, available=small // 2)
