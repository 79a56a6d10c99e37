"""Time "press Segment" to "segments visible" on the bundled sample, through the module's MRML logic.

    .venv/bin/python benchmarks/slicer_segment_to_segments.py [--repeats 3] [--quality default] [--threads N]

On the real Slicer core (slicer-core from PyPI; no Qt, so no view is drawn): the sample CT is loaded by
Slicer's storage node, ``SegmentationLogic.start`` writes it for the engine and starts the engine process
(bundled kits-demo model, CPU, default quality), the job is polled every 0.1 s as the module's QTimer does,
and the clock stops when the segmentation node holds the three segments with its display node, plus the
closed-surface representation that "Show 3D" builds. Phases: writing the input, the engine process
(Python start, model verification and loading, segmentation), and taking the result into MRML. For
comparison the same run as a bare ``kidneytumorseg predict`` process (same model, quality and threads) is
timed in the same session; the table gives medians over the repeats.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing" / "slicer"))

from mrml_helpers import SAMPLE_CT, load_volume  # noqa: E402

from kidneytumorseg.model_store import ModelStore, default_bundled_dir  # noqa: E402
from KidneyTumorSegLib.background_job import JobState  # noqa: E402
from KidneyTumorSegLib.engine_command import EngineCommand  # noqa: E402
from KidneyTumorSegLib.segmentation_logic import SegmentationLogic  # noqa: E402
from KidneyTumorSegLib.segments import register_segmentation_converters, segment_ids  # noqa: E402

LOGGER = logging.getLogger("benchmark")


def one_run(quality: str, threads: int | None, user_dir: Path) -> dict[str, float]:
    import slicer

    register_segmentation_converters()
    scene = slicer.vtkMRMLScene()
    volume = load_volume(scene, SAMPLE_CT)
    store = ModelStore(default_bundled_dir(), user_dir)
    logic = SegmentationLogic(scene, store=store,
                              command=EngineCommand(python=sys.executable, models_dir=user_dir, threads=threads))
    start = time.perf_counter()
    job = logic.start(volume, quality=quality)
    started = time.perf_counter()
    result_seen = None
    while job.poll() is JobState.RUNNING:
        if result_seen is None and job.results:
            result_seen = time.perf_counter()
        time.sleep(0.1)
    if job.state is not JobState.SUCCEEDED:
        raise SystemExit(f"segmentation failed: {job.error}")
    node = job.result.segmentation_node
    node.CreateClosedSurfaceRepresentation()  # what "Show 3D" does
    end = time.perf_counter()
    assert len(segment_ids(node)) == 3 and node.GetDisplayNode() is not None
    engine_end = result_seen or end
    return {"total": end - start, "write input": started - start, "engine process": engine_end - started,
            "into MRML + 3D": end - engine_end}


def bare_cli(quality: str, threads: int | None) -> float:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "kidneytumorseg.cli.main", "predict", "-i", str(SAMPLE_CT), "-o",
                   str(Path(work) / "labels.nii.gz"), "--quality", quality, "--progress", "none"]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality", default="default", choices=["fast", "default", "best"])
    parser.add_argument("--threads", type=int, help="torch threads of the engine (default: all cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    runs, cli = [], []
    with tempfile.TemporaryDirectory() as user_dir:
        for _ in range(args.repeats):
            runs.append(one_run(args.quality, args.threads, Path(user_dir)))
            cli.append(bare_cli(args.quality, args.threads))
    import torch

    lines = [f"Segment -> segments visible, bundled sample ({SAMPLE_CT.parent.name}), kits-demo, CPU, "
             f"{args.quality} quality, {args.threads or os.cpu_count()} thread(s), torch {torch.__version__}, "
             f"{os.cpu_count()} cores; medians of {args.repeats}",
             f"{'phase':<24}{'median s':>10}   all runs"]
    for key in runs[0]:
        values = [run[key] for run in runs]
        lines.append(f"{key:<24}{statistics.median(values):>10.2f}   " + " ".join(f"{v:.2f}" for v in values))
    lines.append(f"{'bare predict CLI':<24}{statistics.median(cli):>10.2f}   " + " ".join(f"{v:.2f}" for v in cli))
    ratio = statistics.median(r["total"] for r in runs) / statistics.median(cli)
    lines.append(f"module (segment -> segments visible) / bare CLI: {ratio:.2f}x")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
