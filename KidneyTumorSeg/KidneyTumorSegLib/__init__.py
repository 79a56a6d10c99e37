"""MRML logic of the KidneyTumorSeg module (no Qt), and the two calls for the Slicer Python console.

    import KidneyTumorSegLib
    volume = slicer.util.getNode("CT")
    segmentation = KidneyTumorSegLib.segment_volume(volume)                     # blocks; returns the node
    KidneyTumorSegLib.export_correction(volume, segmentation, "~/KidneyTumorSeg/corrections", note="tumor fixed")

The module's widget, the web front-end and these calls share the same logic classes:
``SegmentationLogic`` (background engine run -> segmentation node), ``export_correction``,
``FinetuneLogic`` (corrections -> a new model version).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from KidneyTumorSegLib.corrections import CaseExistsError, ExportedCase, ExportError, export_correction

__all__ = ["CaseExistsError", "ExportError", "ExportedCase", "export_correction", "segment_volume"]


def segment_volume(volume_node: Any, model: str | None = None, quality: str = "default", device: str = "auto",
                   segmentation_node: Any | None = None, progress: Callable[[str, float], None] | None = None,
                   timeout: float | None = None) -> Any:
    """Segment ``volume_node`` and return the new segmentation node (kidney / tumor / cyst segments).

    Blocks until the engine has finished (it runs in its own process); ``progress(stage, fraction)`` is called
    as it advances. Given ``segmentation_node``, its segments are replaced instead. Raises InputError for
    an unusable input, JobError when the run fails (the scene is then unchanged)."""
    from KidneyTumorSegLib.segmentation_logic import SegmentationLogic

    logic = SegmentationLogic(volume_node.GetScene())
    result = logic.segment(volume_node, model=model, device=device, quality=quality,
                           segmentation_node=segmentation_node, replace=segmentation_node is not None,
                           progress=progress, timeout=timeout)
    return result.segmentation_node
