"""NetworkConfig: JSON round trip, derived properties, and rejection of bad values with the field named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kidneytumorseg.networks import NetworkConfig
from kidneytumorseg.networks.config import NetworkConfigError


def valid_dict(**changes: object) -> dict:
    data = {
        "dimension": 3,
        "in_channels": 1,
        "num_classes": 4,
        "features_per_stage": [8, 16, 32],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
        "encoder_blocks_per_stage": [2, 2, 2],
        "decoder_convs_per_stage": [2, 2],
        "block": "residual",
        "norm": "instance",
        "nonlinearity": "leaky_relu",
        "deep_supervision": True,
        "squeeze_excitation": True,
        "attention_gates": False,
        "bottleneck_dilations": [2, 3, 5],
        "inject_input": True,
        "dropout": 0.1,
    }
    data.update(changes)
    return data


def test_round_trip_through_json_gives_an_equal_config():
    config = NetworkConfig.from_dict(valid_dict())
    again = NetworkConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.to_dict() == valid_dict()


def test_to_dict_is_a_copy_and_tuples_become_lists():
    config = NetworkConfig.from_dict(
        valid_dict(strides=((1, 1, 1), (1, 2, 2), (2, 2, 2)), features_per_stage=(8, 16, 32))
    )
    assert config.strides == [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    assert config.features_per_stage == [8, 16, 32]
    data = config.to_dict()
    data["features_per_stage"].append(64)
    assert config.features_per_stage == [8, 16, 32]


def test_defaults_fill_optional_fields():
    required = {k: v for k, v in valid_dict().items() if k in (
        "dimension", "in_channels", "num_classes", "features_per_stage", "strides", "kernel_sizes",
        "encoder_blocks_per_stage", "decoder_convs_per_stage")}
    config = NetworkConfig.from_dict(required)
    assert (config.block, config.norm, config.nonlinearity) == ("plain", "instance", "leaky_relu")
    assert config.deep_supervision is True
    assert config.bottleneck_dilations is None
    assert config.dropout == 0.0


def test_derived_properties():
    config = NetworkConfig.from_dict(valid_dict())
    assert config.num_stages == 3
    assert config.total_strides == [2, 4, 4]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dimension", 4),
        ("dimension", True),
        ("in_channels", 0),
        ("num_classes", "4"),
        ("features_per_stage", [8]),
        ("features_per_stage", [8, 0, 32]),
        ("strides", [[2, 2, 2], [1, 2, 2], [2, 2, 2]]),
        ("strides", [[1, 1, 1], [1, 2], [2, 2, 2]]),
        ("strides", [[1, 1, 1], [1, 2, 2]]),
        ("kernel_sizes", [[1, 3, 3], [3, 2, 3], [3, 3, 3]]),
        ("encoder_blocks_per_stage", [2, 2]),
        ("encoder_blocks_per_stage", [2, 0, 2]),
        ("decoder_convs_per_stage", [2, 2, 2]),
        ("block", "dense"),
        ("norm", "group"),
        ("nonlinearity", "gelu"),
        ("deep_supervision", 1),
        ("attention_gates", "yes"),
        ("bottleneck_dilations", []),
        ("bottleneck_dilations", [2, 0]),
        ("dropout", 1.0),
        ("dropout", True),
    ],
)
def test_bad_values_are_rejected_naming_the_field(field, value):
    with pytest.raises(NetworkConfigError, match=f"'{field}"):
        NetworkConfig.from_dict(valid_dict(**{field: value}))


def test_config_errors_are_value_errors():
    with pytest.raises(ValueError):
        NetworkConfig.from_dict(valid_dict(block="dense"))


def test_unknown_keys_are_rejected_by_name():
    with pytest.raises(NetworkConfigError, match="unknown field.*'group_norm'"):
        NetworkConfig.from_dict(valid_dict(group_norm=True))


def test_missing_required_keys_are_named():
    data = valid_dict()
    del data["strides"]
    with pytest.raises(NetworkConfigError, match="missing required field.*'strides'"):
        NetworkConfig.from_dict(data)


def test_from_dict_needs_a_mapping():
    with pytest.raises(NetworkConfigError, match="JSON object"):
        NetworkConfig.from_dict([1, 2, 3])  # type: ignore[arg-type]


def test_two_dimensional_config_needs_two_values_per_axis():
    config = NetworkConfig.from_dict(valid_dict(
        dimension=2, in_channels=3, strides=[[1, 1], [2, 2], [2, 2]], kernel_sizes=[[3, 3]] * 3))
    assert config.total_strides == [4, 4]
    with pytest.raises(NetworkConfigError, match="'strides\\[1\\]'"):
        NetworkConfig.from_dict(valid_dict(dimension=2, strides=[[1, 1], [2, 2, 2], [2, 2]]))


def test_numpy_integers_are_accepted_and_stored_as_python_ints():
    features = list(np.array([8, 16, 32]))
    config = NetworkConfig.from_dict(valid_dict(in_channels=np.int64(2), features_per_stage=features))
    assert type(config.in_channels) is int
    assert all(type(f) is int for f in config.features_per_stage)
    json.dumps(config.to_dict())
