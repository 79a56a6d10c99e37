"""``kidneytumorseg predict`` as users and the background-process protocol run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
from PIL import Image

from kidneytumorseg.cli.main import main

SCRIPT = Path(sys.executable).with_name("kidneytumorseg")


@pytest.fixture
def ct_file(sample_ct, tmp_path):
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sample_ct, str(path))
    return path


def _args(ct, out, store, *extra):
    return ["predict", "-i", str(ct), "-o", str(out), "--store-dir", str(store), "--model", "random-test",
            "--device", "cpu", *extra]


def test_predict_writes_files_and_prints_volumes(ct_file, tmp_path, random_package, capsys):
    code = main(_args(ct_file, tmp_path / "out", random_package, "--quality", "fast", "--progress", "none"))
    assert code == 0
    assert (tmp_path / "out" / "ct.nii.gz").is_file() and (tmp_path / "out" / "ct.seg.nrrd").is_file()
    printed = capsys.readouterr().out
    assert "kidney" in printed and "ml" in printed and "ct.seg.nrrd" in printed


def test_json_lines_protocol(ct_file, tmp_path, random_package):
    result = subprocess.run([str(SCRIPT), *_args(ct_file, tmp_path / "out", random_package, "--progress", "json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = {event["type"] for event in events}
    assert {"progress", "result"} <= kinds and kinds <= {"progress", "log", "result", "error", "cancelled"}
    fractions = [event["fraction"] for event in events if event["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    [final] = [event for event in events if event["type"] == "result"]
    assert final["model"] == "random-test@1.0.0" and set(final["volumes_ml"]) == {"kidney", "tumor", "cyst"}
    assert Path(final["segmentation"]).is_file()


def test_an_unknown_model_is_a_clear_error(ct_file, tmp_path, random_package):
    result = subprocess.run([str(SCRIPT), *_args(ct_file, tmp_path / "out", random_package)[:-4], "--model",
                             "no-such-model"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "no-such-model" in result.stderr and "random-test" in result.stderr and "Traceback" not in result.stderr


def _sigterm_when(args: list[str], stop, timeout: float = 240) -> tuple[list[dict], list[dict]]:
    """Run the command with JSON lines, send SIGTERM at the first event for which ``stop(event)`` is true; return
    the events up to it and those after, having checked the exit code and the final ``cancelled``."""
    process = subprocess.Popen([str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"OMP_NUM_THREADS": "1"})
    seen, deadline = [], time.monotonic() + timeout
    for line in process.stdout:
        seen.append(json.loads(line))
        if stop(seen[-1]):
            process.send_signal(signal.SIGTERM)
            break
        assert time.monotonic() < deadline
    rest, _ = process.communicate(timeout=120)
    remaining = [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == 130
    assert remaining[-1] == {"type": "cancelled"}
    return seen, remaining


def test_sigterm_cancels_between_tiles_and_writes_nothing(ct_file, tmp_path, make_random_package):
    store = tmp_path / "store"
    make_random_package(store / "random-test" / "1.0.0", with_localizer=False, spacing=(1.5, 1.5, 1.5))
    _, remaining = _sigterm_when(_args(ct_file, tmp_path / "out", store, "--progress", "json"),
                                 lambda event: event["type"] == "progress" and event["stage"].startswith("member"))
    assert not any((tmp_path / "out").glob("*.nii.gz")) and not any((tmp_path / "out").glob("*.nrrd"))


def test_each_case_is_reported_when_written_so_a_cancel_loses_no_finished_case(ct_file, tmp_path,
                                                                                 make_random_package):
    store = tmp_path / "store"
    make_random_package(store / "random-test" / "1.0.0", with_localizer=False, spacing=(1.5, 1.5, 1.5))
    for name in ("case_00001", "case_00002"):
        (tmp_path / "in" / name).mkdir(parents=True)
        (tmp_path / "in" / name / "imaging.nii.gz").write_bytes(ct_file.read_bytes())
    seen, remaining = _sigterm_when(
        _args(tmp_path / "in", tmp_path / "out", store, "--progress", "json"),
        lambda event: event["type"] == "progress" and event["case"] == "case_00002"
        and event["stage"].startswith("member"))
    # The first case's result came before the second case started, not at the end of the batch.
    results = [event for event in seen if event["type"] == "result"]
    assert [r["case"] for r in results] == ["case_00001"]
    assert not any(event["type"] == "result" for event in remaining)
    assert Path(results[0]["labels"]).is_file() and Path(results[0]["segmentation"]).is_file()
    assert results[0]["seconds"] > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_00001.nii.gz", "case_00001.seg.nrrd"]


def test_overlay_writes_a_png_only_when_asked(ct_file, tmp_path, random_package, capsys):
    assert main(_args(ct_file, tmp_path / "plain", random_package, "--quality", "fast", "--progress", "none")) == 0
    assert not any((tmp_path / "plain").glob("*.png"))
    assert "_overlay.png" not in capsys.readouterr().out

    result = subprocess.run([str(SCRIPT), *_args(ct_file, tmp_path / "out", random_package, "--quality", "fast",
                                                 "--progress", "json", "--overlay")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    [final] = [json.loads(line) for line in result.stdout.splitlines() if json.loads(line)["type"] == "result"]
    overlay = tmp_path / "out" / "ct_overlay.png"
    assert final["overlay"] == str(overlay)
    with Image.open(overlay) as png:
        png.verify()
        assert png.format == "PNG" and png.width > 300 and png.height > 300
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct.nii.gz", "ct.seg.nrrd", "ct_overlay.png"]
