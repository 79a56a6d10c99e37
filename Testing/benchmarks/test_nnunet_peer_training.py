"""The nnU-Net peer's orchestration: environment, step order, resuming, --force, scoring (fake worker); and, opt-in
(-m slow, needs the peers extra), nnU-Net v2 itself end to end on a tiny dataset."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from fake_runs import FakeRunner
from nnunet_peer_training import PeerSettings, run_peer

TRAIN, TEST = ("case_00000", "case_00001", "case_00002"), ("case_00003", "case_00004")


def settings(dataset: Path, work: Path, **changes) -> PeerSettings:
    values = {"dataset": dataset, "train_ids": TRAIN, "test_ids": TEST, "work": work, "epochs": 3,
              "iterations": 10, "folds": ("0", "1"), "da_processes": 0, "threads": 2, **changes}
    return PeerSettings(**values)


def test_steps_environment_and_result(kits_dataset, tmp_path):
    runner = FakeRunner(kits_dataset, tmp_path)
    work = tmp_path / "work"
    result = run_peer(settings(kits_dataset, work, mirroring=False), runner)
    steps = [command[command.index("equal_budget.nnunet_worker") + 1] for command in runner.commands]
    assert steps == ["plan", "train", "train", "predict"]
    env = runner.environments[0]
    assert env["nnUNet_raw"] == str(work / "nnUNet_raw")
    assert env["nnUNet_results"] == str(work / "nnUNet_results")
    assert (env["nnUNet_n_proc_DA"], env["nnUNet_def_n_proc"], env["OMP_NUM_THREADS"]) == ("0", "1", "2")
    assert str(Path(__file__).resolve().parents[2] / "benchmarks") in env["PYTHONPATH"].split(":")
    train = runner.commands[1]
    assert train[train.index("--val-iterations") + 1] == "2"  # nnU-Net's 50 per 250
    assert "--no-mirroring" in runner.commands[3]
    assert all(command[command.index("--device") + 1] == "cpu" for command in runner.commands[1:])
    assert result["name"] == "nnU-Net v2" and result["kind"] == "peer"
    assert result["schedule"] == {"epochs": 3, "iterations_per_epoch": 10}
    assert result["metrics"]["mean_dice"] == pytest.approx(1.0)
    assert result["inference_seconds"] == {"case_00003": 2.0, "case_00004": 2.0}
    assert result["parameters"] == 2000  # two folds
    assert result["details"]["plan_3d_fullres"]["patch_size"] == [8, 24, 24]
    assert json.loads((work / "result.json").read_text())["metrics"] == result["metrics"]
    assert (work / "nnUNet_raw" / "Dataset501_KiTSSynthetic" / "imagesTs" / "case_00004_0000.nii.gz").is_file()


def test_resumes_and_force_keeps_the_preprocessing(kits_dataset, tmp_path):
    runner = FakeRunner(kits_dataset, tmp_path)
    first = run_peer(settings(kits_dataset, tmp_path / "work"), runner)
    assert run_peer(settings(kits_dataset, tmp_path / "work"), runner) == first
    assert len(runner.commands) == 4
    (tmp_path / "work" / "result.json").unlink()
    run_peer(settings(kits_dataset, tmp_path / "work"), runner)  # trained folds kept: only predicts again
    assert runner.count("predict") == 2 and runner.count("train") == 2
    run_peer(settings(kits_dataset, tmp_path / "work"), runner, force=True)
    assert runner.count("plan") == 1 and runner.count("train") == 4 and runner.count("predict") == 3


def test_other_cases_need_force(kits_dataset, tmp_path):
    runner = FakeRunner(kits_dataset, tmp_path)
    run_peer(settings(kits_dataset, tmp_path / "work"), runner)
    (tmp_path / "work" / "result.json").unlink()
    changed = settings(kits_dataset, tmp_path / "work", train_ids=TRAIN[:2])
    with pytest.raises(RuntimeError, match="--force"):
        run_peer(changed, runner)
    run_peer(changed, runner, force=True)
    assert runner.count("plan") == 2
    labels = tmp_path / "work" / "nnUNet_raw" / "Dataset501_KiTSSynthetic" / "labelsTr"
    assert sorted(p.name for p in labels.iterdir()) == ["case_00000.nii.gz", "case_00001.nii.gz"]


def test_validation_iterations_follow_nnunet_unless_given(tmp_path):
    assert settings(tmp_path, tmp_path, iterations=250).validation_iterations == 50
    assert settings(tmp_path, tmp_path, iterations=2).validation_iterations == 1
    assert settings(tmp_path, tmp_path, val_iterations=7).validation_iterations == 7


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None, reason="needs the peers extra (nnunetv2)")
def test_nnunet_itself_end_to_end(kits_dataset, tmp_path):
    """nnU-Net's own planning, preprocessing, trainer (1 epoch x 2 iterations) and predictor on 8x24x24 cases."""
    work = tmp_path / "work"
    result = run_peer(PeerSettings(dataset=kits_dataset, train_ids=TRAIN + ("case_00003",), test_ids=("case_00004",),
                                   work=work, epochs=1, iterations=2, folds=("all",), da_processes=0, threads=1,
                                   mirroring=False))
    log = (work / "logs" / "train_fold_all.log").read_text()
    assert "Epoch 0" in log and "Epoch 1" not in log
    assert "torchvision" not in log
    assert 0.0 <= result["metrics"]["mean_dice"] <= 1.0
    assert result["parameters"] > 0 and result["inference_seconds"]["case_00004"] > 0
    assert result["details"]["folds"][0]["iterations_per_epoch"] == 2
