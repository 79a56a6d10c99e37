"""``kidneytumorseg-train finetune``: fine-tune a model package on exported corrections -> a new package version.

The corrected cases are split into fine-tune and held-out cases; every segmenter member is trained further
from its packaged weights, old and new members are scored on the held-out cases, and the new version (by
default the next patch version) is imported into your model store beside the old one, with a report
(report.json, report.md) in the work folder and in the package. ``--check-cases DIR`` scores old and new members
on earlier cases as well: the held-out corrections show what the fine-tune gains, those what it costs.

Examples::

    kidneytumorseg-train finetune --model kits-demo@1.0.0 --corrections ~/KidneyTumorSeg/corrections
    kidneytumorseg-train finetune --model kits-demo --corrections exports --replay work/pre --epochs 10
    kidneytumorseg-train finetune --model kits-demo --corrections exports --check-cases earlier_cases
    kidneytumorseg predict --model kits-demo@1.0.1 -i ct.nii.gz -o labels.nii.gz

``--progress json`` speaks the engine's background-process protocol (kidneytumorseg.cli.json_lines): one JSON
object per line on stdout: ``progress`` (stage, fraction), ``log`` (level, message), then ``result`` (model,
name, version, package, report, held-out Dice per region before and after, and with ``--check-cases`` the
check cases' as ``check_before`` and ``check_after``), ``error`` (exit status 2) or
``cancelled`` (exit status 130). SIGTERM (or Ctrl-C) cancels: the store is left without the new version, the
work folder keeps what was done.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kidneytumorseg.cli import json_lines
from kidneytumorseg.cli.json_lines import CANCELLED_EXIT_CODE, ERROR_EXIT_CODE, PROGRESS_MODES
from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.model_store import ModelStore, StoreEntry, default_bundled_dir, default_user_dir
from kidneytumorseg_training import finetune_defaults as defaults
from kidneytumorseg_training.training_config import PRECISIONS

if TYPE_CHECKING:
    from kidneytumorseg_training.finetune import FinetuneResult

LOGGER = logging.getLogger("kidneytumorseg_training")
Progress = Callable[[str, float], None]
REGIONS = ("kidney_and_mass", "mass", "tumor")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``finetune`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser("finetune", help="fine-tune a model package on corrections (new version)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="NAME[@VERSION]",
                        help="package in the model store (default version: the newest)")
    parser.add_argument("--corrections", type=Path, required=True, metavar="DIR",
                        help="corrections exported by the Slicer module (case_<id>/ with correction.json)")
    parser.add_argument("--replay", type=Path, metavar="DIR",
                        help="original training data to mix in: a preprocessed folder (plans.json) made with the "
                             "package's spacing and normalisation, or a dataset folder")
    parser.add_argument("--replay-ratio", type=float, default=defaults.REPLAY_RATIO, metavar="R",
                        help=f"replayed cases per corrected training case (default {defaults.REPLAY_RATIO:g}: "
                             f"1 / (1 + R) of the patches come from the corrections)")
    parser.add_argument("--holdout", type=float, default=defaults.HOLDOUT,
                        help=f"fraction of the corrections held out to compare old and new (default "
                             f"{defaults.HOLDOUT:g})")
    parser.add_argument("--check-cases", type=Path, metavar="DIR",
                        help="earlier cases with reference masks (KiTS or nnU-Net layout) that the old and new "
                             "versions also segment, to show what the fine-tune costs them (in the report)")
    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=int, default=defaults.EPOCHS, help=f"epochs (default {defaults.EPOCHS})")
    schedule.add_argument("--iterations", type=int, default=defaults.ITERATIONS,
                          help=f"training steps per epoch (default {defaults.ITERATIONS})")
    schedule.add_argument("--lr", type=float, default=defaults.LEARNING_RATE,
                          help=f"initial learning rate (default {defaults.LEARNING_RATE:g})")
    schedule.add_argument("--optimizer", choices=["sgd", "adam"], default=defaults.OPTIMIZER,
                          help="adam (default; SGD at 1e-3 for a short schedule barely moves the weights, see "
                               "docs/training.md); sgd: Nesterov + poly decay")
    schedule.add_argument("--sample-dice", action="store_true",
                          help="Dice term per patch (default: over the whole batch, as the bundled members were "
                               "trained; fine-tune with the loss the parent was trained with)")
    schedule.add_argument("--hard-case-class", type=int, choices=(1, 2, 3), default=defaults.HARD_CASE_CLASS,
                          metavar="LABEL", help=f"oversample patches centred on this label (default "
                                                 f"{defaults.HARD_CASE_CLASS}: cyst, as the bundled members were "
                                                 f"trained; with --hard-case-fraction)")
    schedule.add_argument("--hard-case-fraction", type=float, default=defaults.HARD_CASE_FRACTION, metavar="F",
                          help=f"share of the patches centred on --hard-case-class (default "
                               f"{defaults.HARD_CASE_FRACTION:g}, as the bundled members were trained; 0 for a "
                               f"package trained without hard cases)")
    schedule.add_argument("--anchor-strength", type=float, default=defaults.ANCHOR_STRENGTH, metavar="S",
                          help=f"L2-SP: pull every weight back toward the parent's by S x (w - w_parent) each step, "
                               f"so the network forgets less (default {defaults.ANCHOR_STRENGTH:g} = off)")
    schedule.add_argument("--distill-weight", type=float, metavar="D",
                          help=f"on the replayed cases' patches, add D x KL(parent || network) to the loss, so the "
                               f"network keeps the parent's output on the original data (needs --replay; default "
                               f"{defaults.DISTILL_WEIGHT:g} with --replay, else off; 0 = off)")
    schedule.add_argument("--no-augmentation", action="store_true", help="train without data augmentation")
    schedule.add_argument("--average-with-parent", type=float, default=defaults.AVERAGE_FRACTION, metavar="A",
                          help=f"share of the fine-tuned weights in the new version: (1 - A) x parent + A x "
                               f"fine-tuned, which forgets less (WiSE-FT; default {defaults.AVERAGE_FRACTION:g}, "
                               f"1 = no averaging)")
    output = parser.add_argument_group("output")
    output.add_argument("--version", help="version of the new package (default: the next patch version)")
    output.add_argument("--store-dir", type=Path,
                        help="user model folder (default: $KIDNEYTUMORSEG_MODELS_DIR or the per-user data folder)")
    output.add_argument("--work-dir", type=Path,
                        help="preprocessed data, runs and report (default ./finetune_<name>_<version>)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                     help="auto: fp16 mixed precision on CUDA, bf16 on a CPU with native bfloat16 "
                          "(avx512_bf16 / amx_bf16), fp32 on other devices; the report records the one used")
    run.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    run.add_argument("--workers", type=int, default=1, help="data-loading worker processes (default 1)")
    run.add_argument("--progress", default="bar", choices=PROGRESS_MODES,
                     help="bar: log lines, and a progress bar when stderr is a terminal (default); json: the "
                          "background-process protocol on stdout; none: log lines only")
    parser.set_defaults(handler=run_command)
    return parser


class _Store(ModelStore):
    """The model store, importing the new version with SIGTERM held back: a cancel that comes during the
    import waits for it; once it is in, the run is reported as done, never as cancelled."""

    cancellation: json_lines.SigtermCancellation | None = None

    def import_package(self, source: str | os.PathLike[str], overwrite: bool = False) -> StoreEntry:
        if self.cancellation is None:
            return super().import_package(source, overwrite)
        with self.cancellation.held():
            entry = super().import_package(source, overwrite)
            self.cancellation.ignore_further()
        return entry


def run_command(args: argparse.Namespace) -> int:
    """Run the fine-tuning; log (or, with ``--progress json``, emit) the held-out Dice before and after and
    where the new version is."""
    json_mode = args.progress == "json"
    worker_checks, earlier_children = _WorkerChecks(), set(multiprocessing.active_children())
    with (json_lines.installed() if json_mode else contextlib.nullcontext(),
          json_lines.SigtermCancellation(on_cancel=worker_checks.quiet) as cancellation,
          _reporter(args.progress) as progress):
        store = _Store(default_bundled_dir(), args.store_dir or default_user_dir())
        store.cancellation = cancellation
        try:
            result = _finetune(args, store, progress)
        except KeyboardInterrupt as interrupt:  # SIGTERM (json_lines.Terminated) or Ctrl-C
            cancellation.ignore_further()
            _stop_children(interrupt, spare=earlier_children)
            worker_checks.restore()
            if not json_mode:
                raise  # the command line says "cancelled" and exits with 130
            json_lines.emit_cancelled()
            return CANCELLED_EXIT_CODE
        except KidneyTumorSegError as error:
            _stop_children(error, spare=earlier_children)
            if not json_mode:
                raise
            json_lines.emit_error(str(error))
            return ERROR_EXIT_CODE
        except Exception as error:
            _stop_children(error, spare=earlier_children)
            if json_mode:  # the traceback follows on stderr
                json_lines.emit_error(f"unexpected {type(error).__name__}: {error}; the traceback is on stderr. "
                                      f"Please report it with the command you ran.")
            raise
        cancellation.ignore_further()  # done and imported: a SIGTERM from here on changes nothing
        name = result.package_path.parent.name
        for region in REGIONS:
            before, after = result.before["regions"][region]["dice"], result.after["regions"][region]["dice"]
            LOGGER.info("held-out Dice %-15s before %s  after %s", region, _number(before), _number(after))
        if result.check_before is not None and result.check_after is not None:
            for region in REGIONS:
                before = result.check_before["regions"][region]["dice"]
                after = result.check_after["regions"][region]["dice"]
                LOGGER.info("check-case Dice %-15s before %s  after %s", region, _number(before), _number(after))
        LOGGER.info("New version %s@%s in %s (report: %s). Run it with `kidneytumorseg predict --model %s@%s`.",
                    name, result.version, result.package_path, result.report_path, name, result.version)
        if json_mode:
            json_lines.emit_result(
                model=f"{name}@{result.version}", name=name, version=result.version, package=str(result.package_path),
                report=str(result.report_path) if result.report_path else None,
                before={region: result.before["regions"][region]["dice"] for region in REGIONS},
                after={region: result.after["regions"][region]["dice"] for region in REGIONS},
                **({} if result.check_before is None or result.check_after is None else {
                    "check_before": {region: result.check_before["regions"][region]["dice"] for region in REGIONS},
                    "check_after": {region: result.check_after["regions"][region]["dice"] for region in REGIONS}}))
    return 0


def _finetune(args: argparse.Namespace, store: ModelStore, progress: Progress | None) -> FinetuneResult:
    from kidneytumorseg_training.finetune import finetune

    return finetune(
        args.model, args.corrections, replay=args.replay, holdout=args.holdout, epochs=args.epochs,
        iterations=args.iterations, learning_rate=args.lr, optimizer=args.optimizer,
        augmentation=not args.no_augmentation, version=args.version, replay_ratio=args.replay_ratio,
        average_fraction=args.average_with_parent, batch_dice=not args.sample_dice,
        hard_case_class=args.hard_case_class, hard_case_fraction=args.hard_case_fraction,
        anchor_strength=args.anchor_strength, distill_weight=args.distill_weight, check_cases=args.check_cases,
        store=store,
        work_dir=args.work_dir, seed=args.seed, device=args.device, threads=args.threads, workers=args.workers,
        precision=args.precision, progress=progress)


@contextlib.contextmanager
def _reporter(mode: str) -> Iterator[Progress | None]:
    """``progress(stage, fraction)`` for the mode: JSON lines, a tqdm bar on a terminal's stderr, or nothing."""
    if mode == "json":
        yield json_lines.emit_progress
        return
    if mode == "none" or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with tqdm(total=100, unit="%", file=sys.stderr, desc="fine-tuning") as bar, logging_redirect_tqdm():
        def progress(stage: str, fraction: float) -> None:
            bar.set_postfix_str(stage)
            bar.update(max(0, round(100 * fraction) - bar.n))

        yield progress


class _WorkerChecks:
    """On cancel, before anything else, :meth:`quiet` stops the data loader's SIGCHLD check until :meth:`restore`.
    A SIGTERM sent to the whole process group (as the Slicer module sends it) also ends the data-loading
    workers, and that check would raise a RuntimeError ("DataLoader worker ... is killed by signal") anywhere
    in the cancelled run's cleanup; :func:`_stop_children` waits for the workers instead."""

    def __init__(self) -> None:
        self.previous: Any = None

    def quiet(self) -> None:
        if hasattr(signal, "SIGCHLD"):
            self.previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGCHLD, self.previous)
            self.previous = None


def _stop_children(error: BaseException, spare: set[multiprocessing.process.BaseProcess],
                   grace: float = 5.0) -> None:
    """End the worker processes of the run that ``error`` interrupted (not those in ``spare``, there before).
    Its frames are freed first, so that the data loader shuts its workers down itself; those still running
    after ``grace`` seconds are terminated."""
    traceback.clear_frames(error.__traceback__)
    try:
        children = [child for child in multiprocessing.active_children() if child not in spare]
        deadline = time.monotonic() + grace
        for child in children:
            child.join(max(0.0, deadline - time.monotonic()))
        for child in children:
            if child.is_alive():
                child.terminate()
                child.join(grace)
            if child.is_alive():
                child.kill()
                child.join(grace)
    except Exception as problem:  # e.g. a data loader's SIGCHLD check, complaining about a worker it lost
        LOGGER.debug("while stopping the worker processes: %s", problem)
    else:
        if children:
            LOGGER.debug("stopped %d worker process(es)", len(children))


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
