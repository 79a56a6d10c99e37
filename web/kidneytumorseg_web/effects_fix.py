"""The Paint snag of trame-slicer 2.0.0, repaired in our code (no patched package).

Symptom: pressing Paint (or Erase, Scissors) raises ``AttributeError: 'NoneType' object has no attribute
'paint_interaction_stopped'``, and every later effect switch fails with ``'NoneType' object has no attribute
'is_painting'``: the editor is stuck.

Cause: ``SegmentationEditor._try_create_effect_pipeline`` is the LayerDM pipeline creator; it does
``pipeline.SetView(view_manager.get_view(view_node))``. When an effect's parameter node is already in the
scene while a view is being created, LayerDM creates that view's pipeline from inside the view's constructor
(``SliceView.__init__`` -> ``set_scene`` -> ``SetMRMLDisplayableNode``). At that moment the view factory has
not stored the view yet (``IViewFactory.create_view`` does ``self._views[tag] = self._create_view(...)``), so
``get_view()`` returns None and the pipeline keeps no view. ``SetActive(True)`` then creates no widget, and
the next line dereferences it. trame-slicer's own ``SegmentationApp`` hides this because its file loader
clears the scene first; server-side loading (our sample, data folders, the engine's result) does not.

Repair, two parts: (1) order: the app creates its layout's views before anything touches an effect
(``SegmentationEditor.get_effect`` adds the parameter node); (2) ``repair_effect_pipelines`` gives every
view-less pipeline its view, after the views exist and again before each effect is activated, so a later
layout, a cleared scene or an upstream change in the order cannot bring the snag back. ``pipeline._view`` is
the one private attribute read; the repair goes through the public ``SetView``.
"""

from __future__ import annotations

import logging
from typing import Any

LOGGER = logging.getLogger("kidneytumorseg_web")


def repair_effect_pipelines(slicer_app: Any) -> int:
    """Give each segment-editor effect pipeline created without its view that view; how many were repaired."""
    editor = slicer_app.segmentation_editor
    view_manager = slicer_app.view_manager
    repaired = 0
    for effect_type in list(getattr(editor, "builtin_effects", [])):
        effect = editor.get_effect(effect_type)
        for reference in list(getattr(effect, "pipelines", []) if effect is not None else []):
            pipeline = reference()
            if pipeline is None or getattr(pipeline, "_view", None) is not None:
                continue
            view_node = pipeline.GetViewNode()
            view = view_manager.get_view(view_node) if view_node is not None else None
            if view is not None:
                pipeline.SetView(view)
                repaired += 1
    if repaired:
        LOGGER.info("Gave %d segment-editor effect pipelines their view (trame-slicer 2.0.0 snag)", repaired)
    return repaired


def activate_effect(slicer_app: Any, effect_type: type) -> None:
    """Activate ``effect_type`` in the segment editor, repairing view-less pipelines first.

    Raises RuntimeError with what to do if activation still fails; the editor is then left with no effect
    active (not stuck half-way)."""
    editor = slicer_app.segmentation_editor
    repair_effect_pipelines(slicer_app)
    try:
        editor.set_active_effect_type(effect_type)
    except Exception as error:  # noqa: BLE001 - any failure inside trame-slicer reads the same to the user
        LOGGER.exception("Activating %s failed", effect_type.__name__)
        try:
            editor.deactivate_effect()
        except Exception:  # noqa: BLE001
            editor._active_effect = None  # the stuck state: forget the half-activated effect
        raise RuntimeError(f"The {effect_type.__name__} tool could not start ({error}); reload the page, or "
                           "restart the server if it persists.") from error
