"""One timed run in a fresh process, and the order in which all the runs of the table are made.

The protocol: the parent runs the entry script (benchmarks/predictor_vs_peers.py) with ``--only TASK
--workdir FOLDER --result FILE [--save-output]``; the child calls :func:`measure` and writes its dict to FILE
as JSON. A task is a variant key (``Variant.key``) or one of ``TASKS``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kidneytumorseg.predictor_core import CascadeSettings, PredictorSettings, localize, predict
from kidneytumorseg.sliding_window import tile_slices
from peer_comparison.cascade import ReferenceMaskLocalizer
from peer_comparison.preparation import Setup, load_network
from peer_comparison.runners import as_probabilities, peer_runner
from peer_comparison.variants import (
    AGREEMENT_VARIANTS,
    AS_SHIPPED,
    EXTRA_VARIANTS,
    OURS,
    OURS_EAGER,
    OURS_HALF,
    SIGMA_SCALE,
    Variant,
    flip_sets,
)

logger = logging.getLogger(__name__)

ENTRY_POINT = Path(__file__).resolve().parents[1] / "predictor_vs_peers.py"
# The volume is normalised once; the predictor core then gets a normalisation that leaves it as it is.
IDENTITY_NORMALIZATION = {"scheme": "clip_zscore", "clip": [-1.0e6, 1.0e6], "mean": 0.0, "std": 1.0}

Results = dict[str, list[dict[str, Any]]]


def _rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux /proc; elsewhere the peak so far)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _timed(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """``call()``'s result, its wall time and the resident memory just before it."""
    before = _rss_mb()
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start, before


def forward_alone(network: torch.nn.Module, volume: np.ndarray, setup: Setup) -> None:
    """The eager network over every tile and mirrored copy of the sliding window, nothing blended."""
    missing = [max(0, p - n) for n, p in zip(volume.shape, setup.patch_size, strict=True)]
    padded = torch.from_numpy(np.pad(volume, [(m // 2, m - m // 2) for m in missing]))[None]
    with torch.no_grad():
        for tile in tile_slices(padded.shape[1:], setup.patch_size, setup.overlap):
            batch = padded[(slice(None), *tile)][None]
            for flip in flip_sets(setup.mirror_axes):
                network(torch.flip(batch, [2 + axis for axis in flip]) if flip else batch)


def _measure_cascade(setup: Setup, workdir: Path, network: torch.nn.Module, volume: np.ndarray,
                     save_output: bool) -> tuple[float, float, dict[str, Any]]:
    settings = PredictorSettings(target_spacing=setup.spacing, patch_size=setup.patch_size,
                                 normalization=IDENTITY_NORMALIZATION, tile_overlap=setup.overlap,
                                 mirror_axes=setup.mirror_axes, gaussian_sigma_scale=SIGMA_SCALE, device="cpu")
    cascade = CascadeSettings(PredictorSettings(target_spacing=setup.localizer_spacing,
                                                patch_size=setup.coarse_shape,
                                                normalization=IDENTITY_NORMALIZATION, device="cpu"),
                              margin_mm=setup.margin_mm, threshold=0.5, max_boxes=2)
    localizer = ReferenceMaskLocalizer(np.load(workdir / "coarse_kidney.npy"), setup.num_classes)
    prediction, seconds, before = _timed(
        lambda: predict(volume, setup.spacing, [network], settings, None, localizer, cascade))
    if save_output:
        np.save(workdir / "cascade-labels.npy", prediction.labels)
        np.save(workdir / "cascade-probabilities.npy", prediction.probabilities)
    return seconds, before, {"boxes": [[[s.start, s.stop] for s in box] for box in prediction.boxes]}


def measure(task: str, workdir: Path, save_output: bool) -> dict[str, Any]:
    """Time one run of ``task`` (a variant key, or one of TASKS) on the saved case; save its output if asked."""
    setup = Setup.load(workdir)
    if setup.threads:
        torch.set_num_threads(setup.threads)
    volume = np.load(workdir / "volume.npy")
    network = load_network(setup.network, workdir / "network.safetensors")
    extra: dict[str, Any] = {}
    if task == "cascade":
        seconds, before, extra = _measure_cascade(setup, workdir, network, volume, save_output)
    elif task == "localizer":
        localizer = load_network(setup.localizer_network, workdir / "localizer.safetensors")
        settings = PredictorSettings(target_spacing=setup.localizer_spacing, patch_size=setup.localizer_patch,
                                     normalization=IDENTITY_NORMALIZATION, tile_overlap=setup.overlap,
                                     mirror_axes=setup.mirror_axes, gaussian_sigma_scale=SIGMA_SCALE, device="cpu")
        _, seconds, before = _timed(lambda: localize(volume, setup.spacing, localizer, settings,
                                                     margin_mm=setup.margin_mm))
    elif task == "forward":
        _, seconds, before = _timed(lambda: forward_alone(network, volume, setup))
    elif task == "profile":
        run, profiler = peer_runner(OURS, network, setup.config), cProfile.Profile()
        _, seconds, before = _timed(lambda: profiler.runcall(run, volume))
        entries = sorted(pstats.Stats(profiler).stats.items(), key=lambda item: item[1][2], reverse=True)
        extra["profile"] = [[pstats.func_std_string(function), own] for function, (_, _, own, _, _) in entries[:8]]
    else:
        variant = Variant.from_key(task)
        run = peer_runner(variant, network, setup.config)
        output, seconds, before = _timed(lambda: run(volume))
        if save_output:
            np.save(workdir / f"{variant.key}.npy", as_probabilities(variant, output))
    return {"task": task, "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": _peak_rss_mb(),
            "threads": torch.get_num_threads(), **extra}


def run_measurement(task: str, workdir: Path, save_output: bool, script: Path = ENTRY_POINT) -> dict[str, Any]:
    """Run :func:`measure` in a fresh process (``script`` with ``--only``) and return its result."""
    result_path = workdir / f"result-{time.monotonic_ns()}.json"
    command = [sys.executable, str(script), "--only", task, "--workdir", str(workdir),
               "--result", str(result_path), *(["--save-output"] if save_output else [])]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.stdout.strip():
        logger.debug("%s printed: %s", task, completed.stdout.strip())
    if completed.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"The {task} measurement failed (exit code {completed.returncode}):\n"
                           f"{completed.stderr.strip()[-4000:]}")
    result = json.loads(result_path.read_text())
    logger.info("  %-30s %7.2f s  peak RSS %6.0f MB", task, result["seconds"], result["peak_rss_mb"])
    return result


def run_all(args: argparse.Namespace, workdir: Path, script: Path = ENTRY_POINT) -> Results:
    """The timed rows interleaved in a rotated order per repeat (outputs saved from repeat 1), then the rest."""
    timed = [OURS.key, *(v.key for v in AS_SHIPPED), OURS_EAGER.key, OURS_HALF.key, "forward",
             *(("cascade", "localizer") if args.cascade else ())]
    results: Results = {}
    logger.info("Warm-up (discarded): the network forward alone")
    run_measurement("forward", workdir, save_output=False, script=script)
    for repeat in range(args.repeats):
        logger.info("Repeat %d/%d", repeat + 1, args.repeats)
        shift = repeat % len(timed)
        for task in timed[shift:] + timed[:shift]:
            results.setdefault(task, []).append(run_measurement(task, workdir, repeat == 0, script))
    once = ["profile"] if args.profile else []
    if args.agreement_rows:
        once += [v.key for v in AGREEMENT_VARIANTS]
    if args.all_variants:
        once += [v.key for v in EXTRA_VARIANTS]
    if once:
        logger.info("Once each: %s", ", ".join(once))
    for task in once:
        results[task] = [run_measurement(task, workdir, save_output=True, script=script)]
    return results
