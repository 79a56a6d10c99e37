"""CT intensity normalisation schemes of model packages."""

from __future__ import annotations

import numpy as np
import pytest

from kidneytumorseg.normalization import normalize, resolve_normalization, validate_normalization


@pytest.fixture()
def ct() -> np.ndarray:
    return np.random.default_rng(0).normal(40.0, 300.0, size=(8, 16, 16)).astype(np.float32)


def test_clip_zscore_clips_then_standardises(ct):
    settings = {"scheme": "clip_zscore", "clip": [-79, 304], "mean": 101.0, "std": 76.9}
    out = normalize(ct, settings)
    expected = (np.clip(ct, -79, 304) - 101.0) / 76.9
    assert out.dtype == np.float32 and out.shape == ct.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert out.min() >= (-79 - 101.0) / 76.9 - 1e-5


def test_normalize_leaves_input_untouched(ct):
    before = ct.copy()
    normalize(ct, {"scheme": "percentile_zscore"})
    np.testing.assert_array_equal(ct, before)


def test_percentile_zscore_per_case(ct):
    out = normalize(ct, {"scheme": "percentile_zscore", "percentiles": [0.5, 99.5]})
    low, high = np.percentile(ct, [0.5, 99.5])
    clipped = np.clip(ct, low, high)
    np.testing.assert_allclose(out, (clipped - clipped.mean()) / clipped.std(), rtol=1e-4, atol=1e-4)
    assert abs(float(out.mean())) < 1e-4 and abs(float(out.std()) - 1.0) < 1e-4


def test_percentile_default_and_resolution_is_reusable_on_crops(ct):
    resolved = resolve_normalization(ct, {"scheme": "percentile_zscore"})
    assert resolved["scheme"] == "clip_zscore"
    np.testing.assert_allclose(resolved["clip"], np.percentile(ct, [0.5, 99.5]), rtol=1e-6)
    crop = ct[2:5, 3:9, 4:12]
    np.testing.assert_allclose(normalize(crop, resolved), normalize(ct, resolved)[2:5, 3:9, 4:12], rtol=1e-6)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scheme": "minmax"}, "unknown scheme 'minmax'"),
        ({}, "unknown scheme None"),
        ({"scheme": "clip_zscore", "clip": [0, 1], "mean": 0}, "'std'"),
        ({"scheme": "clip_zscore", "clip": [5, 1], "mean": 0, "std": 1}, "low < high"),
        ({"scheme": "clip_zscore", "clip": [0, 1], "mean": 0, "std": 0}, "'std' finite and > 0"),
        ({"scheme": "percentile_zscore", "percentiles": [1, 101]}, "0..100"),
        ("clip_zscore", "expected a mapping"),
    ],
)
def test_bad_settings_say_what_is_wrong(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        validate_normalization(settings)


def test_unknown_scheme_lists_the_known_ones(ct):
    with pytest.raises(ValueError, match="clip_zscore.*percentile_zscore"):
        normalize(ct, {"scheme": "histogram"})
