"""Fine-tune a model package on exported corrections in a background process -> a new registered version.

    job = FinetuneLogic().start("kits-demo@1.0.0", corrections_dir, check_cases_dir=earlier_cases)
    result = job.wait()          # FinetuneResult: result.model == "kits-demo@1.0.1", in the model store
    result.check_after           # Dice per KiTS region of the new version on the earlier cases (with check_cases_dir)

The training package's ``finetune`` does the work (``--progress json``); the old version stays installed and
unchanged. A cancelled run leaves the store as it was.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_store import ModelStore
from KidneyTumorSegLib.background_job import BackgroundJob, JobError
from KidneyTumorSegLib.engine_command import EngineCommand
from KidneyTumorSegLib.engine_process import EngineProcess
from KidneyTumorSegLib.volume_nodes import InputError

LOGGER = logging.getLogger("KidneyTumorSegLib")


@dataclass
class FinetuneResult:
    """The new version (``name@version``), where it lies, its report, the held-out metrics, and with check cases
    the old and new versions' Dice per KiTS region on them (empty without)."""

    model: str
    package: Path
    report: Path | None
    before: dict[str, Any]
    after: dict[str, Any]
    check_before: dict[str, Any] = field(default_factory=dict)
    check_after: dict[str, Any] = field(default_factory=dict)

    def summary(self, report: bool = True) -> str:
        """One line for the module and the web page: the Dice changes per KiTS region, held out and on the check
        cases, and (``report``) the report's path."""
        def changes(before: dict[str, Any], after: dict[str, Any]) -> str:
            return "; ".join(f"{region} {_number(before.get(region))} -> {_number(value)}"
                             for region, value in after.items())

        earlier = f" Earlier (check) cases Dice {changes(self.check_before, self.check_after)}." \
            if self.check_after else ""
        path = f" {self.report}" if report and self.report else ""
        return f"held-out Dice {changes(self.before, self.after) or 'n/a'}.{earlier}{path}"


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class FinetuneLogic:
    """Model package + corrections folder -> ``kidneytumorseg-train finetune`` in a worker process."""

    def __init__(self, store: ModelStore | None = None, command: EngineCommand | None = None,
                 process_factory: Callable[..., EngineProcess] = EngineProcess) -> None:
        self.store = store or ModelStore.default()
        self.command = command or EngineCommand(models_dir=self.store.user_dir)
        self.process_factory = process_factory

    def start(self, model: str, corrections_dir: str | Path, work_dir: str | Path | None = None,
              device: str = "auto", extra_args: tuple[str, ...] = (),
              check_cases_dir: str | Path | None = None, replay_dir: str | Path | None = None) -> BackgroundJob:
        """Check the model and the corrections, then start fine-tuning; the job to poll or wait on.

        ``check_cases_dir``: earlier cases with reference masks (KiTS or nnU-Net layout) that both versions also
        segment, to show what the fine-tune costs them (None or empty: none). ``replay_dir``: the original training
        data (a dataset folder, or the preprocessed folder), mixed in and distilled on so that the new version keeps
        what the old one knew (None or empty: none). ``extra_args`` go to the command as
        they are (e.g. ``("--epochs", "2")``), as a list, never a shell."""
        corrections = Path(corrections_dir).expanduser()
        cases = sorted(p for p in corrections.glob("case_*/correction.json")) if corrections.is_dir() else []
        if not cases:
            raise InputError(f"{corrections} holds no exported correction (case_*/correction.json). Export "
                             "corrections with 'Export correction' first, or choose the folder you exported to.")
        if len(cases) < 2:
            raise InputError(f"{corrections} holds one correction; fine-tuning needs at least two (one is held out "
                             "to measure the new version). Export another corrected case.")
        try:
            spec = self.store.find(model).spec
        except KidneyTumorSegError as error:
            raise InputError(f"The model '{model}' is not installed (any more): {error}") from error
        extra = tuple(extra_args)
        for option, folder, what in (
                ("--check-cases", check_cases_dir, "check-cases folder {} does not exist. Choose a folder of earlier "
                 "cases with reference masks (case_*/imaging.nii.gz and segmentation.nii.gz)"),
                ("--replay", replay_dir, "replay folder {} does not exist. Choose the original training data (a "
                 "dataset folder with reference masks, or its preprocessed folder)")):
            if folder is not None and str(folder).strip() not in ("", "."):
                path = Path(folder).expanduser()
                if not path.is_dir():
                    raise InputError(f"The {what.format(path)}, or clear the field to fine-tune without it.")
                extra += (option, str(path))
        work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="KidneyTumorSeg-finetune-"))
        argv = self.command.finetune(spec, corrections, work, device=device, extra=extra)
        process = self.process_factory(argv, env=self.command.environment())
        job = BackgroundJob(process, lambda results: self._take_result(results[-1]), description="fine-tuning")
        process.start()
        LOGGER.info("Fine-tuning %s on %d corrections in %s", spec, len(cases), corrections)
        return job

    def _take_result(self, event: dict[str, Any]) -> FinetuneResult:
        model = str(event.get("model", ""))
        try:
            entry = self.store.find(model)
        except KidneyTumorSegError as error:
            raise JobError(f"Fine-tuning reported the new version '{model}', but the model store does not hold it "
                           f"({error}). Check the store folder {self.store.user_dir}.") from error
        report = event.get("report")
        return FinetuneResult(entry.spec, Path(str(event.get("package") or entry.path)),
                              Path(str(report)) if report else None,
                              dict(event.get("before") or {}), dict(event.get("after") or {}),
                              dict(event.get("check_before") or {}), dict(event.get("check_after") or {}))
