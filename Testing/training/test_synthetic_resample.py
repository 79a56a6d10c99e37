"""Anatomical spacing -> image axes, and volume preservation of label resampling on a real mask."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg_training.synthetic.resample import anatomical_axes, resample_to_spacing, target_spacing


def test_anatomical_axes_follow_the_direction_matrix(load_mask):
    mask = load_mask("case_00021")  # KiTS files store the head-feet axis first (orientation 'IPL')
    assert anatomical_axes(mask) == [2, 1, 0]
    assert target_spacing(mask, (1.5, 1.5, 3.0)) == (3.0, 1.5, 1.5)
    assert anatomical_axes(sitk.DICOMOrient(mask, "LPS")) == [0, 1, 2]


def test_label_volumes_and_physical_extent_survive_resampling(load_mask):
    mask = load_mask("case_00119")
    coarse = resample_to_spacing(mask, (6.0, 6.0, 6.0), is_label=True)
    before = np.bincount(sitk.GetArrayFromImage(mask).ravel(), minlength=4) * np.prod(mask.GetSpacing())
    after = np.bincount(sitk.GetArrayFromImage(coarse).ravel(), minlength=4) * np.prod(coarse.GetSpacing())
    assert after[1] == pytest.approx(before[1], rel=0.1)
    extent = np.asarray(mask.GetSize()) * mask.GetSpacing()
    assert np.allclose(np.asarray(coarse.GetSize()) * coarse.GetSpacing(), extent, atol=6.0)
    # the outer corner of the first voxel stays in place
    corner = lambda im: np.asarray(im.GetOrigin()) - np.asarray(im.GetDirection()).reshape(3, 3) @ (  # noqa: E731
        np.asarray(im.GetSpacing()) / 2)
    assert np.allclose(corner(coarse), corner(mask), atol=1e-4)
