"""Slicer .seg.nrrd files: labels and geometry preserved, named colored segments with terminology."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.labels import LABEL_COLORS
from kidneytumorseg.segmentation_file import read_segment_table, segmentation_metadata, write_segmentation


def _labels() -> sitk.Image:
    array = np.zeros((6, 8, 10), dtype=np.uint8)
    array[1:4, 2:6, 3:7] = 1
    array[2, 3, 4] = 2
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 3.0))
    image.SetOrigin((10.0, -5.0, 30.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return image


def test_labels_and_geometry_survive_the_round_trip(tmp_path):
    labels = _labels()
    path = write_segmentation(labels, tmp_path / "case.seg.nrrd")
    back = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))
    assert back.GetSpacing() == labels.GetSpacing() and back.GetOrigin() == labels.GetOrigin()
    assert back.GetDirection() == labels.GetDirection()


def test_segments_are_named_colored_and_coded(tmp_path):
    path = write_segmentation(_labels(), tmp_path / "case")  # suffix added
    assert path.name == "case.seg.nrrd"
    table = read_segment_table(path)
    assert [table[v]["name"] for v in (1, 2, 3)] == ["kidney", "tumor", "cyst"]
    assert [float(c) for c in table[1]["color"].split()] == list(np.round(LABEL_COLORS[1], 6))
    assert "SCT^64033007^Kidney" in table[1]["tags"]
    assert "SCT^108369006^Neoplasm" in table[2]["tags"] and "SCT^367643001^Cyst" in table[3]["tags"]


def test_extents_are_the_label_bounding_boxes_in_xyz_index_order():
    fields = segmentation_metadata(sitk.GetArrayFromImage(_labels()))
    assert fields["Segment0_Extent"] == "3 6 2 5 1 3"  # kidney: x 3..6, y 2..5, z 1..3
    assert fields["Segment1_Extent"] == "4 4 3 3 2 2"
    assert fields["Segment2_Extent"] == "0 -1 0 -1 0 -1"  # no cyst
    assert "Segmentation_Extent" not in fields  # Slicer then reads only the first segment
