"""Volume nodes in and out: checks that a node is a CT the engine can segment, and its voxels as an image.

The engine works in LPS (ITK) coordinates, MRML in RAS; the conversion is exact (the two first axes flip).
A volume is handed over in its own (local) frame: when it sits under a transform, the segmentation is put
under the same transform, so that both move together and nothing is resampled.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import vtk
from vtk.util import numpy_support

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


class InputError(ValueError):
    """The chosen input cannot be segmented; the message says what to choose instead."""


def check_ct_volume(volume_node: object) -> None:
    """Raise InputError unless ``volume_node`` is a scalar 3D volume node with voxels."""
    if volume_node is None:
        raise InputError("No input volume is selected. Load a CT (File > Add Data, or the sample) and select it "
                         "as the input volume.")
    class_name = volume_node.GetClassName()
    if volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"'{volume_node.GetName()}' is a label map, not a CT. Select the CT volume as input.")
    if not volume_node.IsA("vtkMRMLScalarVolumeNode") or class_name != "vtkMRMLScalarVolumeNode":
        raise InputError(f"'{volume_node.GetName()}' is a {class_name}; the input must be a scalar CT volume "
                         "(vtkMRMLScalarVolumeNode). Select a CT.")
    image = volume_node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"'{volume_node.GetName()}' holds no voxels. Load the CT again.")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"'{volume_node.GetName()}' has {image.GetNumberOfScalarComponents()} components per "
                         "voxel (a color or vector image); the input must be a grayscale CT.")
    dims = image.GetDimensions()
    if min(dims) < 2:
        raise InputError(f"'{volume_node.GetName()}' is a {dims[0]}x{dims[1]}x{dims[2]} image, a single slice: "
                         "the networks segment 3D CT. Load the whole CT series.")


def ijk_to_ras(volume_node: object) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_to_image(volume_node: object) -> sitk.Image:
    """The voxels of a scalar volume node as a SimpleITK image on the same (local) geometry, in LPS."""
    image_data = volume_node.GetImageData()
    dims = image_data.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())
    array = np.array(scalars, copy=True).reshape(dims[2], dims[1], dims[0])  # (k, j, i) = ITK's (z, y, x)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(volume_to_image_geometry(volume_node))
    return image


def volume_to_image_geometry(volume_node: object) -> sitk.Image:
    """An empty image with the volume's geometry (no voxel copy)."""
    dims = volume_node.GetImageData().GetDimensions()
    image = sitk.Image([int(d) for d in dims], sitk.sitkUInt8)
    matrix = ijk_to_ras(volume_node)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (RAS_TO_LPS @ (matrix[:3, :3] / spacing)).ravel()])
    image.SetOrigin([float(v) for v in RAS_TO_LPS @ matrix[:3, 3]])
    return image
