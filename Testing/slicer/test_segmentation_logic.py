"""SegmentationLogic on the real Slicer core: the sample CT read by a storage node, the real engine in a real
subprocess with the bundled model, three named segments on the volume's geometry."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
import vtk
from mrml_helpers import SAMPLE_REFERENCE, scene_snapshot
from processes import process_group_members

from KidneyTumorSegLib.background_job import JobCancelled, JobError, JobState
from KidneyTumorSegLib.engine_command import EngineCommand
from KidneyTumorSegLib.segmentation_logic import SegmentationLogic
from KidneyTumorSegLib.segments import MODEL_ATTRIBUTE, labels_on_volume, segment_ids
from KidneyTumorSegLib.volume_nodes import InputError


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def test_segments_the_sample_into_three_named_segments_on_the_volume_geometry(scene, ct_node, store, command):
    logic = SegmentationLogic(scene, store=store, command=command)
    result = logic.segment(ct_node, timeout=300)

    node = result.segmentation_node
    assert scene.GetNodeByID(node.GetID()) is node
    names = [node.GetSegmentation().GetSegment(s).GetName() for s in segment_ids(node)]
    assert names == ["kidney", "tumor", "cyst"]
    kidney = node.GetSegmentation().GetSegment("kidney")
    assert kidney.GetColor() == pytest.approx((0.847, 0.396, 0.31), abs=1e-3)
    assert node.GetAttribute(MODEL_ATTRIBUTE).startswith("kits-demo@")
    assert set(result.volumes_ml) == {"kidney", "tumor", "cyst"} and result.volumes_ml["kidney"] > 50

    labels, others = labels_on_volume(node, ct_node)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_REFERENCE)))
    assert others == [] and labels.shape == reference.shape  # on the CT's voxel grid
    assert _dice(labels > 0, reference > 0) > 0.7  # kidney_and_mass of the bundled demo model


def test_replaces_the_previous_result_only_when_asked(scene, ct_node, store, command):
    logic = SegmentationLogic(scene, store=store, command=command)
    first = logic.segment(ct_node, quality="fast", timeout=300).segmentation_node
    second = logic.segment(ct_node, quality="fast", segmentation_node=first, timeout=300).segmentation_node
    assert second is not first  # a new node: the first (perhaps edited) result is kept
    third = logic.segment(ct_node, quality="fast", segmentation_node=first, replace=True, timeout=300)
    assert third.segmentation_node is first and len(segment_ids(first)) == 3


def test_segmentation_follows_the_volume_transform(scene, ct_node, store, command):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    ct_node.SetAndObserveTransformNodeID(transform.GetID())
    node = SegmentationLogic(scene, store=store, command=command).segment(
        ct_node, quality="fast", timeout=300).segmentation_node
    assert node.GetTransformNodeID() == transform.GetID()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc to find left-over processes")
def test_cancel_mid_run_leaves_the_scene_unchanged_and_no_process(scene, ct_node, store, command):
    before = scene_snapshot(scene)
    job = SegmentationLogic(scene, store=store, command=command).start(ct_node)
    deadline = time.monotonic() + 120
    while job.poll() is JobState.RUNNING and job.stage in ("starting",) and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the engine reports its first stage: it is really working
    assert job.state is JobState.RUNNING, job.status_text
    pid = job.process.pid
    job.cancel()
    assert job.state is JobState.CANCELLED
    with pytest.raises(JobCancelled):
        job.wait()
    assert scene_snapshot(scene) == before
    assert not process_group_members(pid) and not os.path.exists(f"/proc/{pid}")


def test_bad_inputs_are_refused_before_anything_runs(scene, ct_node, store, command):
    logic = SegmentationLogic(scene, store=store, command=command)
    before = scene_snapshot(scene)
    with pytest.raises(InputError, match="No input volume"):
        logic.start(None)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(InputError, match="label map"):
        logic.start(labelmap)
    slice_node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "one slice")
    image = vtk.vtkImageData()
    image.SetDimensions(64, 64, 1)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    slice_node.SetAndObserveImageData(image)
    with pytest.raises(InputError, match="single slice"):
        logic.start(slice_node)
    with pytest.raises(InputError, match="not installed"):
        logic.start(ct_node, model="no-such-model")
    scene.RemoveNode(labelmap)
    scene.RemoveNode(slice_node)
    assert [n[:2] for n in scene_snapshot(scene)] == [n[:2] for n in before]


def test_a_model_removed_while_selected_gives_a_clear_error(scene, ct_node, store, command, tmp_path):
    copy = tmp_path / "kits-demo-copy"
    shutil.copytree(store.find("kits-demo").path, copy)
    manifest = json.loads((copy / "model.json").read_text())
    manifest["version"] = "9.9.9"
    (copy / "model.json").write_text(json.dumps(manifest))
    store.import_package(copy)
    logic = SegmentationLogic(scene, store=store, command=command)
    assert logic.resolve_model("kits-demo@9.9.9") == "kits-demo@9.9.9"  # selected in the widget...
    store.remove("kits-demo@9.9.9")  # ...then removed (Models section, another Slicer, a file manager)
    before = scene_snapshot(scene)
    with pytest.raises(InputError, match="kits-demo@9.9.9.*not installed"):
        logic.start(ct_node, model="kits-demo@9.9.9")
    assert scene_snapshot(scene) == before


@pytest.mark.parametrize(("script", "message"), [
    ("import sys; sys.exit(3)", "stopped unexpectedly"),
    ("print('Segmentation fault (core dumped)')", "not the engine's protocol"),
    ("import json; print(json.dumps({'type': 'error', 'message': 'CUDA is not available'})); raise SystemExit(2)",
     "CUDA is not available"),
])
def test_an_engine_that_crashes_or_prints_garbage_fails_clearly_and_changes_nothing(
        scene, ct_node, store, tmp_path, script, message):
    fake = tmp_path / "fake_engine.py"
    fake.write_text(script)

    class FakeEngine(EngineCommand):
        def predict(self, *args, **kwargs):
            return [sys.executable, str(fake)]

    before = scene_snapshot(scene)
    logic = SegmentationLogic(scene, store=store, command=FakeEngine(python=sys.executable))
    with pytest.raises(JobError, match=message):
        logic.segment(ct_node, timeout=60)
    assert scene_snapshot(scene) == before


def test_temporary_files_are_removed_after_the_run(scene, ct_node, store, command, tmp_path):
    root = tmp_path / "tmp"
    root.mkdir()
    SegmentationLogic(scene, store=store, command=command, temp_root=root).segment(ct_node, quality="fast",
                                                                                   timeout=300)
    assert list(root.iterdir()) == []
    shutil.rmtree(root)
