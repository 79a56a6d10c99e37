"""The page: trame-slicer's axial, coronal, sagittal and 3D views beside the KidneyTumorSeg controls.

Thin: the actions live in ``session`` (CT, segmentation, export, fine-tuning, models) and ``editing``
(segment editor tools); this module creates the views (before anything touches an effect: see
``effects_fix``), lays out the controls and wires them to those actions.
"""

from __future__ import annotations

import logging
from typing import Any

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_slicer.core import LayoutManager, SlicerApp
from trame_slicer.rca_view import register_rca_factories
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

from kidneytumorseg_web.editing import Editing
from kidneytumorseg_web.serving import TOKEN_HEADER, guard_middleware
from kidneytumorseg_web.session import Session, WebConfig
from kidneytumorseg_web.uploads import UPLOAD_ROUTE, make_upload_handler, upload_script

LOGGER = logging.getLogger("kidneytumorseg_web")

TOOLS = (("none", "mdi-cursor-default", "View"), ("paint", "mdi-brush", "Paint"), ("erase", "mdi-eraser", "Erase"),
         ("scissors", "mdi-content-cut", "Scissors"), ("islands", "mdi-island", "Islands"))
SCISSORS_ITEMS = [{"title": t, "value": v} for v, t in (("erase_inside", "Erase inside"), ("erase_outside",
                  "Erase outside"), ("fill_inside", "Fill inside"), ("fill_outside", "Fill outside"))]
ISLAND_ITEMS = [{"title": "Keep the largest island", "value": "keep_largest"},
                {"title": "Remove small islands", "value": "remove_small"}]


def quad_layout() -> Layout:
    """Axial | 3D over sagittal | coronal."""
    return Layout(LayoutDirection.Vertical, [
        Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.threed_view()]),
        Layout(LayoutDirection.Horizontal, [ViewLayoutDefinition.sagittal_view(),
                                            ViewLayoutDefinition.coronal_view()]),
    ])


class WebApp:
    """The server side of the page: one Slicer scene, its views, the session and the editor."""

    def __init__(self, server: Any, config: WebConfig, token: str | None = None, bound_loopback: bool = True) -> None:
        self.server, self.config = server, config
        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, server)
        # The views first: an effect touched before they exist gets view-less pipelines (effects_fix).
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, server)
        self.layout_manager.register_layout("quad", quad_layout())
        self.layout_manager.set_layout("quad")
        for view in self.slicer_app.view_manager.get_views():
            view.render_window().SetMultiSamples(0)  # 8x MSAA doubles the frame time of software rendering
        window = self.slicer_app.view_manager.get_views()[0].render_window()
        LOGGER.info("Rendering off screen with %s", window.GetClassName())
        self.session = Session(server, self.slicer_app, config)
        self.editing = Editing(server, self.slicer_app, self.session)
        self.session.on_segmentation = self._show_segmentation
        server.state.trame__title = "KidneyTumorSeg"
        self._register_triggers()
        self._bind_http(token, bound_loopback)
        self.build_ui()
        server.controller.on_server_exited.add(lambda **_: self.session.shutdown())

    def _show_segmentation(self, segmentation_node: Any, volume_node: Any) -> None:
        self.editing.attach(segmentation_node, volume_node)
        if segmentation_node is not None:
            for view in self.slicer_app.view_manager.get_threed_views():
                view.reset_view()  # frame the kidneys' surfaces

    def _register_triggers(self) -> None:
        """Named triggers: the page calls them as trigger('kts_...'); every argument is checked server-side."""
        s, e = self.session, self.editing
        for name, action in {"open_sample": s.open_sample, "open_server_file": s.open_server_file,
                             "refresh_files": s.refresh_files, "segment": s.segment, "cancel": s.cancel,
                             "export": s.export, "finetune": s.finetune, "set_effect": e.set_effect,
                             "apply_islands": e.apply_islands, "undo": e.undo, "redo": e.redo}.items():
            self.server.trigger(f"kts_{name}")(action)

    def _bind_http(self, token: str | None, bound_loopback: bool) -> None:
        upload_dir = self.session.work_dir / "uploads"
        handler = make_upload_handler(upload_dir, self.config.max_upload_bytes, self.session.open_upload)

        def bind(wslink_server: Any) -> None:
            wslink_server.app.middlewares.append(guard_middleware(token, bound_loopback, (UPLOAD_ROUTE,)))
            wslink_server.app.router.add_post(UPLOAD_ROUTE, handler)

        self.server.controller.on_server_bind.add(bind)

    # -- the page -----------------------------------------------------------------------------------------
    def build_ui(self) -> None:
        with SinglePageWithDrawerLayout(self.server, full_height=True) as layout:
            layout.title.set_text("KidneyTumorSeg")
            layout.footer.hide()
            layout.drawer.width = 380
            client.Script(upload_script(TOKEN_HEADER))
            with layout.toolbar:
                v3.VSpacer()
                html.Span("{{ volume_name }}", id="volume-name", classes="mr-4 text-subtitle-1")
            with layout.drawer, html.Div(classes="pa-3 d-flex flex-column ga-2", style="font-size: 14px"):
                self._messages()
                self._open_section()
                self._segment_section()
                self._edit_section()
                self._export_section()
                self._finetune_section()
            with layout.content, html.Div(style="position: relative; height: 100%;", id="views"):
                self.layout_manager.initialize_layout_grid(layout)

    @staticmethod
    def _heading(text: str) -> None:
        v3.VDivider()
        html.Div(text, classes="text-overline")

    def _messages(self) -> None:
        html.Div("{{ message }}", id="message", v_show="message", classes="text-body-2")
        v3.VAlert(text=("error",), id="error", v_if="error", type="error", density="compact", closable=True,
                  click_close="error = ''")
        v3.VAlert(text=("upload_error",), id="upload-error", v_if="upload_error", type="warning",
                  density="compact")

    def _open_section(self) -> None:
        self._heading("CT")
        with html.Div(classes="d-flex ga-2 align-center"):
            v3.VBtn("Load sample", id="btn-sample", v_if="has_sample", size="small", variant="tonal",
                    click="trigger('kts_open_sample')", disabled=("segment_running",))
        v3.VFileInput(label="Upload a CT (.nii.gz, .nrrd, .mha)", id="upload", key=("upload_key",), density="compact",
                      hide_details=True, prepend_icon="mdi-upload", loading=("uploading", False),
                      accept=".nii,.gz,.nrrd,.nhdr,.mha,.mhd", disabled=("uploading || segment_running",),
                      change="window.ktsUpload($event.target.files[0], max_upload_bytes)")
        with html.Div(v_if="has_data_folders", classes="d-flex ga-2 align-center"):
            v3.VSelect(items=("files",), v_model=("file_key", None), label="Server folders", id="server-file",
                       density="compact", hide_details=True, no_data_text="No CT files in the data folders")
            v3.VBtn("Open", id="btn-open-file", size="small", variant="tonal", disabled=("!file_key",),
                    click="trigger('kts_open_server_file', [file_key])")
            v3.VBtn(icon="mdi-refresh", size="small", variant="text", click="trigger('kts_refresh_files')")

    def _segment_section(self) -> None:
        self._heading("Segment")
        v3.VSelect(items=("models", []), v_model=("model", None), label="Model version", id="model",
                   density="compact", hide_details=True, disabled=("segment_running || finetune_running",))
        with html.Div(classes="d-flex ga-2 align-center"):
            with v3.VBtnToggle(v_model=("quality",), mandatory=True, density="compact", variant="outlined",
                               divided=True, disabled=("segment_running",)):
                for quality in ("fast", "default", "best"):
                    v3.VBtn(quality, value=quality, id=f"quality-{quality}", size="small")
            v3.VSpacer()
            v3.VBtn("Segment", id="btn-segment", v_if="!segment_running", color="primary", size="small",
                    disabled=("!volume_name",),
                    click="volumes.length ? (confirm_replace = true) : trigger('kts_segment', [model, quality])")
            v3.VBtn("Cancel", id="btn-cancel-segment", v_else=True, color="warning", size="small",
                    click="trigger('kts_cancel', ['segment'])")
        v3.VProgressLinear(model_value=("segment_fraction",), v_show="segment_running", id="segment-progress",
                           height=8, color="primary")
        html.Div("{{ segment_text }}", id="segment-text", v_show="segment_running", classes="text-caption")
        with v3.VDialog(v_model=("confirm_replace", False), max_width=420), v3.VCard():
            v3.VCardText("Segmenting again replaces the current segments, with your edits. Export the "
                         "correction first if you want to keep it.")
            with v3.VCardActions():
                v3.VSpacer()
                v3.VBtn("Keep", click="confirm_replace = false")
                v3.VBtn("Replace", id="btn-confirm-replace", color="primary",
                        click="confirm_replace = false; trigger('kts_segment', [model, quality])")
        with v3.VRadioGroup(v_model=("active_segment", None), density="compact", hide_details=True,
                            v_if="volumes.length", id="segments"), \
                v3.VRadio(v_for="v in volumes", key="v.id", value=("v.id",), id=("'seg-' + v.id",)), \
                v3.Template(v_slot_label=True):
            html.Span(style=("{background: v.color, width: '12px', height: '12px', marginRight: '8px'}",))
            html.Span("{{ v.name }}", style="width: 60px")
            html.Span("{{ v.text }}", id=("'vol-' + v.id",))

    def _edit_section(self) -> None:
        self._heading("Edit (active segment above)")
        with html.Div(classes="d-flex flex-wrap ga-1"):
            for name, icon, title in TOOLS:
                v3.VBtn(title, id=f"btn-{name}", prepend_icon=icon, size="small",
                        variant=(f"effect === '{name}' ? 'flat' : 'tonal'",),
                        color=(f"effect === '{name}' ? 'primary' : undefined",),
                        disabled=("!volumes.length",), click=f"trigger('kts_set_effect', ['{name}'])")
        v3.VSlider(v_model=("brush_mm",), v_show="effect === 'paint' || effect === 'erase'", min=1, max=50, step=1,
                   label="Brush (mm)", thumb_label=True, density="compact", hide_details=True)
        v3.VSelect(v_model=("scissors_mode",), items=("scissors_items", SCISSORS_ITEMS), v_show="effect === 'scissors'",
                   label="Draw an outline in a view to", density="compact", hide_details=True)
        with html.Div(v_if="effect === 'islands'", classes="d-flex ga-2 align-center"):
            v3.VSelect(v_model=("island_mode",), items=("island_items", ISLAND_ITEMS), density="compact",
                       hide_details=True)
            v3.VTextField(v_model_number=("min_island_voxels",), v_show="island_mode === 'remove_small'",
                          type="number", label="Min. voxels", density="compact", hide_details=True,
                          style="max-width: 100px")
            v3.VBtn("Apply", id="btn-islands-apply", size="small", click="trigger('kts_apply_islands')")
        with html.Div(classes="d-flex ga-1 align-center"):
            v3.VBtn(icon="mdi-undo", id="btn-undo", size="small", variant="text", disabled=("!can_undo",),
                    click="trigger('kts_undo')")
            v3.VBtn(icon="mdi-redo", id="btn-redo", size="small", variant="text", disabled=("!can_redo",),
                    click="trigger('kts_redo')")
            v3.VSwitch(v_model=("show_3d",), label="3D surfaces", density="compact", hide_details=True,
                       color="primary")

    def _export_section(self) -> None:
        self._heading("Export correction")
        with html.Div(classes="d-flex ga-2"):
            v3.VTextField(v_model=("case_id",), label="Case id", id="case-id", density="compact", hide_details=True)
            v3.VTextField(v_model=("note",), label="Note", id="note", density="compact", hide_details=True)
        v3.VCheckbox(v_model=("overwrite",), label="Replace an earlier export with this case id", id="overwrite",
                     density="compact", hide_details=True)
        v3.VBtn("Export correction", id="btn-export", size="small", variant="tonal",
                disabled=("!volumes.length || segment_running",),
                click="trigger('kts_export', [case_id, note, overwrite])")
        html.Div("{{ export_message }}", id="export-message", classes="text-caption")

    def _finetune_section(self) -> None:
        self._heading("Fine-tune")
        html.Div("{{ corrections.length }} correction(s) in {{ corrections_dir }}", id="corrections",
                 classes="text-caption")
        with html.Div(classes="d-flex ga-2 align-center"):
            v3.VBtn("Fine-tune", id="btn-finetune", v_if="!finetune_running", size="small", variant="tonal",
                    disabled=("corrections.length < 2 || !model",), click="trigger('kts_finetune', [model])")
            v3.VBtn("Cancel fine-tuning", id="btn-cancel-finetune", v_else=True, color="warning", size="small",
                    click="trigger('kts_cancel', ['finetune'])")
            html.Span("needs two exported corrections", v_if="corrections.length < 2", classes="text-caption")
        v3.VProgressLinear(model_value=("finetune_fraction",), v_show="finetune_running", id="finetune-progress",
                           height=8, color="secondary")
        html.Div("{{ finetune_text }}", id="finetune-text", v_show="finetune_running", classes="text-caption")
