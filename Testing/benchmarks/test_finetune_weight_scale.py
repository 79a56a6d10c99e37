"""benchmarks/finetune_weight_scale.py: the gradient's scale at the parent and the move of fine-tuned weights."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import finetune_weight_scale
import pytest
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))  # the training tests' tiny data
from tiny_preprocessed import write_tiny_preprocessed  # noqa: E402

from kidneytumorseg_training.trainer import train  # noqa: E402
from kidneytumorseg_training.training_config import TrainingConfig  # noqa: E402


def test_gradients_at_the_parent_and_the_move_of_tuned_weights(tmp_path, monkeypatch, capsys):
    folder = write_tiny_preprocessed(tmp_path / "pre", cases=2)
    config = TrainingConfig(preprocessed=str(folder), train_ids=["case_00000", "case_00001"], epochs=1,
                            iterations_per_epoch=2, seed=0, num_workers=0, threads=1, device="cpu",
                            augmentation={"enabled": False}, optimizer="adam", learning_rate=1e-2)
    train(config, tmp_path / "run")
    parent = tmp_path / "run" / "checkpoint_latest" / "model.safetensors"
    weights = load_file(str(parent))
    save_file({k: v + 0.5 for k, v in weights.items()}, str(tmp_path / "moved.safetensors"))

    rows = finetune_weight_scale.gradient_scale(tmp_path / "run", parent, batches=3)
    assert len(rows) == 3 and all(math.isfinite(loss) and rms > 0 and 0 <= median <= 10 * rms
                                  for loss, rms, median in rows)
    count = sum(v.numel() for v in weights.values())
    assert finetune_weight_scale.weight_move(parent, parent) == (0.0, 0.0)
    distance, rms = finetune_weight_scale.weight_move(parent, tmp_path / "moved.safetensors")
    assert rms == pytest.approx(0.5, rel=1e-4) and distance == pytest.approx(math.sqrt(0.25 * count), rel=1e-4)

    monkeypatch.setattr(sys, "argv", ["finetune_weight_scale.py", "--run", str(tmp_path / "run"), "--parent",
                                      str(parent), "--tuned", str(tmp_path / "moved.safetensors"), "--batches", "2"])
    finetune_weight_scale.main()
    out = capsys.readouterr().out
    assert "| median |" in out and "| 5.00e-01 |" in out
