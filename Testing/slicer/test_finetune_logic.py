"""Fine-tuning from exported corrections through the module's logic: the training package in a real worker
process, a new registered version, the old one untouched; a cancel leaves the store as it was."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
from mrml_helpers import SAMPLE_REFERENCE
from tiny_models import make_tiny_store

from kidneytumorseg.segmentation_file import write_segmentation
from KidneyTumorSegLib.background_job import JobCancelled, JobState
from KidneyTumorSegLib.corrections import export_correction
from KidneyTumorSegLib.finetune_logic import FinetuneLogic
from KidneyTumorSegLib.segments import MODEL_ATTRIBUTE, put_result
from KidneyTumorSegLib.volume_nodes import InputError

SHORT = ("--epochs", "1", "--iterations", "2", "--workers", "0", "--no-augmentation", "--seed", "1")


@pytest.fixture
def store(tmp_path):
    """tiny@1.0.0 (random weights, 6 mm): fine-tunes in seconds; the bundled kits-demo: the slow test."""
    return make_tiny_store(tmp_path / "store")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def two_corrections(scene, ct_node, tmp_path) -> Path:
    """Two exported corrections of the sample (the reference labels, as a radiologist's corrected result)."""
    path = write_segmentation(sitk.ReadImage(str(SAMPLE_REFERENCE)), tmp_path / "reference.seg.nrrd")
    node = put_result(scene, ct_node, path, attributes={MODEL_ATTRIBUTE: "kits-demo@1.0.0"})
    folder = tmp_path / "corrections"
    for case_id in ("a", "b"):
        export_correction(ct_node, node, folder, case_id=case_id)
    return folder


def test_finetune_from_two_exported_corrections_registers_a_new_version(store, command, two_corrections, tmp_path):
    old = store.find("tiny")
    old_files = _hashes(old.path)
    job = FinetuneLogic(store=store, command=command).start(old.spec, two_corrections, work_dir=tmp_path / "work",
                                                           device="cpu", extra_args=SHORT)
    stages = set()
    while job.poll() is JobState.RUNNING:
        stages.add(job.stage)
        time.sleep(0.2)
    assert job.state is JobState.SUCCEEDED, job.error
    result = job.result
    assert result.model != old.spec and result.model.startswith("tiny@")
    assert store.find(result.model).source == "user"
    assert store.verify(result.model).name == "tiny"  # sha256 of every member checked
    assert "kidney_and_mass" in str(result.before) and "kidney_and_mass" in str(result.after)
    assert len(stages) > 1
    assert _hashes(old.path) == old_files  # the old version stays usable, unchanged


def test_check_cases_and_replay_data_from_the_module(store, command, two_corrections, scene, ct_node, tmp_path):
    path = write_segmentation(sitk.ReadImage(str(SAMPLE_REFERENCE)), tmp_path / "earlier.seg.nrrd")
    node = put_result(scene, ct_node, path, attributes={MODEL_ATTRIBUTE: "kits-demo@1.0.0"})
    earlier = tmp_path / "earlier"
    export_correction(ct_node, node, earlier, case_id="earlier1")  # an exported case is a KiTS-layout case
    original = tmp_path / "original"
    export_correction(ct_node, node, original, case_id="orig1")
    logic = FinetuneLogic(store=store, command=command)
    with pytest.raises(InputError, match="check-cases folder .*missing does not exist.*clear the field"):
        logic.start("tiny", two_corrections, check_cases_dir=tmp_path / "missing")
    with pytest.raises(InputError, match="replay folder .*gone does not exist.*original training data"):
        logic.start("tiny", two_corrections, replay_dir=tmp_path / "gone")
    job = logic.start("tiny", two_corrections, work_dir=tmp_path / "work", device="cpu", extra_args=SHORT,
                      check_cases_dir=earlier, replay_dir=original)
    result = job.wait()
    settings = json.loads((tmp_path / "work" / "report.json").read_text())
    # the original data are replayed, and distilled on at the default weight
    assert settings["replay_ids"] == ["replay_case_orig1"] and settings["settings"]["distill_weight"] == 5.0
    assert set(result.check_before) == set(result.check_after) == {"kidney_and_mass", "mass", "tumor"}
    report = (tmp_path / "work" / "report.md").read_text()
    assert "## The check cases" in report and "earlier1" in report
    assert "Earlier (check) cases Dice kidney_and_mass" in result.summary() and str(result.report) in result.summary()
    assert str(result.report) not in result.summary(report=False)  # the web page: no server path
    # without check cases (an empty field in the module is "."): none, and the summary says nothing of them
    plain = logic.start("tiny", two_corrections, work_dir=tmp_path / "plain", device="cpu", extra_args=SHORT,
                        check_cases_dir=Path(".")).wait()
    assert plain.check_after == {} and "Earlier" not in plain.summary()


def test_cancelled_finetune_leaves_the_store_as_it_was(store, command, two_corrections, tmp_path):
    before = [entry.spec for entry in store.list()]
    job = FinetuneLogic(store=store, command=command).start("tiny", two_corrections, device="cpu",
                                                           work_dir=tmp_path / "work", extra_args=SHORT)
    deadline = time.monotonic() + 120
    while job.poll() is JobState.RUNNING and job.stage == "starting" and time.monotonic() < deadline:
        time.sleep(0.1)
    job.cancel()
    with pytest.raises(JobCancelled):
        job.wait()
    assert [entry.spec for entry in store.list()] == before


def test_finetune_needs_two_corrections_and_an_installed_model(store, command, two_corrections, tmp_path):
    logic = FinetuneLogic(store=store, command=command)
    with pytest.raises(InputError, match="no exported correction"):
        logic.start("tiny", tmp_path / "empty")
    with pytest.raises(InputError, match="not installed"):
        logic.start("no-such-model", two_corrections)
    (two_corrections / "case_b" / "correction.json").unlink()  # a half-written export does not count
    with pytest.raises(InputError, match="at least two"):
        logic.start("tiny", two_corrections)
