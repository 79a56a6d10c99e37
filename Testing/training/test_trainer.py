"""The training loop on a tiny dataset: it learns, it resumes after a kill, it repeats itself, DDP trains one
model across two CPU processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_preprocessed import write_tiny_preprocessed

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.checkpoint import find_checkpoint
from kidneytumorseg_training.cli.main import main as train_cli
from kidneytumorseg_training.trainer import train
from kidneytumorseg_training.training_config import TrainingConfig

TRAIN_IDS = ["case_00000", "case_00001", "case_00002"]
VAL_IDS = ["case_00003"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_preprocessed(tmp_path_factory.mktemp("pre"), cases=4)


def _config(folder: Path, **changes) -> TrainingConfig:
    settings = dict(preprocessed=str(folder), train_ids=TRAIN_IDS, val_ids=VAL_IDS, epochs=2,
                    iterations_per_epoch=4, val_iterations=2, seed=1, num_workers=0, threads=1, device="cpu",
                    augmentation={"enabled": False})
    settings.update(changes)
    return TrainingConfig(**settings)


def _weights(run_dir: Path, which: str = "checkpoint_latest") -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / which / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learns_the_tiny_task_far_beyond_chance(folder, tmp_path):
    config = _config(folder, epochs=10, iterations_per_epoch=10, val_iterations=4, optimizer="adam",
                     learning_rate=0.01, foreground_fraction=0.5, threads=2)
    result = train(config, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == list(range(1, 11)) == [e["epoch"] for e in result.history]
    last = history[-1]
    assert last["val_dice"]["kidney"] > 0.8, history
    assert last["val_dice"]["tumor"] > 0.5, history
    assert last["train_loss"] < history[0]["train_loss"]
    assert 0.0 <= last["data_wait_fraction"] <= 1.0 and last["patches_per_second"] > 0
    assert find_checkpoint(tmp_path / "run" / "checkpoint_best") is not None
    saved = TrainingConfig.load(tmp_path / "run")
    assert saved == config


def test_same_seed_same_weights_and_other_seed_differs(folder, tmp_path):
    train(_config(folder), tmp_path / "a")
    train(_config(folder), tmp_path / "b")
    train(_config(folder, seed=2), tmp_path / "c")
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_resume_continues_exactly(folder, tmp_path):
    train(_config(folder, epochs=3), tmp_path / "whole")
    train(_config(folder, epochs=3), tmp_path / "split", stop_after=1)
    state = json.loads((tmp_path / "split" / "checkpoint_latest" / "state.json").read_text())
    assert state["state"]["epoch"] == 1
    train(_config(folder, epochs=3), tmp_path / "split")
    history = json.loads((tmp_path / "split" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert _same(_weights(tmp_path / "whole"), _weights(tmp_path / "split"))


def test_a_different_config_in_the_same_folder_is_refused(folder, tmp_path):
    train(_config(folder, epochs=1), tmp_path / "run")
    with pytest.raises(KidneyTumorSegError, match="other settings.*learning_rate"):
        train(_config(folder, epochs=1, learning_rate=0.5), tmp_path / "run")


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "kidneytumorseg_training.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_killed_run_loses_at_most_one_epoch(folder, tmp_path):
    run_dir = tmp_path / "run"
    args = ["train", str(folder), "-o", str(run_dir), "--train-cases", ",".join(TRAIN_IDS), "--val-cases",
            VAL_IDS[0], "--epochs", "30", "--iterations", "3", "--val-iterations", "1", "--workers", "1",
            "--device", "cpu", "--threads", "1", "--no-augmentation"]
    process = _cli(*args)
    deadline = time.monotonic() + 120
    history = run_dir / "history.json"
    while time.monotonic() < deadline and process.poll() is None:
        if history.is_file() and len(json.loads(history.read_text())) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[0]
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(json.loads(history.read_text()))
    state = json.loads((find_checkpoint(run_dir / "checkpoint_latest") / "state.json").read_text())["state"]
    assert state["epoch"] >= done - 1 >= 1  # the kill cost at most the epoch in progress
    resumed = _cli("train", "--resume", str(run_dir), "--epochs", str(state["epoch"] + 2))
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert f"Resuming {run_dir} after epoch {state['epoch']}" in output
    history_after = json.loads(history.read_text())
    assert [entry["epoch"] for entry in history_after] == list(range(1, state["epoch"] + 3))
    assert (run_dir / "report.png").is_file()


def test_two_cpu_processes_train_one_model(folder, tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(29500 + os.getpid() % 1000), "-m", "kidneytumorseg_training.cli.main", "train", str(folder),
               "-o", str(run_dir), "--train-cases", ",".join(TRAIN_IDS), "--val-cases", VAL_IDS[0],
               "--epochs", "2", "--iterations", "3", "--val-iterations", "1", "--workers", "0",
               "--device", "cpu", "--threads", "1", "--no-augmentation"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "DDP rank 1/2" in finished.stderr and "DDP rank 0/2" in finished.stderr
    assert "DDP: the 2 ranks hold identical parameters" in finished.stderr
    run = json.loads((run_dir / "run.json").read_text())
    assert run["world_size"] == 2
    history = json.loads((run_dir / "history.json").read_text())
    # Two processes with a batch of 2 each: 4 patches per step.
    assert len(history) == 2
    single = tmp_path / "single"
    train(_config(folder, epochs=2, iterations_per_epoch=3, val_iterations=1, seed=0), single)
    # The DDP model differs from a one-process run (it saw rank 1's patches too) but is one model: rank 0
    # saved it, and it is a trained network (not the initial weights).
    assert not _same(_weights(run_dir), _weights(single))


def test_cli_replans_the_network_with_another_block_and_width(folder, tmp_path):
    run_dir = tmp_path / "residual"
    status = train_cli(["train", str(folder), "-o", str(run_dir), "--train-cases", ",".join(TRAIN_IDS),
                        "--epochs", "1", "--iterations", "1", "--workers", "0", "--device", "cpu", "--threads", "1",
                        "--no-augmentation", "--block", "residual", "--base-features", "6"])
    assert status == 0
    network = json.loads((run_dir / "run.json").read_text())["network"]
    assert network["block"] == "residual"
    assert network["features_per_stage"][0] == 6


def test_cli_batch_dice_and_cyst_oversampling_reach_the_run(folder, tmp_path):
    run_dir = tmp_path / "cysts"
    status = train_cli(["train", str(folder), "-o", str(run_dir), "--train-cases", ",".join(TRAIN_IDS),
                        "--epochs", "1", "--iterations", "1", "--workers", "0", "--device", "cpu", "--threads", "1",
                        "--no-augmentation", "--batch-dice", "--hard-case-class", "3", "--hard-case-fraction", "0.5"])
    assert status == 0
    config = TrainingConfig.load(run_dir)
    assert config.loss_options == {"batch_dice": True}
    assert (config.hard_case_class, config.hard_case_fraction) == (3, 0.5)
    tuned = tmp_path / "tuned"
    assert train_cli(["train", str(folder), "-o", str(tuned), "--train-cases", ",".join(TRAIN_IDS), "--epochs", "1",
                      "--iterations", "1", "--workers", "0", "--device", "cpu", "--threads", "1",
                      "--initial-weights", str(run_dir / "checkpoint_latest"), "--anchor-strength", "0.05"]) == 0
    assert TrainingConfig.load(tuned).anchor_strength == 0.05


@pytest.mark.parametrize("extra, message", [
    (["--batch-dice", "--loss", "exp_log"], "dice_ce only"),
    (["--hard-case-fraction", "0.3"], "needs --hard-case-class"),
    (["--anchor-strength", "0.1"], "--anchor-strength pulls the weights toward --initial-weights"),
])
def test_cli_refuses_sampling_and_loss_options_that_do_not_go_together(folder, tmp_path, capsys, extra, message):
    status = train_cli(["train", str(folder), "-o", str(tmp_path / "run"), "--train-cases", ",".join(TRAIN_IDS),
                        *extra])
    assert status != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_saved_before_the_member_settings_existed_still_resumes(folder, tmp_path):
    from dataclasses import fields

    train(_config(folder, epochs=2), tmp_path / "run", stop_after=1)
    path = tmp_path / "run" / "config.json"
    data = json.loads(path.read_text())
    newer = ["label_map", "context_slices", "stage_input", "stage_perturbation", "median_filter", "hard_case_class",
             "hard_case_fraction", "deep_supervision_decay", "anchor_strength"]
    assert set(newer) <= {f.name for f in fields(TrainingConfig)}
    path.write_text(json.dumps({key: value for key, value in data.items() if key not in newer}))
    assert train_cli(["train", "--resume", str(tmp_path / "run")]) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]


def test_the_deep_supervision_weight_decays_over_the_epochs(folder, tmp_path):
    from kidneytumorseg_training.trainer import Trainer

    config = _config(folder, epochs=3, iterations_per_epoch=1, val_iterations=1,
                     deep_supervision_decay={"initial": 0.5, "factor": 0.5, "every_epochs": 1})
    trainer = Trainer(config, tmp_path / "run")
    assert trainer.loss.weights[1:] == [0.5] * (len(trainer.loss.weights) - 1)
    trainer.fit()
    assert trainer.loss.weights[0] == 1.0 and trainer.loss.weights[1] == pytest.approx(0.125)
    with pytest.raises(ValueError, match="deep_supervision_decay"):
        _config(folder, deep_supervision_decay={"initial": 0.5})


@pytest.mark.parametrize("metric", ["val_loss", "train_loss"])
def test_adam_plateau_watches_the_chosen_loss(folder, tmp_path, monkeypatch, metric):
    from kidneytumorseg_training import trainer

    watched: list[float] = []
    step = trainer.Plateau.step
    monkeypatch.setattr(trainer.Plateau, "step", lambda self, loss: (watched.append(loss), step(self, loss))[1])
    result = train(_config(folder, optimizer="adam", plateau_metric=metric), tmp_path / metric)
    assert watched == pytest.approx([entry[metric] for entry in result.history])
    assert len(watched) == 2


def test_plateau_metric_must_be_a_known_loss(folder):
    assert _config(folder).plateau_metric == "val_loss"
    with pytest.raises(ValueError, match="plateau_metric"):
        _config(folder, plateau_metric="dice")


@pytest.mark.parametrize(("requested", "device", "native_bf16", "expected"), [
    ("auto", "cpu", True, "bf16"), ("auto", "cpu", False, "fp32"), ("auto", "cuda", False, "fp16"),
    ("auto", "mps", True, "fp32"), ("fp32", "cpu", True, "fp32"), ("bf16", "cpu", False, "bf16")])
def test_auto_precision_is_half_only_where_the_hardware_has_it(requested, device, native_bf16, expected):
    from kidneytumorseg_training.trainer import resolve_training_precision

    assert resolve_training_precision(requested, torch.device(device), native_bf16=native_bf16) == expected


def test_asking_for_emulated_bfloat16_warns_that_it_is_slow(caplog):
    from kidneytumorseg_training.trainer import resolve_training_precision

    with caplog.at_level(logging.WARNING, logger="kidneytumorseg_training.trainer"):
        assert resolve_training_precision("bf16", torch.device("cpu"), native_bf16=True) == "bf16"
        assert not caplog.records  # native: as asked, silently
        assert resolve_training_precision("bf16", torch.device("cpu"), native_bf16=False) == "bf16"
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "emulated" in caplog.text and "--precision auto or fp32" in caplog.text


def test_a_default_run_records_the_precision_it_trained_in(folder, tmp_path):
    from kidneytumorseg.precision import cpu_has_native_bf16

    train(_config(folder, epochs=1), tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["precision"]
    assert recorded == ("bf16" if cpu_has_native_bf16() else "fp32")


def test_each_epochs_log_line_shows_validation_or_says_there_is_none(folder, tmp_path, caplog):
    with caplog.at_level("INFO", logger="kidneytumorseg_training"):
        train(_config(folder, epochs=1, iterations_per_epoch=1, val_iterations=1), tmp_path / "validated")
        train(_config(folder, epochs=1, iterations_per_epoch=1, val_ids=[]), tmp_path / "unvalidated")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/1")]
    assert len(lines) == 2, lines
    assert "val loss" in lines[0] and "val Dice {'kidney'" in lines[0] and "nan" not in lines[0], lines[0]
    assert "no validation cases" in lines[1] and "nan" not in lines[1], lines[1]
