"""Weight averaging of a fine-tuned network with its parent: the arithmetic, the refusals, the written package."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import write_shifted_copy

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_package import ModelPackage, load_member_weights, verify
from kidneytumorseg_training.weight_averaging import average_weights, write_averaged_package

PACKAGE = Path(__file__).resolve().parents[2] / "KidneyTumorSeg" / "Resources" / "Models" / "kits-demo" / "1.0.0"


def test_floating_tensors_are_interpolated_and_counters_come_from_the_tuned_network():
    parent = {"w": torch.tensor([0.0, 2.0]), "half": torch.tensor([1.0], dtype=torch.bfloat16),
              "count": torch.tensor(3)}
    tuned = {"w": torch.tensor([4.0, 6.0]), "half": torch.tensor([3.0], dtype=torch.bfloat16),
             "count": torch.tensor(7)}
    mixed = average_weights(parent, tuned, 0.25)
    assert torch.equal(mixed["w"], torch.tensor([1.0, 3.0]))
    assert mixed["half"].dtype == torch.bfloat16 and mixed["half"].item() == 1.5
    assert mixed["count"].item() == 7
    assert torch.equal(average_weights(parent, tuned, 0)["w"], parent["w"])
    assert torch.equal(average_weights(parent, tuned, 1)["w"], tuned["w"])
    assert parent["w"].tolist() == [0.0, 2.0] and tuned["w"].tolist() == [4.0, 6.0]  # inputs untouched


def test_networks_that_are_not_parent_and_copy_or_fractions_outside_0_1_are_refused():
    parent = {"w": torch.zeros(2)}
    with pytest.raises(KidneyTumorSegError, match="only in the fine-tuned one \\['v'\\]"):
        average_weights(parent, {"w": torch.zeros(2), "v": torch.zeros(1)}, 0.5)
    with pytest.raises(KidneyTumorSegError, match="shape \\(2,\\) in the parent and \\(3,\\)"):
        average_weights(parent, {"w": torch.zeros(3)}, 0.5)
    for fraction in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(KidneyTumorSegError, match="from 0 .* to 1"):
            average_weights(parent, {"w": torch.ones(2)}, fraction)


def test_averaged_package_mixes_the_segmenters_and_keeps_the_localizer(tmp_path):
    parent = ModelPackage.load(PACKAGE)
    tuned = ModelPackage.load(write_shifted_copy(parent, tmp_path / "tuned", "1.0.1", 1.0))
    folder = write_averaged_package(parent, tuned, 0.5, tmp_path / "avg", version="1.0.2")
    averaged = ModelPackage.load(folder)
    verify(averaged)
    assert averaged.version == "1.0.2"
    assert averaged.provenance["weight_averaging"] == {"parent": "kits-demo@1.0.0", "fraction_fine_tuned": 0.5}
    for member in parent.segmenters:
        old, new = load_member_weights(parent, member.name), load_member_weights(averaged, member.name)
        for name, tensor in old.items():
            if tensor.is_floating_point():
                torch.testing.assert_close(new[name], tensor + 0.5)
    assert averaged.localizer.sha256 == parent.localizer.sha256
