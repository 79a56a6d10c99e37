"""Windows of the whole volume's model grid give exactly the numbers the whole-volume resampling gives."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kidneytumorseg.geometry import resample_array, resample_to_shape, resampled_shape
from kidneytumorseg.model_window import model_window, resample_from_window, resample_into_window

# (input shape, input spacing, model spacing): shrinking, growing, mixed, equal, and non-commensurate ratios.
GRIDS = [
    ((30, 61, 47), (3.0, 1.5, 1.5), (3.0, 2.0, 2.0)),
    ((23, 40, 33), (2.0, 0.78125, 0.78125), (1.0, 1.62, 1.62)),
    ((17, 29, 38), (1.25, 2.5, 0.7), (3.22, 1.62, 1.0)),
    ((12, 20, 20), (2.0, 1.0, 1.0), (2.0, 1.0, 1.0)),
]


def _boxes(shape, rng):
    yield tuple(slice(0, n) for n in shape)  # the whole volume
    yield tuple(slice(0, max(1, n // 3)) for n in shape)  # at the first corner
    yield tuple(slice(n - max(1, n // 4), n) for n in shape)  # at the far corner (clamped borders)
    for _ in range(6):
        starts = [int(rng.integers(0, n - 1)) for n in shape]
        yield tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(starts, shape, strict=True))


@pytest.mark.parametrize(("shape", "spacing", "target"), GRIDS)
def test_a_window_has_the_whole_volumes_model_voxels_and_brings_them_back_the_same(shape, spacing, target):
    rng = np.random.default_rng(7)
    volume = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    whole = resample_array(volume, spacing, target)
    assert whole.shape == resampled_shape(shape, spacing, target)
    probabilities = rng.random((2, *whole.shape), dtype=np.float32)
    back = resample_to_shape(probabilities, target, shape, spacing)
    for box, minimum in itertools.product(_boxes(shape, rng), [None, (5, 40, 9)]):
        window = model_window(box, shape, spacing, target, minimum=minimum)
        if minimum is not None:  # grown to the minimum, as far as the model grid allows
            assert all(cut.stop - cut.start >= min(least, m) and cut.start >= 0 and cut.stop <= m
                       for cut, least, m in zip(window.window, minimum, whole.shape, strict=True))
        values = resample_into_window(volume[window.source], window, shape, spacing, target)
        np.testing.assert_array_equal(values, whole[window.window])
        returned = resample_from_window(probabilities[(slice(None), *window.window)], window, box, shape, spacing,
                                        target)
        np.testing.assert_array_equal(returned, back[(slice(None), *box)])


def test_a_window_reads_only_near_its_box():
    shape, spacing, target = (100, 200, 200), (3.0, 1.5, 1.5), (3.0, 2.0, 2.0)
    box = (slice(40, 60), slice(80, 120), slice(10, 30))
    window = model_window(box, shape, spacing, target)
    for cut, source, model in zip(box, window.source, window.window, strict=True):
        assert cut.start - 3 <= source.start <= cut.start and cut.stop <= source.stop <= cut.stop + 3
        assert model.stop - model.start <= (cut.stop - cut.start) + 3


def test_bad_boxes_and_crops_are_refused():
    shape, spacing, target = (10, 10, 10), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="inside the volume"):
        model_window((slice(0, 11), slice(0, 5), slice(0, 5)), shape, spacing, target)
    window = model_window((slice(0, 5), slice(0, 5), slice(0, 5)), shape, spacing, target)
    with pytest.raises(ValueError, match="window reads"):
        resample_into_window(np.zeros((2, 2, 2), np.float32), window, shape, spacing, target)
