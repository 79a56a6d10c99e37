"""The state of one web front-end: the open CT, its segmentation, the background jobs, the model choice.

Everything goes through the module's MRML logic (KidneyTumorSegLib) on trame-slicer's own scene:
``SegmentationLogic`` runs the engine in its own process and ``FinetuneLogic`` the training package;
their jobs are polled from an asyncio task, so the server loop (which also carries the views' mouse events)
never waits on them. ``export_correction`` writes the corrections the fine-tuning reads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_store import ModelStore, default_bundled_dir
from kidneytumorseg_web.jobs import JobWatcher
from kidneytumorseg_web.paths import CT_SUFFIXES, DataFolders
from KidneyTumorSegLib.background_job import JobError
from KidneyTumorSegLib.corrections import ExportError, export_correction
from KidneyTumorSegLib.engine_command import EngineCommand
from KidneyTumorSegLib.finetune_logic import FinetuneLogic
from KidneyTumorSegLib.segmentation_logic import DEFAULT_MODEL, QUALITIES, SegmentationLogic
from KidneyTumorSegLib.segments import SegmentationError, register_segmentation_converters, segment_volumes_ml
from KidneyTumorSegLib.volume_nodes import InputError, check_ct_volume

LOGGER = logging.getLogger("kidneytumorseg_web")

# The sample ships beside the bundled models (KidneyTumorSeg/Resources), wherever the engine is installed.
SAMPLE_CT = default_bundled_dir().parent / "SampleData" / "kits-synthetic-00112" / "imaging.nii.gz"
# Errors whose message already says what to do: shown as they are.
EXPECTED_ERRORS = (InputError, ExportError, JobError, SegmentationError, KidneyTumorSegError, ValueError,
                   RuntimeError, OSError)


@dataclass
class WebConfig:
    """What the operator configured on the command line."""

    data_folders: DataFolders = field(default_factory=DataFolders)
    corrections_dir: Path = Path("~/KidneyTumorSeg/corrections").expanduser()
    work_dir: Path | None = None  # uploads and fine-tuning runs; None: a temporary folder
    max_upload_bytes: int = 1024 * 1024 * 1024
    device: str = "auto"
    store: ModelStore = field(default_factory=ModelStore.default)
    engine_threads: int | None = None
    finetune_args: tuple[str, ...] = ()
    sample: Path | None = SAMPLE_CT


def reported(action: Callable[..., Any]) -> Callable[..., Any]:
    """Run a page action; an error becomes the page's error message (and the log), never a dead server."""

    @functools.wraps(action)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.state.error = ""
        try:
            return action(self, *args, **kwargs)
        except EXPECTED_ERRORS as error:
            LOGGER.warning("%s: %s", action.__name__, error)
            self.state.error = str(error)
        except Exception as error:  # noqa: BLE001 - the server must survive any single action
            LOGGER.exception("%s failed", action.__name__)
            self.state.error = f"Unexpected error ({type(error).__name__}: {error}); see the server log."
        return None

    return wrapper


class Session:
    """One CT at a time, one segmentation node, at most one segmentation and one fine-tuning job."""

    def __init__(self, server: Any, slicer_app: Any, config: WebConfig,
                 on_segmentation: Callable[[Any, Any], None] | None = None) -> None:
        register_segmentation_converters()
        self.server, self.app, self.config = server, slicer_app, config
        self.state = server.state
        self.scene = slicer_app.scene
        self.command = EngineCommand(models_dir=config.store.user_dir, threads=config.engine_threads)
        self.work_dir = Path(config.work_dir or tempfile.mkdtemp(prefix="kidneytumorseg-web-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.volume_node: Any = None
        self.segmentation_node: Any = None
        self.upload_path: Path | None = None
        self.on_segmentation = on_segmentation or (lambda node, volume: None)
        s = self.state
        s.error, s.message, s.volume_name, s.quality, s.has_sample = "", "", "", "default", bool(config.sample)
        s.files, s.file_key, s.has_data_folders = [], None, bool(config.data_folders)
        s.volumes, s.case_id, s.note, s.overwrite, s.corrections = [], "", "", False, []
        s.export_message, s.exports = "", 0
        s.max_upload_bytes, s.uploading, s.upload_error, s.upload_key = config.max_upload_bytes, False, "", 0
        s.corrections_dir = str(config.corrections_dir)
        s.segment_runs, s.models, s.model = 0, [], None
        self.jobs = JobWatcher(s, ("segment", "finetune"))
        self.refresh_files()
        self.refresh_models()
        self.refresh_corrections()

    # -- lists --------------------------------------------------------------------------------------------
    @reported
    def refresh_files(self) -> None:
        self.state.files = self.config.data_folders.list_files()

    @reported
    def refresh_models(self, select: str | None = None) -> None:
        entries = self.config.store.list()
        self.state.models = [{"title": f"{e.name} {e.version} ({e.source})", "value": e.spec} for e in entries]
        specs = [e.spec for e in entries]
        wanted = select or self.state.model
        if wanted not in specs:
            demo = [e.spec for e in entries if e.name == DEFAULT_MODEL]
            wanted = (demo or specs or [None])[-1]
        self.state.model = wanted

    def refresh_corrections(self) -> None:
        folder = self.config.corrections_dir
        self.state.corrections = sorted(p.parent.name for p in folder.glob("case_*/correction.json"))

    # -- opening a CT -------------------------------------------------------------------------------------
    @reported
    def open_sample(self) -> None:
        if self.config.sample is None or not self.config.sample.is_file():
            raise InputError("The bundled sample CT is not installed with this server; upload a CT instead.")
        self._open(self.config.sample, "kits-synthetic-00112")

    @reported
    def open_server_file(self, key: str) -> None:
        path = self.config.data_folders.resolve(key)  # PathRefused (a ValueError) for anything not offered
        self._open(path, _stem(path.name))

    async def open_upload(self, path: Path, name: str) -> str:
        """Called by the upload endpoint: open the stored file; the message for the page, or ValueError."""
        with self.state:
            self.state.error = ""
            try:
                self._open(path, _stem(name))
            except EXPECTED_ERRORS as error:
                self.state.error = str(error)
                raise ValueError(str(error)) from error
            if self.upload_path is not None and self.upload_path != path:
                self.upload_path.unlink(missing_ok=True)
            self.upload_path = path
            return self.state.message

    def _open(self, path: Path, name: str) -> None:
        if self.jobs.running("segment"):
            raise InputError("A segmentation is running; cancel it before opening another CT.")
        nodes = self.app.io_manager.load_volumes(str(path))
        if not nodes:
            raise InputError(f"{path.name} could not be read as a volume; open a NIfTI, NRRD or MetaImage CT.")
        volume = nodes[0]
        for extra in nodes[1:]:
            _remove_node(self.scene, extra)
        try:
            check_ct_volume(volume)
        except InputError:
            _remove_node(self.scene, volume)
            raise
        self._close_case()
        volume.SetName(name)
        self.volume_node = volume
        display = self.app.display_manager
        display.show_volume_in_slice_background(volume)
        display.show_volume_in_slice_foreground(None)
        display.reset_views()  # no CT volume rendering: on a CPU it takes seconds per 3D frame
        size = "x".join(str(d) for d in volume.GetImageData().GetDimensions())
        self.state.update({"volume_name": name, "case_id": name, "volumes": [], "export_message": "",
                           "upload_error": "", "message": f"Opened {name} ({size} voxels). Press Segment."})
        LOGGER.info("Opened %s from %s", name, path)

    def _close_case(self) -> None:
        for node in (self.segmentation_node, self.volume_node):
            if node is not None:
                _remove_node(self.scene, node)
        self.segmentation_node = self.volume_node = None
        self.on_segmentation(None, None)

    # -- segmentation -------------------------------------------------------------------------------------
    @reported
    def segment(self, model: str | None = None, quality: str | None = None) -> None:
        """``model`` and ``quality`` as the page shows them with the click (see :meth:`export`)."""
        if self.jobs.running("segment"):
            return
        if self.volume_node is None:
            raise InputError("Open a CT first: upload one, pick one from the server's folders, or load the sample.")
        self._adopt(model=model, quality=quality)
        if self.state.quality not in QUALITIES:
            raise InputError(f"Unknown quality '{self.state.quality}'; choose one of {', '.join(QUALITIES)}.")
        logic = SegmentationLogic(self.scene, store=self.config.store, command=self.command,
                                  temp_root=self.work_dir)
        job = logic.start(self.volume_node, self.state.model, self.config.device, self.state.quality,
                          segmentation_node=self.segmentation_node, replace=self.segmentation_node is not None)
        self.jobs.start("segment", job, self._segmented)

    @reported
    def _segmented(self, result: Any) -> None:
        self.segmentation_node = result.segmentation_node
        self.segmentation_node.SetName(f"{self.volume_node.GetName()} segmentation")
        self.on_segmentation(self.segmentation_node, self.volume_node)
        self.update_volumes(result.volumes_ml)
        seconds = f" in {result.seconds:.0f} s" if result.seconds else ""
        self.state.message = f"Segmented{seconds} with {result.model}: review and correct it, then export it."
        self.state.segment_runs += 1

    def update_volumes(self, volumes: dict[str, float] | None = None) -> None:
        if self.segmentation_node is None:
            self.state.volumes = []
            return
        volumes = segment_volumes_ml(self.segmentation_node) if volumes is None else volumes
        segmentation = self.segmentation_node.GetSegmentation()
        rows = []
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            color = "#" + "".join(f"{round(255 * c):02x}" for c in segment.GetColor())
            ml = float(volumes.get(segment.GetName(), 0.0))
            rows.append({"id": segmentation.GetNthSegmentID(index), "name": segment.GetName(), "color": color,
                         "ml": ml, "text": f"{ml:.2f} ml"})
        self.state.volumes = rows

    def _adopt(self, **values: Any) -> None:
        """Take the values the page sent with a click into the state (text only; None: keep the state's)."""
        for name, value in values.items():
            if value is None:
                continue
            if not isinstance(value, str):
                raise InputError(f"The page sent a {name} that is not text ({type(value).__name__}); reload the page.")
            self.state[name] = value

    # -- corrections and fine-tuning ----------------------------------------------------------------------
    @reported
    def export(self, case_id: str | None = None, note: str | None = None, overwrite: bool | None = None) -> None:
        """The page passes the fields it shows with the click: a field's own state update can reach the server
        after the click does (seen under load), and the export must use what the reader sees."""
        if self.segmentation_node is None:
            raise ExportError("There is no segmentation to export yet; open a CT and press Segment first.")
        case_id = self.state.case_id if case_id is None else case_id
        note = self.state.note if note is None else note
        overwrite = self.state.overwrite if overwrite is None else overwrite
        if not isinstance(case_id, (str, type(None))) or not isinstance(note, (str, type(None))):
            raise ExportError("The case id and the note must be text.")
        case = export_correction(self.volume_node, self.segmentation_node, self.config.corrections_dir,
                                 case_id=(case_id or "").strip() or None, note=note or "",
                                 overwrite=overwrite is True)
        voxels = ", ".join(f"{name} {count}" for name, count in case.record["voxels"].items())
        self.state.export_message = f"Exported {case.case_id} to {case.folder} (voxels: {voxels})."
        self.state.exports += 1
        self.state.overwrite = False
        self.refresh_corrections()

    @reported
    def finetune(self, model: str | None = None) -> None:
        """``model`` as the page shows it with the click (see :meth:`export`)."""
        self._adopt(model=model)
        if self.jobs.running("finetune"):
            return
        if not self.state.model:
            raise InputError("No model is installed to fine-tune; ask the operator to install one.")
        run_dir = Path(tempfile.mkdtemp(prefix="finetune-", dir=self.work_dir))
        job = FinetuneLogic(store=self.config.store, command=self.command).start(
            self.state.model, self.config.corrections_dir, work_dir=run_dir, device=self.config.device,
            extra_args=self.config.finetune_args)
        self.jobs.start("finetune", job, self._finetuned)

    @reported
    def _finetuned(self, result: Any) -> None:
        self.refresh_models(select=result.model)
        self.state.message = f"New version {result.model} selected: {result.summary(report=False)}"

    def cancel(self, kind: str) -> None:
        self.jobs.cancel(kind)

    def shutdown(self) -> None:
        """Stop running jobs (the server is exiting) and remove this session's temporary files."""
        self.jobs.stop_all()
        if self.config.work_dir is None:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _stem(name: str) -> str:
    for suffix in CT_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "CT"
    return name or "CT"


def _remove_node(scene: Any, node: Any) -> None:
    """Remove a displayable node with its display and storage nodes (MRML leaves those behind)."""
    related = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    with contextlib.suppress(AttributeError):
        related.append(node.GetStorageNode())
    scene.RemoveNode(node)
    for other in related:
        if other is not None and scene.IsNodePresent(other):
            scene.RemoveNode(other)
