"""Running one stage's members: settings, prepared input, 3D or 2.5D sliding window, KiTS output labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kidneytumorseg.member_runner import PredictorSettings, Runner, prepare_input, run_members
from kidneytumorseg.normalization import normalize

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IDENTITY_HU = {"scheme": "clip_zscore", "clip": [-1000, 1000], "mean": 0.0, "std": 100.0}


def _settings(**changes) -> PredictorSettings:
    values = {"target_spacing": (1.0, 1.0, 1.0), "patch_size": (4, 8, 8), "normalization": IDENTITY_HU,
              "device": "cpu"}
    return PredictorSettings(**{**values, **changes})


class _Threshold(torch.nn.Module):
    """Two classes: foreground where the (centre-slice) intensity is above 1 (100 HU)."""

    def __init__(self, dimension: int, channel: int = 0) -> None:
        super().__init__()
        self.dimension, self.channel = dimension, channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, self.channel:self.channel + 1]
        return torch.cat([torch.zeros_like(image), 20.0 * (image - 1.0)], dim=1)


def test_2p5d_settings_take_in_plane_patches():
    settings = _settings(patch_size=(8, 8), context_slices=1)
    assert settings.patch_size == (1, 8, 8)
    with pytest.raises(ValueError, match="in-plane"):
        _settings(patch_size=(4, 8, 8), context_slices=1)
    with pytest.raises(ValueError, match="context_slices"):
        _settings(context_slices=-1)
    with pytest.raises(ValueError, match="median_filter"):
        _settings(median_filter=2)


def test_the_input_is_normalised_resampled_and_median_filtered():
    volume = np.zeros((4, 8, 8), dtype=np.float32)
    volume[2, 4, 4] = 900.0
    plain = prepare_input(volume, (1.0, 1.0, 1.0), _settings())
    np.testing.assert_allclose(plain, normalize(volume, IDENTITY_HU))
    assert prepare_input(volume, (1.0, 1.0, 1.0), _settings(median_filter=3)).max() == 0.0
    assert prepare_input(volume, (1.0, 1.0, 1.0), _settings(target_spacing=(2.0, 2.0, 2.0))).shape == (2, 4, 4)


def test_3d_and_2p5d_members_give_the_same_pointwise_answer_mapped_onto_kits_labels():
    rng = np.random.default_rng(0)
    image = rng.normal(1.0, 1.0, (5, 12, 12)).astype(np.float32)
    as_3d = _settings(output_labels=(0, 2))
    as_2p5d = _settings(patch_size=(8, 8), context_slices=1, output_labels=(0, 2))
    three = run_members(image, [_Threshold(3)], as_3d, lambda *_: None, None, Runner(as_3d))
    slices = run_members(image, [_Threshold(2, channel=1)], as_2p5d, lambda *_: None, None, Runner(as_2p5d))
    assert three.shape == slices.shape == (4, 5, 12, 12)
    np.testing.assert_allclose(three, slices, atol=1e-5)
    np.testing.assert_array_equal(three[1], 0.0)
    np.testing.assert_array_equal(three[2] > 0.5, image > 1.0)
