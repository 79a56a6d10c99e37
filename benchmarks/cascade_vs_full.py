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

The tiles column counts the network's tiles: the whole volume's, those of them that touch the cascade's boxes
(an exact cascade would have to run all of these, since every tile over a voxel weighs in its probability), and
the tiles the cascade ran.

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

from kidneytumorseg.geometry import resampled_shape, to_lps
from kidneytumorseg.image_io import read_ct, read_label_map
from kidneytumorseg.metrics import compute_case_metrics, dice_coefficient
from kidneytumorseg.model_window import model_window
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg.sliding_window import tile_slices

MODES = {"full": False, "cascade": True}


def tile_counts(image: sitk.Image, boxes: list, patch: list[int], spacing: list[float],
                overlap: float) -> tuple[int, int, int]:
    """Tiles of one segmenter on ``image``: the whole volume's, those touching the boxes, the cascade's."""
    volume, lps_spacing, _ = to_lps(image)
    model_shape = resampled_shape(volume.shape, lps_spacing, spacing)
    padded = [max(m, p) for m, p in zip(model_shape, patch, strict=True)]
    tiles = tile_slices(padded, patch, overlap)
    windows = [model_window(box, volume.shape, lps_spacing, spacing) for box in boxes]
    touching = [tile for tile in tiles
                if any(all(t.start < w.stop and w.start < t.stop for t, w in zip(tile, window.window, strict=True))
                       for window in windows)]
    ran = sum(len(tile_slices([max(w.stop - w.start, p) for w, p in zip(grown.window, patch, strict=True)],
                              patch, overlap))
              for grown in (model_window(box, volume.shape, lps_spacing, spacing, minimum=patch) for box in boxes))
    return len(tiles), len(touching), ran


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
    segmenter = predictors["cascade"].settings
    patch, target = list(segmenter.patch_size), list(segmenter.target_spacing)
    overlap = segmenter.tile_overlap
    print(f"# {package.name}@{package.version}, quality {args.quality}, precision {args.precision}, "
          f"{len(cases)} case(s) of {args.dataset}; torch {torch.__version__}, {args.threads} thread(s)")
    print("| case | full s | cascade s | cascade / full | labels equal on reference kidney+mass | "
          "k+m Dice cascade vs full | Dice k+m full / cascade | Dice tumor full / cascade | "
          "tiles: whole / touching boxes / cascade |"
          + (f" retiled (overlap {args.retiled}): labels equal / k+m Dice vs full |" if retiled else ""))
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if retiled else ""))
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    agreement: list[float] = []
    region_dice: list[float] = []
    floor: dict[str, list[float]] = {"agreement": [], "region_dice": []}
    shares: dict[str, list[float]] = {"touching": [], "ran": []}
    dice: dict[str, dict[str, list[float]]] = {mode: {"kidney_and_mass": [], "tumor": []} for mode in MODES}
    for index, case in enumerate(cases):
        folder = args.dataset / case
        image, reference = read_ct(folder / "imaging.nii.gz"), read_label_map(folder / "segmentation.nii.gz")
        labels: dict[str, np.ndarray] = {}
        boxes: list = []
        for mode in (MODES if index % 2 == 0 else reversed(MODES)):
            started = time.perf_counter()
            result = predictors[mode].segment(image, name=case)
            seconds[mode].append(time.perf_counter() - started)
            labels[mode] = sitk.GetArrayFromImage(result.labels)
            boxes = result.boxes or boxes
            metrics = compute_case_metrics(result.labels, reference)
            for region in dice[mode]:
                dice[mode][region].append(metrics.dice[region])
        kidney = sitk.GetArrayFromImage(reference) > 0
        agreement.append(float(np.mean(labels["full"][kidney] == labels["cascade"][kidney])))
        region_dice.append(dice_coefficient(labels["full"] > 0, labels["cascade"] > 0))
        whole, touching, ran = tile_counts(image, boxes, patch, target, overlap)
        shares["touching"].append(touching / whole)
        shares["ran"].append(ran / whole)
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
              f"{dice['full']['tumor'][-1]:.3f} / {dice['cascade']['tumor'][-1]:.3f} | "
              f"{whole} / {touching} / {ran} |{extra}", flush=True)
    print()
    ratio = statistics.median(c / f for c, f in zip(seconds["cascade"], seconds["full"], strict=True))
    print(f"median seconds per case: full {statistics.median(seconds['full']):.1f}, "
          f"cascade {statistics.median(seconds['cascade']):.1f}; median ratio cascade / full {ratio:.2f}")
    print(f"labels equal on the reference kidney-and-mass voxels: median {100 * statistics.median(agreement):.2f}%, "
          f"lowest {100 * min(agreement):.2f}%")
    print(f"Dice between the two runs' kidney-and-mass regions: median {statistics.median(region_dice):.4f}, "
          f"lowest {min(region_dice):.4f}")
    print(f"tiles touching the boxes (all of which an exact cascade would run): median "
          f"{100 * statistics.median(shares['touching']):.0f}% of the whole volume's; the cascade ran a median "
          f"{100 * statistics.median(shares['ran']):.0f}%")
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
