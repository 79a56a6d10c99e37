"""Re-orientation to LPS and back, and resampling there and back onto the exact input grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg.errors import InputImageError
from kidneytumorseg.geometry import (
    array_from_lps,
    array_to_lps,
    image_from_lps,
    lps_image,
    orientation_of,
    resample_array,
    resample_image_onto,
    resample_image_to_spacing,
    resample_to_shape,
    resampled_shape,
    to_lps,
)

ORIENTATIONS = ["IPL", "RAS", "LPI", "LPS", "ASL", "SRP"]


def _image(code: str, shape=(5, 6, 7), spacing=(0.7, 1.1, 3.0), direction=None) -> sitk.Image:
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin((12.5, -40.0, 301.25))
    if direction is not None:
        image.SetDirection(direction)
    return sitk.DICOMOrient(image, code) if direction is None else image


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_to_lps_matches_dicom_orient(code):
    image = _image(code)
    assert orientation_of(image).code == code
    reference = sitk.DICOMOrient(image, "LPS")
    array, spacing, orientation = to_lps(image)
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(spacing, reference.GetSpacing()[::-1])
    assert orientation.lps_shape == array.shape
    as_image = lps_image(array, orientation)
    np.testing.assert_allclose(as_image.GetOrigin(), reference.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(as_image.GetDirection(), reference.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(as_image.GetSpacing(), reference.GetSpacing())


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_lps_round_trip_returns_exact_array_and_geometry(code):
    image = _image(code)
    array, _, orientation = to_lps(image)
    back = image_from_lps(array, orientation)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    assert back.GetSize() == image.GetSize()
    assert back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection()


def test_slightly_oblique_image_orients_like_dicom_orient():
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, -1.0]])
    image = _image("", direction=tuple(rotation.ravel()))
    array, _, orientation = to_lps(image)
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS")))
    assert image_from_lps(array, orientation).GetDirection() == image.GetDirection()


def test_channel_arrays_round_trip():
    image = _image("IPL")
    _, _, orientation = to_lps(image)
    channels = np.random.default_rng(1).normal(size=(4, *sitk.GetArrayViewFromImage(image).shape))
    lps = array_to_lps(channels, orientation)
    assert lps.shape == (4, *orientation.lps_shape)
    np.testing.assert_array_equal(array_from_lps(lps, orientation), channels)


def test_image_from_lps_refuses_wrong_shape():
    array, _, orientation = to_lps(_image("RAS"))
    with pytest.raises(InputImageError, match="resample predictions back"):
        image_from_lps(array[:-1], orientation)


def test_resample_image_there_and_back_keeps_exact_geometry():
    image = _image("IPL", shape=(20, 24, 26))
    coarse = resample_image_to_spacing(image, (2.0, 2.5, 4.0))
    assert coarse.GetSpacing() == (2.0, 2.5, 4.0)
    back = resample_image_onto(coarse, image)
    assert back.GetSize() == image.GetSize()
    assert back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection()


def test_resampled_shape_keeps_extent():
    assert resampled_shape((20, 40, 40), (3.0, 0.8, 0.8), (3.0, 1.6, 1.6)) == (20, 20, 20)
    assert resampled_shape((3, 3, 3), (1.0, 1.0, 1.0), (10.0, 10.0, 10.0)) == (1, 1, 1)


def test_resample_array_there_and_back_returns_input_grid():
    spacing, target = (3.0, 0.8, 0.8), (2.0, 1.5, 1.6)
    ramp = np.broadcast_to(np.arange(40, dtype=np.float32) * 0.8, (20, 40, 40)).copy()  # linear along L
    coarse = resample_array(ramp, spacing, target)
    assert coarse.shape == resampled_shape(ramp.shape, spacing, target)
    back = resample_to_shape(coarse, target, ramp.shape, spacing)
    assert back.shape == ramp.shape and back.dtype == np.float32
    # Linear interpolation reproduces a linear function away from the borders.
    np.testing.assert_allclose(back[:, :, 3:-3], ramp[:, :, 3:-3], atol=1e-3)


def test_resampling_back_extrapolates_the_far_border():
    constant = np.full((7, 9, 11), 0.25, dtype=np.float32)
    coarse = resample_array(constant, (1.0, 1.0, 1.0), (3.0, 3.0, 3.0))
    back = resample_to_shape(coarse, (3.0, 3.0, 3.0), constant.shape, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(back, constant, atol=1e-6)


def test_resample_same_grid_is_identity_and_channels_work():
    channels = np.random.default_rng(2).random((4, 6, 8, 10)).astype(np.float32)
    channels /= channels.sum(axis=0)
    same = resample_array(channels, (1.0, 2.0, 3.0), (1.0, 2.0, 3.0))
    np.testing.assert_array_equal(same, channels)
    coarse = resample_array(channels, (1.0, 2.0, 3.0), (2.0, 4.0, 6.0))
    assert coarse.shape == (4, 3, 4, 5)
    np.testing.assert_allclose(coarse.sum(axis=0), 1.0, atol=1e-5)  # linear interpolation keeps probabilities


def test_bspline_and_unknown_interpolation():
    volume = np.random.default_rng(3).random((6, 6, 6)).astype(np.float32)
    assert resample_array(volume, (1, 1, 1), (2, 2, 2), "bspline").shape == (3, 3, 3)
    with pytest.raises(ValueError, match="Unknown interpolation"):
        resample_array(volume, (1, 1, 1), (2, 2, 2), "cubic")


def test_to_lps_of_a_temporary_lps_image_owns_its_voxels():
    values = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    image = sitk.GetImageFromArray(values)  # identity direction: already LPS
    array, _, _ = to_lps(sitk.Cast(image, sitk.sitkFloat32))  # the cast image is freed right away
    assert array.flags.owndata and array.flags.c_contiguous
    np.testing.assert_array_equal(array, values.astype(np.float32))
    array[...] = -1  # writing to it must not touch any image
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), values)
