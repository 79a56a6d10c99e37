"""``kidneytumorseg-train finetune --progress json`` as the Slicer module and the web front-end run it: a real
subprocess on the tiny package and corrections of test_finetune.py; its stdout is the background-process
protocol; SIGTERM cancels, leaving the store as it was and no worker process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from processes import process_group_members
from test_finetune import make_check_cases, make_corrections
from tiny_models import make_tiny_store as make_store

from kidneytumorseg.model_store import ModelStore
from kidneytumorseg_training.cli.main import main

SCRIPT = Path(sys.executable).with_name("kidneytumorseg-train")
EVENT_TYPES = {"progress", "log", "result", "error", "cancelled"}
TIMEOUT = 300  # a guard for a hung run; the runs take 10-30 s on two busy cores


def _command(root: Path, *extra: str) -> list[str]:
    return [str(SCRIPT), "finetune", "--model", "tiny@1.0.0", "--corrections", str(root / "corrections"),
            "--store-dir", str(root / "user"), "--work-dir", str(root / "work"), "--holdout", "0.5",
            "--device", "cpu", "--threads", "1", "--progress", "json", *extra]


def _events(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines()]  # every line is one JSON object
    assert events and all(event["type"] in EVENT_TYPES for event in events)
    return events


@pytest.fixture
def tiny(tmp_path) -> Path:
    make_store(tmp_path)  # tiny@1.0.0 in tmp_path/user
    make_corrections(tmp_path / "corrections")
    return tmp_path


def test_json_progress_logs_and_a_result_naming_the_new_version(tiny):
    check_cases = make_check_cases(tiny / "earlier")
    done = subprocess.run(_command(tiny, "--epochs", "2", "--iterations", "2", "--workers", "0",
                                   "--check-cases", str(check_cases), "--precision", "fp32"),
                          capture_output=True, text=True, timeout=TIMEOUT, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    events = _events(done.stdout)
    progress = [event for event in events if event["type"] == "progress"]
    fractions = [event["fraction"] for event in progress]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert [e["fraction"] for e in progress if e["stage"] == "train fold0"] == [0.1, 0.4, 0.7]  # start, 2 epochs
    logs = [event for event in events if event["type"] == "log"]
    assert all(set(e) == {"type", "level", "message"} for e in logs)
    assert any(e["level"] == "warning" and "case_00999" in e["message"] for e in logs)  # the half-written one
    assert any(e["message"].startswith("epoch 2/2") for e in logs)
    assert events[-1]["type"] == "result" and [e["type"] for e in events].count("result") == 1
    result = events[-1]
    store = ModelStore(tiny / "bundled", tiny / "user")
    new = store.verify("tiny@1.0.1")
    assert result["model"] == "tiny@1.0.1" and (result["name"], result["version"]) == ("tiny", "1.0.1")
    assert Path(result["package"]) == new.path and Path(result["report"]) == tiny / "work" / "report.json"
    report = json.loads(Path(result["report"]).read_text())
    assert report["settings"]["precision"] == "fp32"  # --precision reaches the training
    for when in ("before", "after"):
        assert result[when] == {region: values["dice"] for region, values in report[when]["regions"].items()}
        assert set(result[when]) == {"kidney_and_mass", "mass", "tumor"}
        # --check-cases reaches the fine-tune: the earlier cases' Dice of both versions, as in the report
        check = report["check"][when]
        assert check["case_ids"] == ["case_00112", "case_00500"]
        assert result[f"check_{when}"] == {region: values["dice"] for region, values in check["regions"].items()}


@pytest.mark.parametrize("to_group", [False, True], ids=["to-the-process", "to-its-group"])
def test_sigterm_during_training_cancels_and_leaves_no_version_and_no_process(tiny, to_group):
    """SIGTERM to the process (``QProcess.terminate``) or to its whole group, workers included (the Slicer
    module's EngineProcess), while an epoch runs."""
    store_before = sorted(str(p.relative_to(tiny / "user")) for p in (tiny / "user").rglob("*"))
    process = subprocess.Popen(_command(tiny, "--epochs", "500", "--iterations", "4", "--workers", "1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env=os.environ | {"OMP_NUM_THREADS": "1"})
    guard = threading.Timer(TIMEOUT, os.killpg, (process.pid, signal.SIGKILL))  # never hang the suite
    guard.start()
    try:
        lines, workers = [], []
        for line in process.stdout:
            lines.append(line)
            event = json.loads(line)
            if event["type"] == "progress" and event["stage"] == "train fold0" and event["fraction"] > 0.1:
                # An epoch is done: the data-loading worker runs beside the main process.
                workers = [pid for pid in process_group_members(process.pid) if pid != process.pid]
                if to_group:
                    os.killpg(process.pid, signal.SIGTERM)
                else:
                    process.send_signal(signal.SIGTERM)
                break
        process.wait(timeout=TIMEOUT)  # the main process only: reading stdout to its end would wait for workers
        deadline = time.monotonic() + 0.5  # a worker left behind would live on for seconds (its parent watchdog)
        while process_group_members(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = process_group_members(process.pid)
        rest, errors = process.communicate(timeout=TIMEOUT)
    finally:
        guard.cancel()
    assert workers, f"no data-loading worker was running; stderr: {errors}"
    assert left == [], f"processes {left} of the cancelled run were still running after it exited"
    assert process.returncode == 130, errors
    events = _events("".join(lines) + rest)
    assert events[-1] == {"type": "cancelled"} and not any(e["type"] in ("result", "error") for e in events)
    # no complaint about the workers that the cancel ended (stderr is free-form: only that is checked)
    assert "DataLoader worker" not in errors and "Exception ignored" not in errors, errors
    assert sorted(str(p.relative_to(tiny / "user")) for p in (tiny / "user").rglob("*")) == store_before
    assert (tiny / "work" / "runs" / "fold0").is_dir()  # the work folder keeps what was done


def test_errors_are_an_error_event_and_exit_status_2(tiny, capsys):
    code = main(["finetune", "--model", "other@2.0.0", "--corrections", str(tiny / "corrections"),
                 "--store-dir", str(tiny / "user"), "--work-dir", str(tiny / "work"), "--progress", "json"])
    assert code == 2
    [event] = _events(capsys.readouterr().out)
    assert event["type"] == "error" and "No model 'other@2.0.0'" in event["message"]
    assert "tiny@1.0.0" in event["message"]  # what is there instead
