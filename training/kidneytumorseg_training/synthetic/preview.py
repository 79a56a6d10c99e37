"""PNG montage of a CT with its mask outlined. The code lives in the engine (``kidneytumorseg.overlay``,
which ``kidneytumorseg predict --overlay`` uses too); this module re-exports it for the training package."""

from __future__ import annotations

from kidneytumorseg.overlay import PANEL_HEIGHT, WINDOW_LEVEL, render_preview, save_preview

__all__ = ["PANEL_HEIGHT", "WINDOW_LEVEL", "render_preview", "save_preview"]
