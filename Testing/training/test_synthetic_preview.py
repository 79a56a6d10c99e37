"""Preview montage: radiological orientation and physical aspect ratio."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from kidneytumorseg_training.synthetic.preview import PANEL_HEIGHT, render_preview


def _lps_volume(shape=(20, 40, 60), spacing=(1.0, 1.0, 2.0)):
    image = sitk.GetImageFromArray(np.full(shape, -1000, dtype=np.int16))  # (S, P, L) array in LPS
    image.SetSpacing(spacing)
    return image


def test_patient_right_is_on_the_image_left_and_anterior_is_up():
    image = _lps_volume()
    array = sitk.GetArrayFromImage(image)
    array[:, :, :20] = 200  # patient's right third (L index small = right)
    array[:, :5, :] = 100  # anterior rows
    ct = sitk.GetImageFromArray(array)
    ct.CopyInformation(image)
    stored = sitk.DICOMOrient(ct, "RAS")  # the preview must not depend on how the file is stored
    montage = np.asarray(render_preview(stored, None).convert("L"), dtype=float)
    axial = montage[30 : 30 + PANEL_HEIGHT, 10 : 10 + PANEL_HEIGHT * 60 // 40]
    left, right = axial[:, : axial.shape[1] // 4], axial[:, -axial.shape[1] // 4 :]
    assert left.mean() > right.mean() + 50
    assert axial[2:10, axial.shape[1] // 2 :].mean() > axial[-10:, axial.shape[1] // 2 :].mean()


def test_panels_keep_the_physical_aspect_ratio():
    image = _lps_volume(shape=(20, 40, 60), spacing=(1.0, 1.0, 2.0))  # 60 mm wide (L), 40 mm deep (P)
    montage = render_preview(image, None)
    # axial panel: width/height = 60 mm / 40 mm
    expected_axial_width = round(PANEL_HEIGHT * 60 / 40)
    coronal_width = round(PANEL_HEIGHT * 60 / 40)  # 60 mm wide, 40 mm tall (20 slices x 2 mm)
    sagittal_width = round(PANEL_HEIGHT * 40 / 40)
    assert montage.width == expected_axial_width + coronal_width + sagittal_width + 40
