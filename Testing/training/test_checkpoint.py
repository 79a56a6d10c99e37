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
