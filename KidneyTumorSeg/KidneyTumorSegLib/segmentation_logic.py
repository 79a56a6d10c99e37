"""Segment a CT volume node with the engine in a background process; the result as editable segments.

    logic = SegmentationLogic(scene)
    job = logic.start(volume_node)           # returns at once; the engine runs in its own process
    ...                                       # poll: job.poll(), job.stage, job.fraction, job.status_text
    segmentation_node = job.wait()            # or block until done (console, tests)

Nothing in the scene changes until the engine has finished: a cancelled or failed run leaves it as it was.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_store import ModelStore
from KidneyTumorSegLib.background_job import BackgroundJob, JobError
from KidneyTumorSegLib.engine_command import EngineCommand
from KidneyTumorSegLib.engine_process import EngineProcess
from KidneyTumorSegLib.segments import (
    DRAFT_SHA256_ATTRIBUTE,
    MODEL_ATTRIBUTE,
    put_result,
    segment_volumes_ml,
)
from KidneyTumorSegLib.volume_nodes import InputError, check_ct_volume, volume_to_image

LOGGER = logging.getLogger("KidneyTumorSegLib")

DEFAULT_MODEL = "kits-demo"
QUALITIES = ("fast", "default", "best")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class SegmentationResult:
    """What a finished run gives: the segmentation node, its volumes in ml and the model that made it."""

    segmentation_node: Any
    volumes_ml: dict[str, float]
    model: str
    seconds: float | None = None


class SegmentationLogic:
    """Volume node -> engine process -> segmentation node. Collaborators are injected for tests and the web."""

    def __init__(self, scene: Any, store: ModelStore | None = None, command: EngineCommand | None = None,
                 process_factory: Callable[..., EngineProcess] = EngineProcess,
                 temp_root: str | Path | None = None) -> None:
        self.scene = scene
        self.store = store or ModelStore.default()
        self.command = command or EngineCommand(models_dir=self.store.user_dir)
        self.process_factory = process_factory
        self.temp_root = temp_root

    def resolve_model(self, model: str | None) -> str:
        """``name@version`` of the installed package ``model`` names (newest version when none is given)."""
        spec = model or DEFAULT_MODEL
        try:
            return self.store.find(spec).spec
        except KidneyTumorSegError as error:
            raise InputError(f"The model '{spec}' is not installed (any more): {error} Choose another model in "
                             "the Models section, or import the package again.") from error

    def start(self, volume_node: Any, model: str | None = None, device: str = "auto", quality: str = "default",
              segmentation_node: Any | None = None, replace: bool = False) -> BackgroundJob:
        """Check the input, write it for the engine and start the engine; the job to poll or wait on.

        The result goes into a new segmentation node unless ``replace`` is true and ``segmentation_node`` is
        given (then its segments are replaced: the previous AI result is overwritten only when asked)."""
        check_ct_volume(volume_node)
        if quality not in QUALITIES:
            raise InputError(f"Unknown quality '{quality}'; choose one of {', '.join(QUALITIES)}.")
        if device not in DEVICES:
            raise InputError(f"Unknown device '{device}'; choose one of {', '.join(DEVICES)}.")
        spec = self.resolve_model(model)
        target = segmentation_node if replace else None
        work = Path(tempfile.mkdtemp(prefix="KidneyTumorSeg-", dir=self.temp_root))
        try:
            image_path = work / "input.nrrd"
            sitk.WriteImage(volume_to_image(volume_node), str(image_path))  # uncompressed: fast, lossless
        except (OSError, RuntimeError) as error:
            shutil.rmtree(work, ignore_errors=True)
            raise InputError(f"Could not write the CT for the engine to {work} ({error}). Free disk space in the "
                             "temporary folder and try again.") from error
        labels_path = work / "labels.nii.gz"
        argv = self.command.predict(image_path, labels_path, spec, device=device, quality=quality)
        process = self.process_factory(argv, env=self.command.environment())

        def finish(results: list[dict[str, Any]]) -> SegmentationResult:
            return self._take_result(results[-1], volume_node, spec, target)

        job = BackgroundJob(process, finish, description="segmentation",
                            cleanup=lambda: shutil.rmtree(work, ignore_errors=True))
        process.start()
        LOGGER.info("Segmenting '%s' with %s (%s, %s quality)", volume_node.GetName(), spec, device, quality)
        return job

    def segment(self, volume_node: Any, model: str | None = None, device: str = "auto", quality: str = "default",
                segmentation_node: Any | None = None, replace: bool = False,
                progress: Callable[[str, float], None] | None = None,
                timeout: float | None = None) -> SegmentationResult:
        """Blocking form of ``start``: the result, or JobError / JobCancelled / InputError with the reason."""
        job = self.start(volume_node, model, device, quality, segmentation_node, replace)
        return job.wait(progress=progress, timeout=timeout)

    def _take_result(self, event: dict[str, Any], volume_node: Any, spec: str,
                     target: Any | None) -> SegmentationResult:
        segmentation_file = Path(str(event.get("segmentation", "")))
        labels_file = Path(str(event.get("labels", "")))
        if not segmentation_file.is_file() or not labels_file.is_file():
            raise JobError(f"The engine reported a result but its files are missing ({segmentation_file}); "
                           "the temporary folder may have been cleaned. Segment again.")
        if self.scene.GetNodeByID(volume_node.GetID()) is None:
            raise JobError(f"The input volume '{volume_node.GetName()}' was removed from the scene during the run; "
                           "nothing was added.")
        draft_sha256 = hashlib.sha256(labels_file.read_bytes()).hexdigest()
        model = str(event.get("model") or spec)
        node = put_result(self.scene, volume_node, segmentation_file, target=target,
                          attributes={MODEL_ATTRIBUTE: model, DRAFT_SHA256_ATTRIBUTE: draft_sha256})
        volumes = segment_volumes_ml(node)
        LOGGER.info("Segmented '%s': %s", volume_node.GetName(),
                    ", ".join(f"{name} {ml:.1f} ml" for name, ml in volumes.items()))
        return SegmentationResult(node, volumes, model, event.get("seconds"))
