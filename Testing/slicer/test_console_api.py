"""The two documented calls of the Slicer Python console: segment a volume node, export a correction."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk

import KidneyTumorSegLib
from KidneyTumorSegLib.segments import labels_on_volume, segment_ids


def test_segment_volume_blocks_reports_progress_and_exports(scene, ct_node, store, tmp_path, monkeypatch):
    monkeypatch.setenv("KIDNEYTUMORSEG_MODELS_DIR", str(store.user_dir))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    stages = []
    node = KidneyTumorSegLib.segment_volume(ct_node, quality="fast", progress=lambda s, f: stages.append((s, f)),
                                            timeout=300)
    assert [node.GetSegmentation().GetSegment(s).GetName() for s in segment_ids(node)] == ["kidney", "tumor", "cyst"]
    assert stages[-1] == ("done", 1.0) and len(stages) > 2
    assert [f for _, f in stages] == sorted(f for _, f in stages) or len({s for s, _ in stages}) > 1

    again = KidneyTumorSegLib.segment_volume(ct_node, quality="fast", segmentation_node=node, timeout=300)
    assert again is node  # given a node, its segments are replaced

    case = KidneyTumorSegLib.export_correction(ct_node, node, tmp_path / "corrections", note="checked")
    labels, _ = labels_on_volume(node, ct_node)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(case.folder / "segmentation.nii.gz"))), labels)
    assert json.loads((case.folder / "correction.json").read_text())["note"] == "checked"
