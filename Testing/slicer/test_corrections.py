"""Corrections export on the real Slicer core: an edited segment survives export and re-import voxel for
voxel, on the CT's geometry; exports are atomic and never overwrite an earlier case unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from mrml_helpers import SAMPLE_CT, SAMPLE_REFERENCE
from vtk.util import numpy_support

from kidneytumorseg.segmentation_file import write_segmentation
from KidneyTumorSegLib.corrections import CaseExistsError, ExportError, case_folder_name, export_correction
from KidneyTumorSegLib.segmentation_logic import SegmentationLogic
from KidneyTumorSegLib.segments import MODEL_ATTRIBUTE, labels_on_volume, put_result, segment_mask
from KidneyTumorSegLib.volume_nodes import volume_to_image


@pytest.fixture
def reference_segmentation(scene, ct_node, tmp_path):
    """The sample's reference labels as a segmentation node, the way an engine result arrives."""
    path = write_segmentation(sitk.ReadImage(str(SAMPLE_REFERENCE)), tmp_path / "reference.seg.nrrd")
    return put_result(scene, ct_node, path, attributes={MODEL_ATTRIBUTE: "kits-demo@1.0.0"})


def paint_box(segmentation_node, volume_node, segment_id: str, box: tuple[slice, slice, slice]) -> None:
    """Add a box of voxels (k, j, i slices on the CT grid) to a segment through the Segmentations API."""
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    edit = logic.CreateOrientedImageDataFromVolumeNode(volume_node)
    dims = edit.GetDimensions()
    mask = np.zeros(dims[::-1], dtype=np.uint8)
    mask[segment_mask(segmentation_node, segment_id, edit)] = 1
    mask[box] = 1
    edit.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.ravel(), deep=True))
    assert logic.SetBinaryLabelmapToSegment(edit, segmentation_node, segment_id, logic.MODE_REPLACE)


def _read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def test_an_edit_survives_export_and_reimport_voxel_exact(scene, ct_node, reference_segmentation, tmp_path):
    before, _ = labels_on_volume(reference_segmentation, ct_node)
    reference = sitk.GetArrayFromImage(_read(SAMPLE_REFERENCE))
    assert np.array_equal(before, reference)  # the segments are the reference, voxel for voxel

    box = (slice(20, 24), slice(100, 110), slice(60, 75))
    paint_box(reference_segmentation, ct_node, "tumor", box)
    case = export_correction(ct_node, reference_segmentation, tmp_path / "corrections", case_id="00112",
                             note="tumor extended")

    assert case.folder == tmp_path / "corrections" / "case_00112"
    labels = _read(case.folder / "segmentation.nii.gz")
    expected = reference.copy()
    expected[box] = 2
    assert np.array_equal(sitk.GetArrayFromImage(labels), expected)
    ct = _read(SAMPLE_CT)
    exported_ct = _read(case.folder / "imaging.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(exported_ct), sitk.GetArrayFromImage(ct))
    for image in (labels, exported_ct):  # on the CT's geometry
        assert image.GetSize() == ct.GetSize()
        assert np.allclose(image.GetSpacing(), ct.GetSpacing()) and np.allclose(image.GetOrigin(), ct.GetOrigin())
        assert np.allclose(image.GetDirection(), ct.GetDirection())
    record = json.loads((case.folder / "correction.json").read_text())
    assert record["model"] == "kits-demo@1.0.0" and record["note"] == "tumor extended"
    assert record["voxels"]["tumor"] == int((expected == 2).sum())


def test_the_training_package_reads_the_export_as_a_corrections_dataset(scene, ct_node, reference_segmentation,
                                                                        tmp_path):
    from kidneytumorseg_training.datasets import check_case, find_training_cases

    export_correction(ct_node, reference_segmentation, tmp_path / "corrections", case_id="a")
    (cases,) = find_training_cases(tmp_path / "corrections")
    check_case(cases)  # images readable, geometry equal, labels in 0..3, kidney present
    assert cases.case_id == "case_a" and cases.source == "corrections"


def test_an_earlier_export_is_kept_unless_overwrite_is_asked(scene, ct_node, reference_segmentation, tmp_path):
    tmp_path = tmp_path / "corrections"
    first = export_correction(ct_node, reference_segmentation, tmp_path, case_id="x", note="first")
    with pytest.raises(CaseExistsError, match="overwrite"):
        export_correction(ct_node, reference_segmentation, tmp_path, case_id="x", note="second")
    assert json.loads((first.folder / "correction.json").read_text())["note"] == "first"
    export_correction(ct_node, reference_segmentation, tmp_path, case_id="x", note="second", overwrite=True)
    assert json.loads((first.folder / "correction.json").read_text())["note"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_x"]  # no staging or replaced folders left


def test_a_failed_write_leaves_no_half_case(scene, ct_node, reference_segmentation, tmp_path, monkeypatch):
    tmp_path = tmp_path / "corrections"
    calls = []
    real_write = sitk.WriteImage

    def disk_full(image, path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise RuntimeError("No space left on device")
        return real_write(image, path, *args)

    monkeypatch.setattr(sitk, "WriteImage", disk_full)
    with pytest.raises(ExportError, match="No space left on device.*nothing was changed"):
        export_correction(ct_node, reference_segmentation, tmp_path, case_id="y")
    assert list(tmp_path.iterdir()) == []


def test_refuses_an_export_without_kidney_or_segmentation(scene, ct_node, tmp_path):
    with pytest.raises(ExportError, match="No segmentation"):
        export_correction(ct_node, None, tmp_path)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    empty.GetSegmentation().AddEmptySegment("kidney", "kidney")
    with pytest.raises(ExportError, match="no kidney voxels"):
        export_correction(ct_node, empty, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_case_ids_are_made_safe_for_folders():
    assert case_folder_name("CT abdomen/../x") == "case_CT_abdomen_.._x"
    assert case_folder_name("case_00112") == "case_00112"
    with pytest.raises(ExportError):
        case_folder_name("///")


def test_segment_edit_export_with_the_real_engine(scene, ct_node, store, command, tmp_path):
    """The radiologist's loop: segment with the bundled model, paint into tumor, export, find the stroke."""
    result = SegmentationLogic(scene, store=store, command=command).segment(ct_node, quality="fast", timeout=300)
    node = result.segmentation_node
    draft, _ = labels_on_volume(node, ct_node)
    box = (slice(30, 33), slice(120, 124), slice(100, 104))
    paint_box(node, ct_node, "tumor", box)
    case = export_correction(ct_node, node, tmp_path, case_id="loop")
    exported = sitk.GetArrayFromImage(_read(case.folder / "segmentation.nii.gz"))
    expected = draft.copy()
    expected[box] = 2
    assert np.array_equal(exported, expected)
    record = json.loads((case.folder / "correction.json").read_text())
    assert record["model"] == result.model and len(record["draft_sha256"]) == 64
    assert np.array_equal(sitk.GetArrayFromImage(_read(case.folder / "imaging.nii.gz")),
                          sitk.GetArrayFromImage(volume_to_image(ct_node)))
