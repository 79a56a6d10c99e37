"""Median denoising of the network input (TuNet's optional 3x3x3 median)."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.denoising import check_median_size, median_denoise
from kidneytumorseg.normalization import normalize


def test_a_3x3x3_median_removes_isolated_spikes_and_keeps_edges():
    volume = np.zeros((8, 10, 10), dtype=np.float32)
    volume[:, :, 5:] = 100.0  # an edge
    volume[4, 3, 2] = 1000.0  # salt
    out = median_denoise(volume, 3)
    assert out[4, 3, 2] == 0.0
    np.testing.assert_array_equal(out[:, :, 5:], 100.0)
    np.testing.assert_array_equal(out[:, :, :5][out[:, :, :5] != 0], [])
    assert median_denoise(volume, 0) is volume


def test_filtering_commutes_with_the_monotonic_normalisation():
    volume = np.random.default_rng(0).normal(50, 200, (6, 12, 12)).astype(np.float32)
    scheme = {"scheme": "clip_zscore", "clip": [-79, 304], "mean": 101.0, "std": 76.9}
    np.testing.assert_allclose(median_denoise(normalize(volume, scheme), 3),
                               normalize(median_denoise(volume, 3), scheme), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, -3, 2.5, True])
def test_bad_sizes_are_refused(size):
    with pytest.raises(ValueError, match="median_filter"):
        check_median_size(size)
