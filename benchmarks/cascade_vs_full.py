"""The coarse-to-fine mode against the whole-volume sliding window, with a trained package, on the same cases.

    .venv/bin/python benchmarks/cascade_vs_full.py work_data/synthetic_1.5x1.5x3 \\
        --cases-file work_runs/test_ids.txt --limit 10 [--model kits-demo] [--precision fp32] [--threads 2]

benchmarks/predictor_vs_peers.py times the coarse-to-fine mode with random weights, where a box cannot give the
whole volume's labels (a random network's output depends on its tile's context). Here a trained package (default
kits-demo, which has a localizer member) segments each case twice through the engine's Predictor, as
`kidneytumorseg predict` does: ``--no-cascade`` (every tile of the volume) and ``--cascade`` (the localizer's
boxes plus their margin), alternating which goes first. Printed per case: both times, the cascade's share of the
whole-volume time, the share of the reference kidney-and-mass voxels whose label the two runs agree on, the Dice
between the two runs' kidney-and-mass regions (label > 0), and the Dice of each run against the reference. On
this project's data the cases are synthetic CT from real KiTS23 masks that the package never saw in training.

``--retiled OVERLAP`` adds a third run, the whole volume again with the tiles placed otherwise (that tile
overlap instead of the package's), and the same two agreement figures between the two whole-volume runs: how
much the whole-volume labels themselves depend on where the tiles fall, the yardstick for the cascade's.
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
from kidneytumorseg.metrics import compute_case_metrics, dice_coefficient
from kidneytumorseg.predictor import PredictionOptions, Predictor

MODES = {"full": False, "cascade": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_case_arguments(parser)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "auto", "half"])
    parser.add_argument("--retiled", type=float, default=None, metavar="OVERLAP",
                        help="also segment the whole volume with this tile overlap and compare it with the first")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    package = load_package(args.model)
    predictors = {mode: Predictor(package, PredictionOptions(quality=args.quality, device="cpu", cascade=cascade,
                                                             precision=args.precision))
                  for mode, cascade in MODES.items()}
    retiled = None
    if args.retiled is not None:
        retiled = Predictor(package, PredictionOptions(quality=args.quality, device="cpu", cascade=False,
                                                       precision=args.precision, tile_overlap=args.retiled))
    cases = read_cases(args.dataset, args.cases_file, args.limit)
    print(f"# {package.name}@{package.version}, quality {args.quality}, precision {args.precision}, "
          f"{len(cases)} case(s) of {args.dataset}; torch {torch.__version__}, {args.threads} thread(s)")
    print("| case | full s | cascade s | cascade / full | labels equal on reference kidney+mass | "
          "k+m Dice cascade vs full | Dice k+m full / cascade | Dice tumor full / cascade |"
          + (f" retiled (overlap {args.retiled}): labels equal / k+m Dice vs full |" if retiled else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if retiled else ""))
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    agreement: list[float] = []
    region_dice: list[float] = []
    floor: dict[str, list[float]] = {"agreement": [], "region_dice": []}
    dice: dict[str, dict[str, list[float]]] = {mode: {"kidney_and_mass": [], "tumor": []} for mode in MODES}
    for index, case in enumerate(cases):
        folder = args.dataset / case
        image, reference = read_ct(folder / "imaging.nii.gz"), read_label_map(folder / "segmentation.nii.gz")
        labels: dict[str, np.ndarray] = {}
        for mode in (MODES if index % 2 == 0 else reversed(MODES)):
            started = time.perf_counter()
            result = predictors[mode].segment(image, name=case)
            seconds[mode].append(time.perf_counter() - started)
            labels[mode] = sitk.GetArrayFromImage(result.labels)
            metrics = compute_case_metrics(result.labels, reference)
            for region in dice[mode]:
                dice[mode][region].append(metrics.dice[region])
        kidney = sitk.GetArrayFromImage(reference) > 0
        agreement.append(float(np.mean(labels["full"][kidney] == labels["cascade"][kidney])))
        region_dice.append(dice_coefficient(labels["full"] > 0, labels["cascade"] > 0))
        extra = ""
        if retiled is not None:
            other = sitk.GetArrayFromImage(retiled.segment(image, name=case).labels)
            floor["agreement"].append(float(np.mean(labels["full"][kidney] == other[kidney])))
            floor["region_dice"].append(dice_coefficient(labels["full"] > 0, other > 0))
            extra = f" {100 * floor['agreement'][-1]:.2f}% / {floor['region_dice'][-1]:.4f} |"
        print(f"| {case} | {seconds['full'][-1]:.1f} | {seconds['cascade'][-1]:.1f} | "
              f"{seconds['cascade'][-1] / seconds['full'][-1]:.2f} | {100 * agreement[-1]:.2f}% | "
              f"{region_dice[-1]:.4f} | "
              f"{dice['full']['kidney_and_mass'][-1]:.3f} / {dice['cascade']['kidney_and_mass'][-1]:.3f} | "
              f"{dice['full']['tumor'][-1]:.3f} / {dice['cascade']['tumor'][-1]:.3f} |{extra}", flush=True)
    print()
    ratio = statistics.median(c / f for c, f in zip(seconds["cascade"], seconds["full"], strict=True))
    print(f"median seconds per case: full {statistics.median(seconds['full']):.1f}, "
          f"cascade {statistics.median(seconds['cascade']):.1f}; median ratio cascade / full {ratio:.2f}")
    print(f"labels equal on the reference kidney-and-mass voxels: median {100 * statistics.median(agreement):.2f}%, "
          f"lowest {100 * min(agreement):.2f}%")
    print(f"Dice between the two runs' kidney-and-mass regions: median {statistics.median(region_dice):.4f}, "
          f"lowest {min(region_dice):.4f}")
    if retiled is not None:
        print(f"whole volume retiled (overlap {args.retiled}) against the whole volume: labels equal on the reference "
              f"kidney-and-mass voxels median {100 * statistics.median(floor['agreement']):.2f}% (lowest "
              f"{100 * min(floor['agreement']):.2f}%), kidney-and-mass Dice median "
              f"{statistics.median(floor['region_dice']):.4f} (lowest {min(floor['region_dice']):.4f})")
    for region in ("kidney_and_mass", "tumor"):
        print(f"mean Dice {region}: full {statistics.mean(dice['full'][region]):.4f}, "
              f"cascade {statistics.mean(dice['cascade'][region]):.4f}")


if __name__ == "__main__":
    main()
