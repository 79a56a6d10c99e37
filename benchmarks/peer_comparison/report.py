"""The report printed at the end: hardware and settings, the table, and the verdicts below it."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from equal_budget.report import cpu_description

from peer_comparison.agreement import agreement, agreement_text
from peer_comparison.cascade import CascadeCheck, cascade_totals, check_cascade
from peer_comparison.measurement import Results
from peer_comparison.preparation import Setup
from peer_comparison.variants import AS_SHIPPED, OURS, PEER_NAMES, TASKS, Variant

HEADER = ["peer", "settings", "median s", "vs nnU-Net", "peak RSS MB", "+MB in call", "max |dp| vs ours",
          "99.9% |dp|", "labels = ours"]
GOAL_RATIO = 0.8  # ours at identical settings, of nnU-Net's time
CASCADE_GOAL_RATIO = 0.25  # coarse-to-fine with the localizer network, of nnU-Net's time
AGREEMENT_LIMIT = 1e-3  # max |dp| of a peer vs ours


def package_version(package: str) -> str:
    """The installed version of ``package``, or "not installed"."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    """The median of ``key`` over measurement results."""
    return statistics.median(run[key] for run in runs)


def row(name: str, settings: str, seconds: list[float], nnunet_seconds: float, runs: list[dict[str, Any]] | None,
        agreement_cells: tuple[str, str, str] = ("-", "-", "-")) -> list[str]:
    """One table row; ``runs`` gives the memory columns (None: not one measurement of its own)."""
    median = statistics.median(seconds)
    peak = "-" if runs is None else f"{median_of(runs, 'peak_rss_mb'):.0f}"
    growth = "-" if runs is None else f"{statistics.median(r['peak_rss_mb'] - r['rss_before_mb'] for r in runs):+.0f}"
    return [name, settings, f"{median:.2f} (n={len(seconds)})", f"{median / nnunet_seconds:.2f}x", peak, growth,
            *agreement_cells]


def format_table(rows: list[list[str]]) -> list[str]:
    """The header, a rule and ``rows``, each column as wide as its widest cell, two spaces apart."""
    widths = [max(len(cells[i]) for cells in [HEADER, *rows]) for i in range(len(HEADER))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
            for cells in [HEADER, ["-" * width for width in widths], *rows]]


def table_rows(setup: Setup, workdir: Path, results: Results, cascade: bool
               ) -> tuple[list[list[str]], dict[Variant, tuple[float, float, float]], CascadeCheck | None]:
    """The rows of the table, each variant's agreement with ours, and the cascade check (None without)."""
    ours = np.load(workdir / f"{OURS.key}.npy")
    nnunet_seconds = median_of(results[AS_SHIPPED[0].key], "seconds")
    rows, differences = [], {}
    for task, runs in results.items():
        if task in TASKS:
            continue
        variant = Variant.from_key(task)
        cells = ("0", "0", "100%")
        if variant != OURS:
            differences[variant] = agreement(np.load(workdir / f"{task}.npy"), ours)
            cells = agreement_text(differences[variant])
        rows.append(row(PEER_NAMES[variant.peer], variant.describe(), [r["seconds"] for r in runs], nnunet_seconds,
                        runs, cells))
    forward_runs = results["forward"]
    rows.append(row("eager network forward alone", "same tiles and mirrorings, no blending, fast path off",
                    [r["seconds"] for r in forward_runs], nnunet_seconds, forward_runs))
    check = None
    if cascade:
        cascade_runs, localizer_runs = results["cascade"], results["localizer"]
        check = check_cascade(workdir, cascade_runs[0]["boxes"], ours)
        rows += [
            row("ours, coarse-to-fine", f"reference-mask boxes, {setup.margin_mm:g} mm margin",
                [r["seconds"] for r in cascade_runs], nnunet_seconds, cascade_runs,
                agreement_text(check.in_boxes, " in boxes")),
            row("localizer network", f"random weights, {'x'.join(map(str, setup.localizer_patch))} at "
                f"{'x'.join(f'{s:g}' for s in setup.localizer_spacing)} mm", [r["seconds"] for r in localizer_runs],
                nnunet_seconds, localizer_runs),
            row("ours, coarse-to-fine total", "the two rows above, per repeat", cascade_totals(results),
                nnunet_seconds, None, agreement_text(check.on_kidney, " on kidneys")),
        ]
    return rows, differences, check


def header_lines(args: argparse.Namespace, setup: Setup, results: Results, minutes: float) -> list[str]:
    """What ran where: the command, the hardware, the case, the network and the settings."""
    lines = [
        "Predictor vs peers: one network, one set of weights, one preprocessed volume",
        f"Command: {Path(sys.executable).name} {' '.join(sys.argv)}",
        f"Hardware: {cpu_description()}, torch {torch.__version__} with "
        f"{results[OURS.key][0]['threads']} threads; nnunetv2 {package_version('nnunetv2')}, monai "
        f"{package_version('monai')}, Python {platform.python_version()}.",
        f"Case: {setup.case}, clip_zscore-normalised and resampled to {setup.spacing} mm: "
        f"{setup.original_shape} voxels, zero-padded to {setup.shape} (per axis {setup.padding}).",
        f"Network: plain U-Net planned for {setup.patch_size} at {setup.spacing} mm, features "
        f"{setup.network['features_per_stage']}, {setup.parameters:,} parameters, random weights (seed 0).",
        f"Settings: tile {setup.patch_size}, overlap {setup.overlap:g} (nnU-Net tile_step_size "
        f"{1 - setup.overlap:g}), Gaussian sigma = tile/8, mirroring "
        f"{list(setup.mirror_axes) if setup.mirror_axes else 'off'}, batch 1, CPU: {setup.tiles} tiles.",
    ]
    lines += [f"Note: {note}." for note in setup.notes]
    lines.append(f"Each measurement is a fresh process timing one call; {args.repeats} repeats of the timed rows, "
                 f"interleaved; {minutes:.1f} min in all.")
    return lines


def verdict_lines(results: Results, differences: dict[Variant, tuple[float, float, float]],
                  check: CascadeCheck | None) -> list[str]:
    """The goals (met or NOT met), where the time goes, and the cascade's boxes and labels."""
    nnunet_seconds = median_of(results[AS_SHIPPED[0].key], "seconds")
    ours_seconds = median_of(results[OURS.key], "seconds")
    ratio = ours_seconds / nnunet_seconds
    forward_seconds = median_of(results["forward"], "seconds")
    lines = [
        f"Goal at identical settings, ours <= 0.80x nnU-Net's time: {ratio:.2f}x, "
        f"{'met' if ratio <= GOAL_RATIO else 'NOT met'}.",
        f"The eager network forward alone takes {forward_seconds:.2f} s = "
        f"{100 * forward_seconds / nnunet_seconds:.0f}% of nnU-Net's time (the rest is its tiling, weighting, "
        f"blending) and "
        f"{100 * forward_seconds / ours_seconds:.0f}% of ours (which runs the network channels-last with prepacked "
        f"oneDNN convolutions instead; the 'fast path off' row is ours with the eager network).",
    ]
    for variant, (largest, _, _) in differences.items():
        lines.append(f"max |dp| {PEER_NAMES[variant.peer]} ({variant.describe()}) vs ours: {largest:.1e}, "
                     f"{'below' if largest < AGREEMENT_LIMIT else 'NOT below'} 1e-3.")
    if check is not None:
        total_ratio = statistics.median(cascade_totals(results)) / nnunet_seconds
        lines += [
            f"Goal coarse-to-fine <= 0.25x nnU-Net's time: {total_ratio:.2f}x with the localizer network "
            f"({median_of(results['cascade'], 'seconds') / nnunet_seconds:.2f}x without), "
            f"{'met' if total_ratio <= CASCADE_GOAL_RATIO else 'NOT met'}.",
            f"Cascade boxes (S, P, L voxel ranges): {check.boxes}: {check.box_voxels} of {check.voxels} voxels "
            f"({100 * check.box_voxels / check.voxels:.1f}%).",
            f"Labels from the boxes equal the full run's on {100 * check.in_boxes[2]:.4f}% of box voxels and "
            f"{100 * check.on_kidney[2]:.4f}% of the {check.kidney_voxels} reference kidney-and-mass voxels: "
            f"{'the same labels' if check.on_kidney[2] == 1.0 else 'NOT the same labels'} on the kidneys.",
            "The coarse-to-fine localizer is a fixed module returning the case's reference mask, not a network; "
            "the localizer-network row times a real-sized one with random weights (its boxes unused).",
            "With random weights a voxel's label follows its tile's context (instance normalisation over the "
            "tile, zero padding around a box smaller than the tile), which differs between a box and the whole "
            "volume: equal labels need a trained network (the predictor tests check them with a context-free one).",
        ]
    if "profile" in results:
        profile = results["profile"][0]
        lines.append(f"Where ours spends its time (cProfile, one run, {profile['seconds']:.2f} s with profiling; "
                     f"own time):")
        lines += [f"  {own:7.2f} s  {100 * own / profile['seconds']:5.1f}%  {function}"
                  for function, own in profile["profile"]]
    return lines


def report(args: argparse.Namespace, setup: Setup, workdir: Path, results: Results, minutes: float) -> None:
    """Print the hardware, the settings, the table and the verdicts."""
    rows, differences, check = table_rows(setup, workdir, results, args.cascade)
    for line in [*header_lines(args, setup, results, minutes), "", *format_table(rows), "",
                 *verdict_lines(results, differences, check)]:
        print(line)
