"""The predictor on arrays: probabilities on the input grid, ensembles, the cascade, progress, cancellation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from kidneytumorseg.errors import Cancelled
from kidneytumorseg.postprocessing import PostprocessingSettings
from kidneytumorseg.predictor_core import (
    CascadeSettings,
    PredictorSettings,
    grow_to_tile,
    localize,
    merge_boxes,
    predict,
    predict_probabilities,
)

SHAPE = (20, 40, 40)
SPACING = (2.0, 1.0, 1.0)
IDENTITY_HU = {"scheme": "clip_zscore", "clip": [-1000, 1000], "mean": 0.0, "std": 100.0}  # x / 100


# Tiny networks run far slower with two threads on a busy machine (the fixture is in Testing/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conv_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(4, 4, 3, padding=1)
    )


def _pointwise_net(seed: int) -> torch.nn.Module:
    """Output depends only on the voxel's own intensity (receptive field 1)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 8, 1), torch.nn.Tanh(), torch.nn.Conv3d(8, 4, 1))


class _BrightIsKidney(torch.nn.Module):
    """Localizer: foreground (kidney) where the normalised intensity is above 0.75 (75 HU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = torch.full_like(x, -20.0)
        return torch.cat([torch.zeros_like(x), 10.0 * (x - 0.75), low, low], dim=1)


def _settings(**changes) -> PredictorSettings:
    values = {"target_spacing": SPACING, "patch_size": (8, 16, 16), "normalization": IDENTITY_HU, "device": "cpu"}
    return PredictorSettings(**{**values, **changes})


def _ct(shape=SHAPE, kidneys=((slice(6, 14), slice(12, 26), slice(4, 12)),)) -> np.ndarray:
    volume = np.random.default_rng(0).normal(-80.0, 30.0, size=shape).astype(np.float32)
    for box in kidneys:
        volume[box] = np.random.default_rng(1).normal(160.0, 20.0, size=volume[box].shape)
    return volume


def _softmax(net: torch.nn.Module, normalised: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(normalised)[None, None]), dim=1)[0].numpy()


def test_probabilities_are_on_the_input_grid_and_sum_to_one():
    volume = _ct()
    settings = _settings(target_spacing=(3.0, 1.5, 1.7), mirror_axes=(2,))
    probabilities = predict_probabilities(volume, SPACING, [_conv_net(0)], settings)
    assert probabilities.shape == (4, *SHAPE) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    labels = predict(volume, SPACING, [_conv_net(0)], settings).labels
    assert labels.shape == SHAPE and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=0))


def test_ensemble_is_the_mean_of_member_softmaxes():
    volume = _ct()
    members = [_pointwise_net(1), _pointwise_net(2)]
    probabilities = predict_probabilities(volume, SPACING, members, _settings(patch_size=SHAPE))
    normalised = np.clip(volume, -1000, 1000) / 100.0
    expected = (_softmax(members[0], normalised) + _softmax(members[1], normalised)) / 2
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


def test_members_must_agree_on_classes():
    torch.manual_seed(0)
    three = torch.nn.Conv3d(1, 3, 1)
    with pytest.raises(ValueError, match="member 1 predicts 4"):
        predict_probabilities(_ct(), SPACING, [_pointwise_net(1), three], _settings())
    with pytest.raises(ValueError, match="at least one segmenter"):
        predict_probabilities(_ct(), SPACING, [], _settings())


def test_deep_supervision_is_switched_off():
    net = _pointwise_net(1)
    net.deep_supervision = True
    predict_probabilities(_ct(), SPACING, [net], _settings())
    assert net.deep_supervision is False


def _cascade(**changes) -> CascadeSettings:
    localizer = _settings(target_spacing=(4.0, 2.0, 2.0), patch_size=(8, 8, 8))
    return CascadeSettings(localizer=localizer, **changes)


def test_localizer_boxes_cover_the_kidneys_with_margin():
    kidneys = ((slice(6, 14), slice(12, 26), slice(4, 12)), (slice(5, 13), slice(14, 24), slice(50, 58)))
    volume = _ct(shape=(20, 40, 64), kidneys=kidneys)
    cascade = _cascade(margin_mm=3.0)
    boxes = localize(volume, SPACING, _BrightIsKidney(), cascade.localizer, margin_mm=3.0)
    assert len(boxes) == 2
    for kidney, box in zip(kidneys, boxes, strict=True):
        for k, b, s in zip(kidney, box, SPACING, strict=True):
            assert b.start <= k.start - 3 / s + 2 and b.stop >= k.stop + 3 / s - 2  # margin, up to coarse voxels
            assert b.start <= k.start and b.stop >= k.stop
    wide = localize(volume, SPACING, _BrightIsKidney(), cascade.localizer, margin_mm=25.0)  # overlap: merged
    assert wide == [(slice(0, 20), slice(0, 40), slice(0, 64))]


def test_merge_boxes_merges_chains_of_overlaps():
    a = (slice(0, 5), slice(0, 5), slice(0, 5))
    b = (slice(4, 8), slice(4, 8), slice(4, 8))
    c = (slice(7, 9), slice(0, 9), slice(7, 9))
    d = (slice(20, 22), slice(20, 22), slice(20, 22))
    assert merge_boxes([c, d, a, b]) == [(slice(0, 9), slice(0, 9), slice(0, 9)), d]


def test_cascade_agrees_with_the_full_run_inside_the_boxes():
    kidneys = ((slice(6, 14), slice(12, 26), slice(4, 12)), (slice(5, 13), slice(14, 24), slice(50, 58)))
    volume = _ct(shape=(20, 40, 64), kidneys=kidneys)
    settings = _settings(normalization={"scheme": "percentile_zscore"})  # per case: resolved on the whole volume
    members = [_pointwise_net(3), _pointwise_net(4)]
    full = predict(volume, SPACING, members, settings)
    cascaded = predict(volume, SPACING, members, settings, localizer=_BrightIsKidney(),
                       cascade=_cascade(margin_mm=3.0))
    assert len(cascaded.boxes) == 2
    inside = np.zeros(volume.shape, dtype=bool)
    for box in cascaded.boxes:
        inside[box] = True
    for kidney in kidneys:
        assert inside[kidney].all()
    np.testing.assert_array_equal(cascaded.labels[inside], full.labels[inside])
    np.testing.assert_allclose(cascaded.probabilities[:, inside], full.probabilities[:, inside], atol=1e-5)
    assert (cascaded.labels[~inside] == 0).all() and (cascaded.probabilities[0, ~inside] == 1.0).all()


@pytest.mark.parametrize("target_spacing", [(3.0, 1.5, 1.5), (2.5, 0.7, 1.3)])
def test_cascade_resamples_on_the_whole_volumes_model_grid(target_spacing):
    """A crop resampled on its own grid is shifted by a fraction of a model voxel from the whole volume's (its
    corner is not a multiple of the model spacing); the cascade resamples a window of the whole volume's model
    grid, so with a network that sees one voxel at a time its probabilities are the whole volume's."""
    kidneys = ((slice(6, 14), slice(13, 27), slice(5, 13)), (slice(5, 13), slice(15, 25), slice(49, 59)))
    volume = _ct(shape=(20, 40, 64), kidneys=kidneys)
    settings = _settings(target_spacing=target_spacing)
    members = [_pointwise_net(5)]
    full = predict(volume, SPACING, members, settings)
    cascaded = predict(volume, SPACING, members, settings, localizer=_BrightIsKidney(),
                       cascade=_cascade(margin_mm=3.0))
    inside = np.zeros(volume.shape, dtype=bool)
    for box in cascaded.boxes:
        inside[box] = True
    assert all(inside[kidney].all() for kidney in kidneys)
    assert not all(box[axis].start == 0 for box in cascaded.boxes for axis in range(3))  # a real crop
    np.testing.assert_allclose(cascaded.probabilities[:, inside], full.probabilities[:, inside], atol=1e-6)
    np.testing.assert_array_equal(cascaded.labels[inside], full.labels[inside])


def test_cascade_without_kidneys_falls_back_to_the_whole_volume(caplog):
    volume = _ct(kidneys=())
    with caplog.at_level(logging.WARNING):
        result = predict(volume, SPACING, [_pointwise_net(1)], _settings(), localizer=_BrightIsKidney(),
                         cascade=_cascade())
    assert result.boxes == [] and "found no kidney" in caplog.text
    np.testing.assert_array_equal(result.labels, predict(volume, SPACING, [_pointwise_net(1)], _settings()).labels)
    with pytest.raises(ValueError, match="both"):
        predict(volume, SPACING, [_pointwise_net(1)], _settings(), localizer=_BrightIsKidney())


def test_postprocessing_is_applied():
    big, small = (slice(6, 14), slice(12, 26), slice(4, 12)), (slice(5, 9), slice(14, 20), slice(28, 34))
    volume = _ct(kidneys=(big, small))
    raw = predict(volume, SPACING, [_BrightIsKidney()], _settings(),
                         postprocessing=PostprocessingSettings.disabled()).labels
    assert (raw[big] == 1).all() and (raw[small] == 1).all()
    processed = predict(volume, SPACING, [_BrightIsKidney()], _settings(),
                               postprocessing=PostprocessingSettings(max_kidney_components=1)).labels
    assert (processed[big] == 1).all() and not processed[small].any()


def test_progress_is_monotonic_and_ends_at_one_and_cancel_raises():
    calls: list[tuple[str, float]] = []
    predict(_ct(), SPACING, [_pointwise_net(1), _pointwise_net(2)], _settings(), localizer=_BrightIsKidney(),
            cascade=_cascade(), progress=lambda stage, fraction: calls.append((stage, fraction)))
    fractions = [fraction for _, fraction in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and calls[-1][0] == "done"
    assert {"preprocessing", "member 1/2", "member 2/2", "post-processing"} <= {stage for stage, _ in calls}

    class CancelAfter:
        def __init__(self, checks: int) -> None:
            self.checks = checks

        def is_set(self) -> bool:
            self.checks -= 1
            return self.checks < 0

    with pytest.raises(Cancelled):
        predict(_ct(), SPACING, [_pointwise_net(1)], _settings(), cancel=CancelAfter(3))


def test_boxes_smaller_than_a_tile_grow_to_one_about_their_centre_within_the_volume():
    tile_mm, spacing, shape = (60.0, 80.0, 80.0), (3.0, 2.0, 2.0), (100, 200, 30)  # tile: 20 x 40 x 40 voxels
    grown = grow_to_tile((slice(40, 50), slice(0, 10), slice(5, 25)), tile_mm, spacing, shape)
    assert grown == (slice(35, 55), slice(0, 40), slice(0, 30))  # centred; moved off the edge; whole short axis
    large = (slice(10, 90), slice(50, 150), slice(0, 30))
    assert grow_to_tile(large, tile_mm, spacing, shape) == large
