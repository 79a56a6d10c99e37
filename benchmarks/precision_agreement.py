"""float32 against half precision (bfloat16 on a CPU) for one model package, side by side on the same cases.

    .venv/bin/python benchmarks/precision_agreement.py work_data/synthetic_1.5x1.5x3 \\
        --cases-file work_runs/test_ids.txt --limit 10 [--model kits-demo] [--quality default] [--threads 2]

Each case is segmented twice by the engine's Predictor, as `kidneytumorseg predict` does, once with
``--precision fp32`` and once with ``--precision half``, alternating which goes first. Printed per case: the
seconds of each, the Dice of each against the reference (KiTS regions), and the share of voxels where the two
label maps agree. The summary gives the median time ratio half / fp32, the mean Dice of each and the largest
Dice change. On this project's data the cases are synthetic CT made from real KiTS23 masks.

Half precision on a CPU is only fast where the CPU has native bfloat16 (kidneytumorseg.precision); the header
says whether this one has.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np
import SimpleITK as sitk
import torch
from held_out_cases import add_case_arguments, load_package, read_cases

from kidneytumorseg.image_io import read_ct, read_label_map
from kidneytumorseg.metrics import compute_case_metrics
from kidneytumorseg.precision import cpu_has_native_bf16
from kidneytumorseg.predictor import PredictionOptions, Predictor

REGIONS = ("kidney_and_mass", "mass", "tumor")
PRECISIONS = ("fp32", "half")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_case_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    cases = read_cases(args.dataset, args.cases_file, args.limit)
    package = load_package(args.model)
    predictors = {precision: Predictor(package, PredictionOptions(quality=args.quality, device="cpu",
                                                                  precision=precision))
                  for precision in PRECISIONS}
    print(f"# {package.name}@{package.version}, quality {args.quality}, {len(cases)} case(s) of {args.dataset}")
    print(f"# CPU, torch {torch.__version__} with {args.threads} thread(s); native bfloat16: {cpu_has_native_bf16()}")
    print("| case | fp32 s | half s | fp32 Dice k / m / t | half Dice k / m / t | labels equal |")
    print("|---|---|---|---|---|---|")
    seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    dice: dict[str, dict[str, list[float]]] = {p: {r: [] for r in REGIONS} for p in PRECISIONS}
    agreement: list[float] = []
    for index, case in enumerate(cases):
        folder = args.dataset / case
        image, reference = read_ct(folder / "imaging.nii.gz"), read_label_map(folder / "segmentation.nii.gz")
        labels: dict[str, np.ndarray] = {}
        order = PRECISIONS if index % 2 == 0 else tuple(reversed(PRECISIONS))
        for precision in order:
            started = time.perf_counter()
            result = predictors[precision].segment(image, name=case)
            seconds[precision].append(time.perf_counter() - started)
            labels[precision] = sitk.GetArrayFromImage(result.labels)
            metrics = compute_case_metrics(result.labels, reference)
            for region in REGIONS:
                dice[precision][region].append(metrics.dice[region])
        agreement.append(float(np.mean(labels["fp32"] == labels["half"])))
        cells = {p: " / ".join(f"{dice[p][r][-1]:.3f}" for r in REGIONS) for p in PRECISIONS}
        print(f"| {case} | {seconds['fp32'][-1]:.1f} | {seconds['half'][-1]:.1f} | {cells['fp32']} | "
              f"{cells['half']} | {100 * agreement[-1]:.3f}% |", flush=True)
    print()
    ratio = statistics.median(h / f for h, f in zip(seconds["half"], seconds["fp32"], strict=True))
    print(f"median seconds per case: fp32 {statistics.median(seconds['fp32']):.1f}, "
          f"half {statistics.median(seconds['half']):.1f}; median ratio half / fp32 {ratio:.2f}")
    for region in REGIONS:
        full, half = dice["fp32"][region], dice["half"][region]
        largest = max(abs(h - f) for h, f in zip(half, full, strict=True))
        print(f"mean Dice {region}: fp32 {statistics.mean(full):.4f}, half {statistics.mean(half):.4f}, "
              f"largest change in one case {largest:.4f}")
    print(f"labels equal: median {100 * statistics.median(agreement):.3f}% of voxels, "
          f"lowest {100 * min(agreement):.3f}%")


if __name__ == "__main__":
    main()
