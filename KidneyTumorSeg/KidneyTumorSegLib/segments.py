"""Segmentation nodes: the engine's result in, the (edited) segments out as a KiTS label map.

The engine writes a Slicer ``.seg.nrrd`` with the segments' names, colors and SNOMED CT terminology (one
definition, ``kidneytumorseg.labels``); it is read here with Slicer's own storage node and copied into the
scene's segmentation node, so the segments are exactly what the Segment Editor edits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from kidneytumorseg.labels import LABEL_NAMES

LOGGER = logging.getLogger("KidneyTumorSegLib")

# Node attributes that remember which model made the draft (for the corrections' provenance).
MODEL_ATTRIBUTE = "KidneyTumorSeg.Model"
DRAFT_SHA256_ATTRIBUTE = "KidneyTumorSeg.DraftSha256"
SOURCE_VOLUME_ATTRIBUTE = "KidneyTumorSeg.SourceVolumeID"
# Where two edited segments overlap, the more specific label wins (tumor over cyst over kidney).
LABEL_PRIORITY = (1, 3, 2)


class SegmentationError(ValueError):
    """A segmentation node cannot be used as asked; the message says what to do."""


def register_segmentation_converters() -> None:
    """Make binary labelmaps and closed surfaces available, as Slicer's Segmentations module does at start.

    Inside Slicer they are already registered; outside (slicer-core in pytest or the web server) a
    segmentation cannot even hold an empty labelmap segment without them."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    rules = factory.GetConverterRules()
    known = {rules[i].GetClassName() for i in range(len(rules))} if rules else set()
    for rule_class in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                       slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if rule_class.__name__ not in known:
            factory.RegisterConverterRule(rule_class())


def read_segmentation_file(path: str | Path) -> tuple[object, object]:
    """Read a ``.seg.nrrd`` into a segmentation node of a private scene; (scene, node)."""
    register_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        raise SegmentationError(f"Could not read the segmentation file {path}; it may be damaged. Segment again.")
    return scene, node


def segment_ids(segmentation_node: object) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def put_result(scene: object, volume_node: object, segmentation_file: str | Path, *,
               target: object | None = None, name: str | None = None,
               attributes: dict[str, str] | None = None) -> object:
    """The engine's result as the segments of ``target`` (replaced), or of a new node on the volume.

    The node gets the volume's geometry as its reference and the volume's parent transform."""
    _, source = read_segmentation_file(segmentation_file)
    node = target
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name or f"{volume_node.GetName()} segmentation")
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    segmentation = node.GetSegmentation()
    was_modified = node.StartModify()
    try:
        segmentation.RemoveAllSegments()
        for segment_id in segment_ids(source):
            if not segmentation.CopySegmentFromSegmentation(source.GetSegmentation(), segment_id):
                raise SegmentationError(f"Could not copy the segment '{segment_id}' into '{node.GetName()}'.")
        for key, value in (attributes or {}).items():
            node.SetAttribute(key, value)
        node.SetAttribute(SOURCE_VOLUME_ATTRIBUTE, volume_node.GetID() or "")
    finally:
        node.EndModify(was_modified)
    return node


def _segment_for_label(segmentation_node: object, label: int) -> str | None:
    """The segment holding KiTS label ``label``: by ID or name (kidney / tumor / cyst, any case)."""
    wanted = LABEL_NAMES[label]
    segmentation = segmentation_node.GetSegmentation()
    for segment_id in segment_ids(segmentation_node):
        names = {segment_id.lower(), segmentation.GetSegment(segment_id).GetName().strip().lower()}
        if wanted in names:
            return segment_id
    return None


def segment_mask(segmentation_node: object, segment_id: str, reference: object) -> np.ndarray:
    """A segment as a boolean (k, j, i) array on the geometry of the oriented image ``reference``."""
    labelmap = slicer.vtkOrientedImageData()
    if not segmentation_node.GetBinaryLabelmapRepresentation(segment_id, labelmap):
        raise SegmentationError(f"The segment '{segment_id}' has no binary labelmap; in Segmentations, convert it "
                                "to a binary labelmap (or paint it) and try again.")
    resampled = slicer.vtkOrientedImageData()
    dims = reference.GetDimensions()
    if labelmap.IsEmpty():
        return np.zeros(dims[::-1], dtype=bool)
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            labelmap, reference, resampled, False, True):
        raise SegmentationError(f"Could not resample the segment '{segment_id}' onto the CT's grid.")
    array = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars())
    return array.reshape(dims[2], dims[1], dims[0]) > 0


def labels_on_volume(segmentation_node: object, volume_node: object,
                     required: Iterable[int] = ()) -> tuple[np.ndarray, list[str]]:
    """The kidney / tumor / cyst segments as one KiTS label array (k, j, i) on ``volume_node``'s voxels.

    Returns the labels and the names of segments that are not one of the three (left out). A missing
    segment counts as empty unless its label is in ``required``."""
    if segmentation_node.GetTransformNodeID() != volume_node.GetTransformNodeID():
        raise SegmentationError(f"'{segmentation_node.GetName()}' and '{volume_node.GetName()}' are under different "
                                "transforms; put the segmentation under the CT's transform (Data module) first.")
    reference = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(volume_node)
    dims = volume_node.GetImageData().GetDimensions()
    labels = np.zeros(dims[::-1], dtype=np.uint8)
    used = set()
    for label in LABEL_PRIORITY:
        segment_id = _segment_for_label(segmentation_node, label)
        if segment_id is None:
            if label in set(required):
                raise SegmentationError(f"'{segmentation_node.GetName()}' has no '{LABEL_NAMES[label]}' segment.")
            continue
        used.add(segment_id)
        labels[segment_mask(segmentation_node, segment_id, reference)] = label
    others = [segmentation_node.GetSegmentation().GetSegment(s).GetName()
              for s in segment_ids(segmentation_node) if s not in used]
    return labels, others


def segment_volumes_ml(segmentation_node: object) -> dict[str, float]:
    """Volume in ml of each segment, by segment name, from its binary labelmap."""
    volumes = {}
    segmentation = segmentation_node.GetSegmentation()
    for segment_id in segment_ids(segmentation_node):
        labelmap = slicer.vtkOrientedImageData()
        segmentation_node.GetBinaryLabelmapRepresentation(segment_id, labelmap)
        count = 0
        if not labelmap.IsEmpty():
            count = int(np.count_nonzero(numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())))
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        voxel_mm3 = abs(np.linalg.det(np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])))
        volumes[segmentation.GetSegment(segment_id).GetName()] = count * voxel_mm3 / 1000.0
    return volumes
