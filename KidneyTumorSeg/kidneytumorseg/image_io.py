"""Reading and writing 3D images with their geometry, validated, and written atomically.

Images are SimpleITK images: they carry size, spacing, origin and direction, which every later step
(prediction, evaluation, export) must preserve exactly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.atomic import atomic_path
from kidneytumorseg.errors import GeometryMismatchError, InputImageError, MissingInputError
from kidneytumorseg.labels import VALID_LABELS

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".seg.nrrd", ".mha", ".mhd")


def image_suffix(path: str | os.PathLike[str]) -> str:
    """Return the image-format suffix of ``path`` ('.nii.gz', '.nrrd', ...) or '' if it is not one we read."""
    name = Path(path).name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return ""


def read_image(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a 3D single-channel image (NIfTI, NRRD or MetaImage), with clear errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{path}: no such file. Check the path (and the case folder name).")
    if path.is_dir():
        raise InputImageError(f"{path} is a folder, expected an image file (.nii.gz, .nrrd, .mha).")
    if not image_suffix(path):
        raise InputImageError(
            f"{path}: unsupported file type. Give a NIfTI (.nii.gz/.nii), NRRD (.nrrd) or MetaImage "
            f"(.mha/.mhd) file; convert other formats first, e.g. with 3D Slicer or SimpleITK."
        )
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown reason"
        raise InputImageError(
            f"{path} could not be read as an image ({first_line}). The file is damaged or is not really "
            f"a {image_suffix(path)} image: re-export it from its source."
        ) from error
    check_3d(image, path)
    return image


def check_3d(image: sitk.Image, name: str | os.PathLike[str]) -> None:
    """Raise InputImageError unless ``image`` is a 3D single-component image."""
    if image.GetDimension() != 3:
        raise InputImageError(
            f"{name} is {image.GetDimension()}D (size {image.GetSize()}); a 3D volume is needed. "
            f"For a 4D file pick one time point; a 2D slice cannot be segmented in 3D."
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB or vector image); "
            f"a single-channel CT or label map is needed."
        )


def read_label_map(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a KiTS label map (0 background, 1 kidney, 2 tumor, 3 cyst) and check its labels."""
    image = read_image(path)
    check_label_map(image, path)
    return image


def check_label_map(image: sitk.Image, name: str | os.PathLike[str]) -> None:
    """Raise InputImageError unless ``image`` is an integer image with labels in 0..3 only."""
    array = sitk.GetArrayViewFromImage(image)
    integral = np.issubdtype(array.dtype, np.integer) or (
        np.all(np.isfinite(array)) and np.all(np.mod(array, 1) == 0)
    )
    if not integral:
        raise InputImageError(
            f"{name} holds non-integer values; a label map must hold the KiTS labels 0 background, "
            f"1 kidney, 2 tumor, 3 cyst."
        )
    if array.size == 0 or (min(VALID_LABELS) <= array.min() and array.max() <= max(VALID_LABELS)):
        return  # 0..3 are all valid: no need to sort the whole volume (np.unique) on the common path
    present = {int(v) for v in np.unique(array)}
    unexpected = sorted(present - VALID_LABELS)
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:10]) + (" ..." if len(unexpected) > 10 else "")
        raise InputImageError(
            f"{name} contains labels {shown} outside 0..3. KiTS label maps use 0 background, 1 kidney, "
            f"2 tumor, 3 cyst: map other labels (e.g. ureter, artery) to 0 or to one of these first."
        )


def write_image_atomic(image: sitk.Image, path: str | os.PathLike[str], compress: bool = True) -> Path:
    """Write ``image`` to ``path`` so that ``path`` is either the old file or the complete new one.

    The image is written to a temporary file in the same folder and renamed over ``path``, so a crash,
    a full disk or a cancelled run never leaves a half-written image under the final name.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if not suffix:
        raise InputImageError(f"{path}: cannot write this file type; use .nii.gz, .nrrd or .mha.")
    with atomic_path(path, suffix=suffix) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=compress)
    return path


def geometry_differences(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> list[str]:
    """List how the voxel grids of ``a`` and ``b`` differ (empty when they match within ``tolerance``)."""
    differences = []
    if a.GetSize() != b.GetSize():
        differences.append(f"size {a.GetSize()} vs {b.GetSize()}")
    for what, get in (("spacing", "GetSpacing"), ("origin", "GetOrigin"), ("direction", "GetDirection")):
        va, vb = np.asarray(getattr(a, get)()), np.asarray(getattr(b, get)())
        if va.shape != vb.shape or not np.allclose(va, vb, atol=tolerance, rtol=0):
            differences.append(f"{what} {tuple(np.round(va, 4))} vs {tuple(np.round(vb, 4))}")
    return differences


def check_same_geometry(
    a: sitk.Image, b: sitk.Image, a_name: str, b_name: str, tolerance: float = 1e-4
) -> None:
    """Raise GeometryMismatchError naming both images unless they share one voxel grid."""
    differences = geometry_differences(a, b, tolerance)
    if differences:
        raise GeometryMismatchError(
            f"{a_name} and {b_name} are not on the same voxel grid ({'; '.join(differences)}). "
            f"A prediction must be written on its CT's exact geometry; resample it onto the reference "
            f"(nearest neighbour) or re-run the prediction on the matching CT."
        )


def dicom_series_in(folder: str | os.PathLike[str]) -> list[str]:
    """The DICOM series ids in ``folder`` (not its subfolders); empty when it holds no DICOM series."""
    if not any(entry.is_file() for entry in Path(folder).iterdir()):
        return []  # a folder of case folders
    # GDCM prints an ITK warning for every folder without DICOM; "no series" is an answer, not a problem.
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def read_dicom_series(folder: str | os.PathLike[str]) -> sitk.Image:
    """Read the DICOM series in ``folder`` as one 3D image (the largest series when there are several)."""
    folder = Path(folder)
    series = dicom_series_in(folder)
    if not series:
        raise InputImageError(
            f"{folder} holds no DICOM series. Give a folder with the DICOM files of one CT series, or an image "
            f"file (.nii.gz, .nrrd, .mha)."
        )
    files = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series}
    chosen = max(series, key=lambda sid: len(files[sid]))
    if len(series) > 1:
        logger.warning("%s holds %d DICOM series; reading the largest (%d files, %s)", folder, len(series),
                       len(files[chosen]), chosen)
    if len(files[chosen]) < 2:
        raise InputImageError(f"{folder}: the DICOM series has a single slice; a 3D CT series is needed.")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files[chosen])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise InputImageError(f"{folder}: the DICOM series could not be read ({error}).") from error
    check_3d(image, folder)
    return image


def read_ct(path: str | os.PathLike[str]) -> sitk.Image:
    """Read a CT from an image file or a folder holding one DICOM series."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    return read_image(path)
