"""``kidneytumorseg predict -i INPUT -o OUTPUT``: segment a CT file, a DICOM folder or a folder of cases.

Writes a label map (NIfTI or NRRD) and a Slicer ``.seg.nrrd`` per case and prints the volumes in ml;
with ``--overlay`` also ``<case>_overlay.png``, the CT with the predicted labels outlined, titled with the
model and the volumes.
``--progress json`` speaks the background-process protocol (``kidneytumorseg.cli.json_lines``): one JSON object
per line on stdout, of type ``progress`` (case, stage, fraction), ``log`` (level, message), ``result`` (one per
case, as soon as it is written), ``error`` or ``cancelled``. SIGTERM or Ctrl-C cancel between tiles; nothing
half-written is left behind, and every case finished before the cancel has been reported.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from kidneytumorseg.cli import json_lines
from kidneytumorseg.cli.json_lines import CANCELLED_EXIT_CODE, ERROR_EXIT_CODE, PROGRESS_MODES
from kidneytumorseg.errors import Cancelled, KidneyTumorSegError

NAME = "predict"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(NAME, help="segment kidney, tumor and cyst in CT", description=__doc__)
    parser.add_argument("-i", "--input", type=Path, required=True,
                        help="CT file (.nii.gz/.nrrd/.mha), DICOM series folder, or folder of cases")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="label map file for a single input, else output folder")
    parser.add_argument("--model", default=None, help="NAME or NAME@VERSION from the model store (default kits-demo)")
    parser.add_argument("--store-dir", type=Path, help="user model folder (default: per-user data folder)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--quality", default="default", choices=["fast", "default", "best"],
                        help="fast: one member, no mirroring; default: all members; best: all members + mirroring")
    parser.add_argument("--members", help="comma-separated member (fold) names to use")
    parser.add_argument("--overlap", type=float, help="tile overlap in [0, 1) (default: the model's)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "half"],
                        help="auto: half precision on CUDA (float16) and on CPUs with native bfloat16, float32 "
                             "elsewhere; fp32: always float32; half: float16 on CUDA, bfloat16 on a CPU")
    cascade = parser.add_mutually_exclusive_group()
    cascade.add_argument("--cascade", dest="cascade", action="store_true", default=None,
                         help="segment only around the kidneys the localizer finds (default when available)")
    cascade.add_argument("--no-cascade", dest="cascade", action="store_false", help="segment the whole volume")
    parser.add_argument("--allow-non-ct", action="store_true", help="go on when the intensities do not look like CT")
    parser.add_argument("--format", default=".nii.gz", choices=[".nii.gz", ".nrrd"], help="label map format")
    parser.add_argument("--overlay", action="store_true",
                        help="also write <case>_overlay.png next to the label map: the CT (axial, coronal, sagittal) "
                             "with the predicted labels outlined, titled with the model and the volumes in ml")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES,
                        help="bar (stderr), json (background-process protocol on stdout) or none")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from kidneytumorseg.batch import DEFAULT_MODEL, predict_files
    from kidneytumorseg.model_store import ModelStore, default_bundled_dir
    from kidneytumorseg.predictor import PredictionOptions

    cancel = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    json_mode = args.progress == "json"
    if json_mode:
        json_lines.install()
    progress = _progress_reporter(args.progress)
    try:
        options = PredictionOptions(
            quality=args.quality, device=args.device, tile_overlap=args.overlap, cascade=args.cascade,
            members=tuple(args.members.split(",")) if args.members else None, allow_non_ct=args.allow_non_ct,
            precision=args.precision,
        )
        store = ModelStore(default_bundled_dir(), args.store_dir) if args.store_dir else None
        report = predict_files(args.input, args.output, model=args.model or DEFAULT_MODEL, options=options,
                               label_format=args.format, store=store, progress=progress, cancel=cancel,
                               overlay=args.overlay,
                               on_case=lambda case, model: _report_case(case, model, json_mode))
    except KeyboardInterrupt:
        cancel.set()
        return _cancelled(json_mode)
    except Cancelled:
        return _cancelled(json_mode)
    except KidneyTumorSegError as error:
        if json_mode:
            json_lines.emit_error(str(error))
            return ERROR_EXIT_CODE
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    for name, message in report.failures.items():
        if json_mode:
            json_lines.emit_error(message, case=name)
        else:
            sys.stderr.write(f"error: {name}: {message}\n")
    return 1 if report.failures else 0


def _report_case(case: Any, model: str, json_mode: bool) -> None:
    """One finished case: a JSON ``result`` line, or a line of volumes and written files."""
    if json_mode:
        overlay = {"overlay": str(case.overlay)} if case.overlay else {}
        json_lines.emit_result(case=case.name, model=model, labels=str(case.labels),
                               segmentation=str(case.segmentation), volumes_ml=case.volumes_ml,
                               seconds=case.seconds, **overlay)
    else:
        volumes = "  ".join(f"{name} {ml:8.1f} ml" for name, ml in case.volumes_ml.items())
        written = ", ".join(str(path) for path in (case.labels, case.segmentation, case.overlay) if path)
        sys.stdout.write(f"{case.name}: {volumes}   -> {written}\n")
        sys.stdout.flush()


def _cancelled(json_mode: bool) -> int:
    if json_mode:
        json_lines.emit_cancelled()
    else:
        sys.stderr.write("cancelled: no output was written for the unfinished case\n")
    return CANCELLED_EXIT_CODE


class _progress_reporter:  # noqa: N801 - used like a function
    """Progress as tqdm bars (per case), JSON lines, or nothing."""

    def __init__(self, mode: str) -> None:
        self.mode, self.bar, self.case = mode, None, None

    def __call__(self, case: str, stage: str, fraction: float) -> None:
        if self.mode == "json":
            json_lines.emit_progress(stage, fraction, case=case)
        elif self.mode == "bar":
            from tqdm import tqdm

            if case != self.case:
                self.close()
                self.case, self.bar = case, tqdm(total=100, desc=case, unit="%", leave=True, file=sys.stderr)
            self.bar.set_postfix_str(stage)
            self.bar.update(max(0, round(100 * fraction) - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
