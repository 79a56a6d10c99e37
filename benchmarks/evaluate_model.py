"""Accuracy of a model package on held-out cases: segment each case, score it with the KiTS metrics.

    .venv/bin/python benchmarks/evaluate_model.py work_data/synthetic_1.5x1.5x3 \\
        --cases-file work_runs/test_ids.txt --model kits-demo [--limit 20] [--quality default] [--members fold1]

The dataset is in the KiTS layout (case_XXXXX/imaging.nii.gz + segmentation.nii.gz). Each case is segmented
by the engine's Predictor exactly as `kidneytumorseg predict` does (default settings unless given), on the
case's own grid, and scored against its reference with the KiTS23 metrics (Dice and surface Dice per region:
kidney_and_mass, mass, tumor), plus the Dice of the cyst label alone ("-" where neither the reference nor the
prediction has a cyst; the KiTS regions count a cyst only as part of the mass). Prints a per-case table, the
summary (mean and median per region, the cysts found) and the time per case; with --csv also writes the per-case
metrics. For the bundled demo model the data are synthetic CT made from real KiTS23 masks, and the held-out
cases are those whose masks were never used in training.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import SimpleITK as sitk
from held_out_cases import load_package, read_cases

from kidneytumorseg.cli.evaluate import format_summary
from kidneytumorseg.evaluation import CaseResult, summarize, write_case_csv
from kidneytumorseg.image_io import read_ct, read_label_map
from kidneytumorseg.labels import CYST
from kidneytumorseg.metrics import compute_case_metrics, dice_coefficient
from kidneytumorseg.predictor import PredictionOptions, Predictor


def _cyst_dice(labels: sitk.Image, reference: sitk.Image, cysts: list[tuple[bool, bool, float]]) -> str:
    """The cyst label's Dice as a table cell ("-" with no cyst on either side); appends to ``cysts``."""
    predicted = sitk.GetArrayViewFromImage(labels) == CYST
    expected = sitk.GetArrayViewFromImage(reference) == CYST
    if not predicted.any() and not expected.any():
        return "-"
    cysts.append((bool(expected.any()), bool(predicted.any()), dice_coefficient(predicted, expected)))
    return f"{cysts[-1][2]:.3f}"


def _cyst_summary(cysts: list[tuple[bool, bool, float]]) -> str:
    with_cyst = [d for has, _, d in cysts if has]
    found = sum(1 for has, predicted, _ in cysts if has and predicted)
    false = sum(1 for has, predicted, _ in cysts if predicted and not has)
    mean = f"{statistics.fmean(with_cyst):.3f}" if with_cyst else "-"
    return (f"cyst (label 3 alone): {len(with_cyst)} case(s) with a reference cyst, cyst voxels predicted in {found} "
            f"of them, mean cyst Dice over them {mean}; cyst predicted in {false} case(s) without one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--cases-file", type=Path, help="comma-separated case ids (default: every case)")
    parser.add_argument("--limit", type=int, help="only the first N of those cases")
    parser.add_argument("--model", default="kits-demo", help="NAME[@VERSION] in the store, or a package folder")
    parser.add_argument("--quality", default="default", choices=["fast", "default", "best"])
    parser.add_argument("--cascade", action="store_true", help="use the package's localizer (coarse-to-fine)")
    parser.add_argument("--members", help="comma-separated member names to run (default: as the quality says)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = read_cases(args.dataset, args.cases_file, args.limit)
    package = load_package(args.model)
    members = tuple(name.strip() for name in args.members.split(",") if name.strip()) if args.members else None
    options = PredictionOptions(quality=args.quality, cascade=args.cascade, device="cpu", members=members)
    predictor = Predictor(package, options)
    results, seconds = [], []
    print(f"# {package.name}@{package.version} on {len(cases)} case(s) of {args.dataset}, quality {args.quality}, "
          f"members {[m.name for m in predictor.segmenter_specs]}, "
          f"refiners {[m.name for m in predictor.refiner_specs]}, cascade {args.cascade}")
    print("| case | kidney_and_mass | mass | tumor | seconds | cyst |")
    print("|---|---|---|---|---|---|")
    cysts: list[tuple[bool, bool, float]] = []  # (reference has one, prediction has one, Dice)
    for case in cases:
        folder = args.dataset / case
        started = time.perf_counter()
        result = predictor.segment(read_ct(folder / "imaging.nii.gz"), name=case)
        seconds.append(time.perf_counter() - started)
        reference = read_label_map(folder / "segmentation.nii.gz")
        metrics = compute_case_metrics(result.labels, reference)
        results.append(CaseResult(case, metrics))
        dice = metrics.dice
        cyst = _cyst_dice(result.labels, reference, cysts)
        print(f"| {case} | {dice['kidney_and_mass']:.3f} | {dice['mass']:.3f} | {dice['tumor']:.3f} | "
              f"{seconds[-1]:.1f} | {cyst} |", flush=True)
    print()
    print(format_summary(summarize(results)))
    print(_cyst_summary(cysts))
    print(f"\nmedian seconds per case: {statistics.median(seconds):.1f}")
    if args.csv:
        write_case_csv(results, args.csv)


if __name__ == "__main__":
    main()
