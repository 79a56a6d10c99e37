"""The KiTS-size survey: extents along the patient axes whatever the file's index order, and tile counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from kits23_geometry import extents_mm, tiles

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic"


def test_fixture_case_extent_and_tiles_match_the_peer_benchmark():
    extent = extents_mm(FIXTURES)["case_00112"]
    image = sitk.ReadImage(str(FIXTURES / "case_00112" / "segmentation.nii.gz"))
    assert extent[0] == pytest.approx(image.GetSize()[0] * image.GetSpacing()[0])  # slices run head-feet
    # predictor_vs_peers resamples this case to (55, 190, 190) at 3 x 2 x 2 mm: 1 x 2 x 2 tiles of 64 x 128 x 128
    assert tiles(extent, [3.0, 2.0, 2.0], [64, 128, 128]) == 4


def test_extent_follows_the_direction_not_the_index_order(tmp_path):
    image = sitk.Image([10, 20, 30], sitk.sitkUInt8)  # index axes x, y, z
    image.SetSpacing([1.0, 2.0, 3.0])
    image.SetDirection([0, 0, 1, 0, 1, 0, 1, 0, 0])  # index x runs along physical z (S), index z along x (L)
    (tmp_path / "case_00000").mkdir()
    sitk.WriteImage(image, str(tmp_path / "case_00000" / "segmentation.nii.gz"))
    np.testing.assert_allclose(extents_mm(tmp_path)["case_00000"], [10.0, 40.0, 90.0])


def test_empty_folder_says_what_to_give(tmp_path):
    with pytest.raises(SystemExit, match="KiTS23 masks"):
        extents_mm(tmp_path)
