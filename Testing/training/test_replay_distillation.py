"""Distillation from the parent on replayed patches: the loss is the KL to the parent on replayed samples only, it
keeps the replayed cases' outputs near the parent's, a resumed run keeps the parent, and bad settings are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_preprocessed import write_tiny_preprocessed

from kidneytumorseg.networks import build_network
from kidneytumorseg_training.checkpoint import load_weights
from kidneytumorseg_training.planning import load_plans
from kidneytumorseg_training.replay_distillation import ReplayDistillation, check_weight
from kidneytumorseg_training.sampling import load_case
from kidneytumorseg_training.trainer import network_config, train
from kidneytumorseg_training.training_config import TrainingConfig

NEW, REPLAYED = ["case_00000"], ["case_00001", "case_00002"]


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A tiny preprocessed folder and a briefly trained parent run."""
    root = tmp_path_factory.mktemp("distil")
    folder = write_tiny_preprocessed(root / "pre", cases=3)
    train(_config(folder, epochs=2, learning_rate=0.01), root / "parent")
    return folder, root / "parent" / "checkpoint_latest"


def _config(folder, **changes) -> TrainingConfig:
    settings = dict(preprocessed=str(folder), train_ids=NEW + REPLAYED, epochs=3, iterations_per_epoch=4, seed=3,
                    num_workers=0, threads=1, device="cpu", augmentation={"enabled": False}, optimizer="adam",
                    learning_rate=0.02, precision="fp32")
    settings.update(changes)
    return TrainingConfig(**settings)


def test_the_loss_is_the_kl_to_the_parent_on_replayed_samples_only():
    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 3, 1)
    distillation = ReplayDistillation(model, weight=2.0, case_ids=["r"])
    image = torch.randn(2, 1, 2, 3, 4)
    same = model(image).detach()  # the member's output equals the parent's: no divergence
    assert float(distillation.loss(image, ["r", "n"], same)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 3, 2, 3, 4)
    parent = torch.log_softmax(model(image).detach(), 1)
    expected = 2.0 * (parent.exp() * (parent - torch.log_softmax(other, 1))).sum(1)[0].mean()
    assert float(distillation.loss(image, ["r", "n"], [other, other[:, :, ::2]])) == pytest.approx(float(expected))
    assert float(distillation.loss(image, ["n", "n"], other)) == 0.0  # no replayed sample in the batch
    with torch.no_grad():
        model.weight.add_(1.0)  # the parent is a frozen copy: moving the model does not move it
    assert float(distillation.loss(image, ["r", "n"], [other])) == pytest.approx(float(expected))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "1"])
def test_a_weight_that_is_not_a_number_from_zero_is_refused(bad):
    with pytest.raises(ValueError, match="distillation weight must be a number >= 0"):
        check_weight(bad)


def test_distillation_needs_starting_weights_and_replayed_training_cases(start):
    folder, parent = start
    with pytest.raises(ValueError, match="distils from initial_weights.*not set"):
        _config(folder, distill_weight=1.0, distill_ids=REPLAYED)
    with pytest.raises(ValueError, match="distill_ids must name training cases.*none given"):
        _config(folder, distill_weight=1.0, initial_weights=str(parent))
    with pytest.raises(ValueError, match=r"not training cases: \['case_00009'\]"):
        _config(folder, distill_weight=1.0, initial_weights=str(parent), distill_ids=["case_00009"])


def _probabilities(folder, weights, case_id: str) -> np.ndarray:
    """The network's softmax over a whole (tiny) preprocessed case."""
    config = _config(folder)
    net = build_network(network_config(config, load_plans(folder)))
    net.load_state_dict(weights)
    net.eval()
    image = torch.from_numpy(np.array(load_case(folder, case_id).image(), dtype=np.float32))[None, None]
    with torch.no_grad():
        output = net(image)
    return torch.softmax((output[0] if isinstance(output, (list, tuple)) else output), 1).numpy()


def test_distillation_keeps_the_replayed_cases_near_the_parent(start, tmp_path):
    folder, parent = start
    initial = load_weights(parent)
    plain = train(_config(folder, initial_weights=str(parent)), tmp_path / "plain")
    kept = train(_config(folder, initial_weights=str(parent), distill_weight=50.0, distill_ids=REPLAYED),
                 tmp_path / "kept")
    assert all(np.isfinite(e["train_loss"]) for e in plain.history + kept.history)

    def drift(run: str) -> float:
        tuned = load_weights(tmp_path / run / "checkpoint_latest")
        return float(np.mean([np.abs(_probabilities(folder, tuned, c) - _probabilities(folder, initial, c)).mean()
                              for c in REPLAYED]))

    assert drift("plain") > 0 and drift("kept") < 0.7 * drift("plain"), (drift("kept"), drift("plain"))


def test_a_resumed_run_keeps_the_starting_weights_as_its_parent(start, tmp_path):
    folder, parent = start
    config = _config(folder, initial_weights=str(parent), distill_weight=5.0, distill_ids=REPLAYED)
    train(config, tmp_path / "whole")
    train(config, tmp_path / "split", stop_after=1)
    train(config, tmp_path / "split")  # resumes after epoch 1; the parent must be the start, not epoch 1
    whole, split = load_weights(tmp_path / "whole" / "checkpoint_latest"), load_weights(
        tmp_path / "split" / "checkpoint_latest")
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)
