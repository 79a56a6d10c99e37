"""The segment editor of the page: trame-slicer's effects on the segmentation the engine produced.

Paint, Erase (brush in millimetres), Scissors (erase / fill inside / outside a drawn outline), Islands
(keep the largest, remove small ones), undo / redo and the 3D surfaces. Every edit updates the volumes in ml.
"""

from __future__ import annotations

import logging
from typing import Any

from trame_slicer.segmentation import (
    BrushDiameterMode,
    ScissorsEffectFillMode,
    SegmentationEffectErase,
    SegmentationEffectIslands,
    SegmentationEffectNoTool,
    SegmentationEffectPaint,
    SegmentationEffectScissors,
    SegmentationIslandsMode,
)
from undo_stack import UndoStack

from kidneytumorseg_web.effects_fix import activate_effect, repair_effect_pipelines
from kidneytumorseg_web.session import Session, reported

LOGGER = logging.getLogger("kidneytumorseg_web")

EFFECTS: dict[str, type] = {
    "none": SegmentationEffectNoTool,
    "paint": SegmentationEffectPaint,
    "erase": SegmentationEffectErase,
    "scissors": SegmentationEffectScissors,
    "islands": SegmentationEffectIslands,
}
SCISSORS_MODES = {
    "erase_inside": ScissorsEffectFillMode.ERASE_INSIDE,
    "erase_outside": ScissorsEffectFillMode.ERASE_OUTSIDE,
    "fill_inside": ScissorsEffectFillMode.FILL_INSIDE,
    "fill_outside": ScissorsEffectFillMode.FILL_OUTSIDE,
}
ISLAND_MODES = {
    "keep_largest": SegmentationIslandsMode.KEEP_LARGEST_ISLAND,
    "remove_small": SegmentationIslandsMode.REMOVE_SMALL_ISLANDS,
}
# A brush in mm: the default (a share of the "screen") depends on the fake screen size of off-screen
# rendering (1920x1080 with EGL, 1280x1024 with OSMesa), so strokes would differ between machines.
DEFAULT_BRUSH_MM = 10.0


class Editing:
    """Binds the page's editor controls to trame-slicer's SegmentationEditor."""

    def __init__(self, server: Any, slicer_app: Any, session: Session) -> None:
        self.server, self.app, self.session = server, slicer_app, session
        self.state = server.state
        self.editor = slicer_app.segmentation_editor
        self.undo_stack = UndoStack(undo_limit=10)
        self.editor.set_undo_stack(self.undo_stack)
        # Only now, after the app created its views, may effects (and their parameter nodes) exist.
        repair_effect_pipelines(slicer_app)
        s = self.state
        s.effect, s.brush_mm, s.active_segment, s.show_3d = "none", DEFAULT_BRUSH_MM, None, True
        s.scissors_mode, s.island_mode, s.min_island_voxels = "erase_inside", "keep_largest", 1000
        s.segment_ids, s.can_undo, s.can_redo, s.edits = [], False, False, 0
        self._set_brush(DEFAULT_BRUSH_MM)
        self.editor.segmentation_modified.connect(self._on_modified)
        s.change("brush_mm")(lambda brush_mm, **_: self._set_brush(brush_mm))
        s.change("active_segment")(lambda active_segment, **_: self._set_active_segment(active_segment))
        s.change("show_3d")(lambda show_3d, **_: self._set_show_3d(show_3d))
        s.change("scissors_mode")(lambda scissors_mode, **_: self._set_scissors_mode(scissors_mode))

    def attach(self, segmentation_node: Any, volume_node: Any) -> None:
        """Edit ``segmentation_node`` on ``volume_node`` (None: nothing to edit)."""
        if segmentation_node is None:
            self.set_effect("none")
            self.state.update({"segment_ids": [], "active_segment": None})
            return
        self.editor.set_active_segmentation(segmentation_node, volume_node)
        self.editor.set_surface_representation_enabled(bool(self.state.show_3d))
        ids = list(self.editor.get_segment_ids())
        active = self.state.active_segment if self.state.active_segment in ids else ("tumor" if "tumor" in ids
                                                                                    else (ids or [None])[0])
        self.state.update({"segment_ids": ids, "active_segment": active, "effect": "none"})
        self._set_active_segment(active)
        self.undo_stack.clear()
        self._undo_state()

    @reported
    def set_effect(self, name: str) -> None:
        if name not in EFFECTS:
            raise ValueError(f"Unknown tool '{name}'.")
        if name != "none" and self.session.segmentation_node is None:
            self.state.effect = "none"
            raise ValueError("Segment the CT first; the tools edit its kidney, tumor and cyst segments.")
        if name == "scissors":
            self._set_scissors_mode(self.state.scissors_mode)
        try:
            activate_effect(self.app, EFFECTS[name])
        finally:
            active = self.editor.active_effect
            self.state.effect = next((k for k, t in EFFECTS.items() if isinstance(active, t)), "none")

    @reported
    def apply_islands(self) -> None:
        if self.session.segmentation_node is None:
            raise ValueError("Segment the CT first.")
        if self.state.island_mode not in ISLAND_MODES:
            raise ValueError(f"Unknown islands operation '{self.state.island_mode}'.")
        try:
            minimum = max(1, int(self.state.min_island_voxels or 1))
        except (TypeError, ValueError):
            raise ValueError("The minimum island size must be a whole number of voxels.") from None
        effect = self.editor.get_effect(SegmentationEffectIslands)
        effect.set_minimum_island_size(minimum)
        effect.apply(ISLAND_MODES[self.state.island_mode])

    @reported
    def undo(self) -> None:
        if self.undo_stack.can_undo():
            self.undo_stack.undo()
        self._undo_state()

    @reported
    def redo(self) -> None:
        if self.undo_stack.can_redo():
            self.undo_stack.redo()
        self._undo_state()

    # -- internals ----------------------------------------------------------------------------------------
    def _on_modified(self, *_: Any) -> None:
        if self.session.segmentation_node is None:
            return
        with self.state:
            try:
                self.session.update_volumes()
            except Exception:  # noqa: BLE001 - a display update must not break the edit itself
                LOGGER.exception("Updating the volumes failed")
            self.state.edits += 1
            self._undo_state()

    def _undo_state(self) -> None:
        self.state.can_undo, self.state.can_redo = self.undo_stack.can_undo(), self.undo_stack.can_redo()

    def _set_brush(self, diameter_mm: Any) -> None:
        try:
            diameter = min(100.0, max(0.5, float(diameter_mm)))
        except (TypeError, ValueError):
            return
        for effect_type in (SegmentationEffectPaint, SegmentationEffectErase):
            self.editor.get_effect(effect_type).set_brush_diameter(diameter, BrushDiameterMode.Absolute)

    def _set_active_segment(self, segment_id: str | None) -> None:
        if segment_id and self.editor.active_segmentation is not None and segment_id in self.editor.get_segment_ids():
            self.editor.set_active_segment_id(segment_id)

    def _set_show_3d(self, show: Any) -> None:
        if self.editor.active_segmentation is not None:
            self.editor.set_surface_representation_enabled(bool(show))

    def _set_scissors_mode(self, mode: str) -> None:
        if mode in SCISSORS_MODES:
            self.editor.get_effect(SegmentationEffectScissors).set_fill_mode(SCISSORS_MODES[mode])
