"""L2-SP fine-tuning: the pull toward the starting weights keeps a run near them, survives a resume, and is
refused without starting weights."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from tiny_preprocessed import write_tiny_preprocessed

from kidneytumorseg_training.trainer import train
from kidneytumorseg_training.training_config import TrainingConfig
from kidneytumorseg_training.weight_anchor import WeightAnchor, check_strength

TRAIN_IDS = ["case_00000", "case_00001", "case_00002"]


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A tiny preprocessed folder and a briefly trained run whose weights fine-tuning starts from."""
    root = tmp_path_factory.mktemp("anchor")
    folder = write_tiny_preprocessed(root / "pre", cases=3)
    train(_config(folder, epochs=1), root / "parent")
    return folder, root / "parent" / "checkpoint_latest"


def _config(folder, **changes) -> TrainingConfig:
    settings = dict(preprocessed=str(folder), train_ids=TRAIN_IDS, epochs=3, iterations_per_epoch=4, seed=3,
                    num_workers=0, threads=1, device="cpu", augmentation={"enabled": False}, optimizer="adam",
                    learning_rate=0.01)
    settings.update(changes)
    return TrainingConfig(**settings)


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in a))


def test_pull_adds_the_penalty_gradient_and_nothing_at_zero():
    model = torch.nn.Linear(3, 2)
    anchor, off = WeightAnchor(model, 0.5), WeightAnchor(model, 0.0)
    with torch.no_grad():
        model.weight.add_(1.0)  # moved 1 from the start; the bias did not move
    model.weight.grad, model.bias.grad = torch.zeros_like(model.weight), torch.full_like(model.bias, 2.0)
    off.pull(model)
    assert torch.equal(model.weight.grad, torch.zeros_like(model.weight))
    anchor.pull(model)
    assert torch.allclose(model.weight.grad, torch.full_like(model.weight, 0.5))  # 0.5 * (w - w0)
    assert torch.equal(model.bias.grad, torch.full_like(model.bias, 2.0))
    assert anchor.distance(model) == pytest.approx(math.sqrt(model.weight.numel()))


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.1"])
def test_a_strength_that_is_not_a_number_from_zero_is_refused(bad):
    with pytest.raises(ValueError, match=r"anchor strength \(L2-SP\) must be a number >= 0"):
        check_strength(bad)


def test_anchored_fine_tune_stays_nearer_the_start(start, tmp_path):
    folder, parent = start
    initial = load_file(str(parent / "model.safetensors"))
    free = train(_config(folder, initial_weights=str(parent)), tmp_path / "free")
    anchored = train(_config(folder, initial_weights=str(parent), anchor_strength=10.0), tmp_path / "anchored")
    moved = _distance(load_file(str(tmp_path / "free" / "checkpoint_latest" / "model.safetensors")), initial)
    held = _distance(load_file(str(tmp_path / "anchored" / "checkpoint_latest" / "model.safetensors")), initial)
    assert moved > 0 and held < 0.7 * moved, (held, moved)
    assert math.isfinite(anchored.history[-1]["train_loss"]) and math.isfinite(free.history[-1]["train_loss"])


def test_a_resumed_run_keeps_the_starting_weights_as_its_anchor(start, tmp_path):
    folder, parent = start
    config = _config(folder, initial_weights=str(parent), anchor_strength=1.0)
    train(config, tmp_path / "whole")
    train(config, tmp_path / "split", stop_after=1)
    train(config, tmp_path / "split")  # resumes after epoch 1; the anchor must be the parent, not epoch 1
    whole = load_file(str(tmp_path / "whole" / "checkpoint_latest" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "checkpoint_latest" / "model.safetensors"))
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)


def test_an_anchor_without_starting_weights_is_refused(start):
    with pytest.raises(ValueError, match="anchor_strength pulls the weights toward initial_weights.*not set"):
        _config(start[0], anchor_strength=0.1)
