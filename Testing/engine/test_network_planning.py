"""plan_network: nnU-Net-style strides, kernels and features from patch size and spacing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kidneytumorseg.networks import NetworkConfig, plan_network

MIN_FEATURE_MAP = 4


def bottleneck_size(config: NetworkConfig, patch_size: list[int]) -> list[int]:
    return [size // total for size, total in zip(patch_size, config.total_strides, strict=True)]


def assert_no_further_stride_possible(config: NetworkConfig, patch_size: list[int]) -> None:
    """The finest axis still large enough would always qualify, so planning stops only when none is."""
    bottom = bottleneck_size(config, patch_size)
    assert all(size < 2 * MIN_FEATURE_MAP for size in bottom), bottom


def test_anisotropic_kits_spacing_keeps_the_slice_axis_until_in_plane_catches_up():
    config = plan_network([32, 128, 128], [3.0, 0.8, 0.8])
    assert config.strides[0] == [1, 1, 1]
    assert config.strides[1] == [1, 2, 2]  # 3.0 > 2 x 0.8: no stride on the slice axis
    assert config.kernel_sizes[0] == [1, 3, 3]  # and no context along it at full resolution
    assert config.kernel_sizes[1] == [3, 3, 3]  # 3.0 <= 2 x 1.6
    assert config.strides[2] == [2, 2, 2]
    assert all(size % total == 0 for size, total in zip([32, 128, 128], config.total_strides, strict=True))


def test_very_anisotropic_spacing_delays_the_slice_axis_for_several_stages():
    config = plan_network([16, 256, 256], [5.0, 0.6, 0.6], base_features=8)
    # In-plane spacing 0.6 -> 1.2 -> 2.4 -> 4.8: the slice axis (5.0) joins only when 5.0 <= 2 x 2.4.
    assert config.strides[1:5] == [[1, 2, 2], [1, 2, 2], [1, 2, 2], [2, 2, 2]]
    assert config.kernel_sizes[:4] == [[1, 3, 3], [1, 3, 3], [1, 3, 3], [3, 3, 3]]


def test_isensee_2019_patch_gives_six_stages_with_features_capped_at_320():
    patch, spacing = [80, 160, 160], [3.22, 1.62, 1.62]
    config = plan_network(patch, spacing, base_features=32, max_features=320)
    assert config.num_stages == 6
    assert config.features_per_stage == [32, 64, 128, 256, 320, 320]
    assert config.kernel_sizes == [[3, 3, 3]] * 6
    assert bottleneck_size(config, patch) == [5, 5, 5]
    assert all(size >= MIN_FEATURE_MAP for size in bottleneck_size(config, patch))
    assert_no_further_stride_possible(config, patch)


@pytest.mark.parametrize(
    ("patch", "spacing"),
    [([32, 128, 128], [3.0, 0.8, 0.8]), ([64, 64, 64], [1.0, 1.0, 1.0]), ([24, 96, 80], [2.5, 0.7, 0.9])],
)
def test_no_axis_is_downsampled_below_the_minimum_feature_map(patch, spacing):
    config = plan_network(patch, spacing)
    bottom = bottleneck_size(config, patch)
    for axis, total in enumerate(config.total_strides):
        if total > 1:
            assert bottom[axis] >= MIN_FEATURE_MAP
    assert_no_further_stride_possible(config, patch)
    # Strides only land on axes whose kernel is 3 at that stage.
    for stride, kernel in zip(config.strides, config.kernel_sizes, strict=True):
        assert all(k == 3 for s, k in zip(stride, kernel, strict=True) if s == 2)


def test_patch_not_divisible_raises_and_suggests_valid_sizes():
    with pytest.raises(ValueError, match=r"not divisible.*\[4, 32, 32\].*\[28, 128, 128\].*\[32, 128, 128\]"):
        plan_network([30, 128, 128], [3.0, 0.8, 0.8])


def test_suggested_patch_sizes_plan_without_error():
    with pytest.raises(ValueError) as error:
        plan_network([50, 100, 100], [1.0, 1.0, 1.0])
    message = str(error.value)
    suggestions = message.split("such as ")[1].rstrip(".").split(" or ")
    assert suggestions
    for suggestion in suggestions:
        patch = [int(v) for v in suggestion.strip("[]").split(",")]
        plan_network(patch, [1.0, 1.0, 1.0])


def test_patch_too_small_to_downsample_is_rejected():
    with pytest.raises(ValueError, match="too small"):
        plan_network([4, 6, 6], [1.0, 1.0, 1.0])


def test_features_double_from_base():
    config = plan_network([16, 32, 32], [1.0, 1.0, 1.0], base_features=4, max_features=12)
    assert config.features_per_stage == [4, 8, 12, 12]


def test_block_defaults_follow_isensee_2019():
    plain = plan_network([32, 128, 128], [3.0, 0.8, 0.8])
    assert plain.encoder_blocks_per_stage == [2] * plain.num_stages
    assert plain.decoder_convs_per_stage == [2] * (plain.num_stages - 1)
    residual = plan_network([32, 128, 128], [3.0, 0.8, 0.8], block="residual")
    assert residual.encoder_blocks_per_stage == [1, 3, 4, 6, 6, 6]
    assert residual.decoder_convs_per_stage == [1] * 5
    preact = plan_network([32, 64, 64], [1.0, 1.0, 1.0], block="preact")
    assert preact.encoder_blocks_per_stage == [1, 3, 4, 6, 6]
    assert preact.decoder_convs_per_stage == [1] * 4


def test_options_pass_through_to_the_config():
    config = plan_network([16, 32, 32], [3.0, 0.8, 0.8], num_classes=3, in_channels=2, attention_gates=True,
                          bottleneck_dilations=[2, 3, 5], inject_input=True, dropout=0.2, deep_supervision=False,
                          decoder_convs_per_stage=[1, 1, 1])
    assert (config.num_classes, config.in_channels) == (3, 2)
    assert config.attention_gates and config.inject_input and not config.deep_supervision
    assert config.bottleneck_dilations == [2, 3, 5]
    assert config.decoder_convs_per_stage == [1, 1, 1]


def test_unknown_or_planned_options_are_rejected():
    with pytest.raises(TypeError, match="unknown option.*'strides'"):
        plan_network([16, 32, 32], [1.0, 1.0, 1.0], strides=[[1, 1, 1]])
    with pytest.raises(TypeError, match="'use_magic'"):
        plan_network([16, 32, 32], [1.0, 1.0, 1.0], use_magic=True)


def test_two_dimensional_planning_on_slices():
    config = plan_network([128, 96], [0.8, 0.8], dimension=2, in_channels=3)
    assert config.dimension == 2
    assert all(len(s) == 2 for s in config.strides)
    # 96 stops at 6 voxels after four strides; 128 goes on to 4.
    assert config.total_strides == [32, 16]
    assert config.strides[-1] == [2, 1]
    assert_no_further_stride_possible(config, [128, 96])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": [32, 32], "spacing": [1.0, 1.0, 1.0]}, "patch_size must be 3"),
        ({"patch_size": [32, 32, 32], "spacing": [1.0, 0.0, 1.0]}, "spacing must be"),
        ({"patch_size": [32, 32, 32], "spacing": [1.0, 1.0, 1.0], "base_features": 0}, "base_features"),
        ({"patch_size": [32, 32, 32], "spacing": [1.0, 1.0, 1.0], "max_features": 16}, "max_features"),
        ({"patch_size": [32, 32, 32], "spacing": [1.0, 1.0, 1.0], "dimension": 1}, "dimension"),
        ({"patch_size": [32, 32, 32], "spacing": [1.0, 1.0, 1.0], "block": "dense"}, "'block'"),
    ],
)
def test_bad_arguments_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_network(**kwargs)


def test_numpy_arguments_give_a_json_safe_config():
    config = plan_network(np.array([32, 128, 128]), np.array([3.0, 0.8, 0.8]), base_features=np.int64(8))
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()
    assert config == plan_network([32, 128, 128], [3.0, 0.8, 0.8], base_features=8)
