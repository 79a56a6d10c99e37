"""The peers' shared parameters and variants: validation, keys (the measurement protocol's task names), the
settings column, and the mirrored copies."""

from __future__ import annotations

import pytest
from peer_comparison.variants import (
    AGREEMENT_VARIANTS,
    AS_SHIPPED,
    EXTRA_VARIANTS,
    OURS,
    OURS_EAGER,
    OURS_HALF,
    TASKS,
    SlidingWindowConfig,
    Variant,
    flip_sets,
)


def test_keys_round_trip_and_are_not_tasks():
    for variant in (OURS, OURS_HALF, *AS_SHIPPED, *AGREEMENT_VARIANTS, *EXTRA_VARIANTS):
        assert Variant.from_key(variant.key) == variant
        assert variant.key not in TASKS
    assert OURS.key == "ours-softmax-own-fp32"
    assert [v.key for v in AS_SHIPPED] == ["nnunet-logits-own-fp16", "monai-logits-own-fp32"]
    with pytest.raises(ValueError, match="peer-accumulate-weights-precision"):
        Variant.from_key("nnunet-logits-own")


def test_monai_and_ours_are_float32_whatever_is_asked():
    assert Variant("monai", precision="fp16").precision == "fp32"
    assert Variant("monai", precision="fp16") == Variant("monai")
    assert Variant("nnunet").precision == "fp16"


@pytest.mark.parametrize("arguments, message", [
    (("ours",), "Ours averages softmax"),
    (("ours", "softmax", "shared"), "Ours averages softmax"),
    (("nnunet", "softmax", "own", "half"), "precision 'half'"),
    (("monai", "softmax", "own", "eager"), "precision 'eager'"),
    (("sam",), "peer must be one of"),
    (("monai", "probabilities"), "accumulate must be one of"),
    (("monai", "logits", "theirs"), "weights must be one of"),
])
def test_invalid_variants(arguments, message):
    with pytest.raises(ValueError, match=message):
        Variant(*arguments)


def test_as_shipped_and_descriptions():
    assert [v.as_shipped for v in AS_SHIPPED] == [True, True]
    assert not any(v.as_shipped for v in (OURS, OURS_EAGER, OURS_HALF, *AGREEMENT_VARIANTS, *EXTRA_VARIANTS))
    assert Variant("nnunet").describe() == "as shipped: logits averaged, own Gaussian, fp16"
    assert Variant("monai").describe() == "as shipped: logits averaged, own Gaussian, fp32"
    assert AGREEMENT_VARIANTS[1].describe() == "softmax averaged, our Gaussian, fp32"
    assert EXTRA_VARIANTS[0].describe() == "softmax averaged, own Gaussian, fp16"
    assert OURS.describe() == "softmax averaged, own Gaussian, fp32 (channels-last oneDNN fast path)"
    assert OURS_EAGER.describe() == "softmax averaged, own Gaussian, fp32, eager PyTorch network (CPU fast path off)"
    assert OURS_HALF.describe() == "softmax averaged, own Gaussian, network in bfloat16 (--precision half)"


@pytest.mark.parametrize("arguments, message", [
    (((16, 32),), "three positive integers"),
    (((16, 0, 32),), "three positive integers"),
    (((16, 32, 32), 1.0), r"overlap must be in \[0, 1\)"),
    (((16, 32, 32), -0.1), r"overlap must be in \[0, 1\)"),
    (((16, 32, 32), 0.5, (3,)), "spatial axes"),
])
def test_invalid_configs(arguments, message):
    with pytest.raises(ValueError, match=message):
        SlidingWindowConfig(*arguments)


def test_flip_sets_unmirrored_first_each_combination_once():
    assert flip_sets(()) == [()]
    assert flip_sets((2, 0, 2)) == [(), (0,), (2,), (0, 2)]
    assert flip_sets((0, 1, 2)) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
