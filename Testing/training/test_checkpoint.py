"""Checkpoints: safetensors + JSON, atomic replacement, optimizer state restored, never unpickled."""

from __future__ import annotations

import pickle

import pytest
import torch

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.checkpoint import find_checkpoint, load_checkpoint, load_weights, save_checkpoint


def _model_and_optimizer(kind: str = "sgd"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.InstanceNorm3d(2, affine=True))
    optimizer = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True) if kind == "sgd"
                 else torch.optim.Adam(model.parameters(), lr=1e-3))
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(1, 1, 5, 5, 5)).square().mean().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_round_trip_restores_weights_and_optimizer(tmp_path, kind, monkeypatch):
    model, optimizer = _model_and_optimizer(kind)
    save_checkpoint(tmp_path / "ckpt", model, optimizer, {"epoch": 3, "history": [{"epoch": 1}]})
    fresh = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.InstanceNorm3d(2, affine=True))
    fresh_optimizer = (torch.optim.SGD(fresh.parameters(), lr=0.5, momentum=0.9, nesterov=True) if kind == "sgd"
                       else torch.optim.Adam(fresh.parameters(), lr=0.5))

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a checkpoint must never be unpickled")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    state = load_checkpoint(tmp_path / "ckpt", fresh, fresh_optimizer)
    assert state == {"epoch": 3, "history": [{"epoch": 1}]}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    original, restored = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    assert original.keys() == restored.keys()
    for index in original:
        for key, value in original[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored[index][key]))


def test_replacing_keeps_one_complete_checkpoint(tmp_path):
    model, optimizer = _model_and_optimizer()
    save_checkpoint(tmp_path / "ckpt", model, optimizer, {"epoch": 1})
    save_checkpoint(tmp_path / "ckpt", model, optimizer, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    # A kill between the two renames leaves only the previous checkpoint under its ".old" name.
    (tmp_path / "ckpt").rename(tmp_path / ".ckpt.old")
    assert find_checkpoint(tmp_path / "ckpt") == tmp_path / ".ckpt.old"
    assert load_checkpoint(tmp_path / "ckpt", model)["epoch"] == 2
    assert set(load_weights(tmp_path / "ckpt")) == set(model.state_dict())


def test_missing_or_mismatched_checkpoint_is_a_clear_error(tmp_path):
    model, optimizer = _model_and_optimizer()
    with pytest.raises(KidneyTumorSegError, match="No complete checkpoint"):
        load_checkpoint(tmp_path / "nothing", model)
    save_checkpoint(tmp_path / "ckpt", model, optimizer, {"epoch": 1})
    other = torch.nn.Conv3d(1, 4, 3)
    with pytest.raises(KidneyTumorSegError, match="does not fit this network"):
        load_checkpoint(tmp_path / "ckpt", other)


def _unet(classes: int, features: tuple[int, ...] = (4, 8)) -> torch.nn.Module:
    from kidneytumorseg.networks import build_network

    stages = len(features)
    return build_network({"dimension": 3, "in_channels": 1, "num_classes": classes,
                          "features_per_stage": list(features), "strides": [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
                          "kernel_sizes": [[3, 3, 3]] * stages, "encoder_blocks_per_stage": [1] * stages,
                          "decoder_convs_per_stage": [1] * (stages - 1), "deep_supervision": True})


def test_a_partial_warm_start_loads_the_body_and_leaves_other_heads_initialised(tmp_path):
    from safetensors.torch import save_file

    from kidneytumorseg_training.checkpoint import load_initial_weights

    torch.manual_seed(0)
    stage_one = _unet(4)
    save_file(stage_one.state_dict(), str(tmp_path / "stage1.safetensors"))
    torch.manual_seed(1)
    refiner = _unet(3)
    heads_before = {n: t.clone() for n, t in refiner.state_dict().items() if t.shape != stage_one.state_dict()[n].shape}
    assert heads_before, "the 3-class heads must differ in shape from the 4-class ones"

    left = load_initial_weights(refiner, tmp_path / "stage1.safetensors", partial=True)

    assert set(left) == set(heads_before)
    for name, tensor in refiner.state_dict().items():
        expected = heads_before[name] if name in heads_before else stage_one.state_dict()[name]
        assert torch.equal(tensor, expected), name
    with pytest.raises(RuntimeError):  # a strict load refuses the other heads
        load_initial_weights(_unet(3), tmp_path / "stage1.safetensors")
    with pytest.raises(KidneyTumorSegError, match="another architecture"):
        load_initial_weights(_unet(3, (6, 12, 24)), tmp_path / "stage1.safetensors", partial=True)
