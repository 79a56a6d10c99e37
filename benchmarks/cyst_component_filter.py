"""Where should small predicted cyst components be dropped? A sweep of ``min_cyst_component_ml``.

    .venv/bin/python benchmarks/cyst_component_filter.py work_data/synthetic_1.5x1.5x3 \\
        --cases-file work_runs/heldout20.txt --model kits-demo@1.3.0 --cascade \\
        [--thresholds 0,0.5,1,2,3,5] [--cache work_runs/cyst_filter_cache]

Each case is segmented once by the engine's Predictor with the package's own post-processing (the label map is
cached as .npz under --cache, so a second sweep costs no network time). Then, for each threshold, the cyst
components smaller than it take the most common label around them (the engine's ``min_cyst_component_ml``
rule, :func:`kidneytumorseg.postprocessing.remove_small_components` on the cyst label only), and the cases are
scored with the KiTS metrics. Prints:

1. the predicted cyst components by volume, split by whether they overlap a reference cyst;
2. per threshold: mean Dice of the three KiTS regions, mean surface Dice and HD95 of the mass, the cyst label's
   own Dice over the cases with a reference cyst, and in how many cases without a cyst a cyst is still predicted.

Choose the threshold on one set of held-out cases and report it on another. For the bundled demo model the data
are synthetic CT made from real KiTS23 masks.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from held_out_cases import load_package, read_cases
from scipy import ndimage

from kidneytumorseg.evaluation import CaseResult, summarize
from kidneytumorseg.image_io import read_ct, read_label_map
from kidneytumorseg.labels import CYST
from kidneytumorseg.metrics import compute_case_metrics_arrays, dice_coefficient
from kidneytumorseg.postprocessing import CONNECTIVITY_26, remove_small_components
from kidneytumorseg.predictor import PredictionOptions, Predictor


def predicted_labels(predictor: Predictor, dataset: Path, case: str, cache: Path | None) -> np.ndarray:
    """The predicted label array (z, y, x) of one case, from the cache when it is there."""
    cached = cache / f"{case}.npz" if cache else None
    if cached is not None and cached.is_file():
        return np.load(cached)["labels"]
    result = predictor.segment(read_ct(dataset / case / "imaging.nii.gz"), name=case)
    labels = sitk.GetArrayFromImage(result.labels).astype(np.uint8)
    if cached is not None:
        cache.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial.npz")
        np.savez_compressed(partial, labels=labels)
        partial.replace(cached)
    return labels


def cyst_components(labels: np.ndarray, reference: np.ndarray, voxel_ml: float) -> list[tuple[float, bool]]:
    """(volume in ml, overlaps a reference cyst) of each predicted cyst component."""
    components, found = ndimage.label(labels == CYST, structure=CONNECTIVITY_26)
    if not found:
        return []
    sizes = np.bincount(components.ravel(), minlength=found + 1)
    hits = np.bincount(components[reference == CYST].ravel(), minlength=found + 1)
    return [(float(sizes[i] * voxel_ml), bool(hits[i] > 0)) for i in range(1, found + 1)]


def _quantiles(values: list[float]) -> str:
    if not values:
        return "none"
    q = np.percentile(values, [10, 50, 90])
    return f"{len(values)} components, volume ml p10 {q[0]:.2f} / median {q[1]:.2f} / p90 {q[2]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--cases-file", type=Path)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--model", default="kits-demo")
    parser.add_argument("--cascade", action="store_true", help="use the package's localizer (coarse-to-fine)")
    parser.add_argument("--thresholds", default="0,0.5,1,2,3,5", help="comma-separated ml values (0 = off)")
    parser.add_argument("--cache", type=Path, help="folder for the predicted label maps (.npz)")
    parser.add_argument("--threads", type=int, help="torch threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    cases = read_cases(args.dataset, args.cases_file, args.limit)
    package = load_package(args.model)
    predictor = Predictor(package, PredictionOptions(cascade=args.cascade, device="cpu"))
    print(f"# {package.name}@{package.version} on {len(cases)} case(s) of {args.dataset}, cascade {args.cascade}, "
          f"package post-processing {predictor.postprocessing.to_dict()}")
    pairs = []
    true_parts: list[float] = []
    false_parts: list[float] = []
    for case in cases:
        reference_image = read_label_map(args.dataset / case / "segmentation.nii.gz")
        reference = sitk.GetArrayFromImage(reference_image)
        spacing = reference_image.GetSpacing()[::-1]
        labels = predicted_labels(predictor, args.dataset, case, args.cache)
        for volume, overlaps in cyst_components(labels, reference, float(np.prod(spacing)) / 1000.0):
            (true_parts if overlaps else false_parts).append(volume)
        pairs.append((case, labels, reference, spacing))
    print(f"predicted cyst components overlapping a reference cyst: {_quantiles(true_parts)}")
    print(f"predicted cyst components overlapping none:             {_quantiles(false_parts)}")
    print()
    print("| min cyst ml | kidney_and_mass | mass | tumor | mass SD | mass HD95 | cyst Dice (n) | cysts found |"
          " false-cyst cases |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threshold in thresholds:
        results, cyst_dice, found, false = [], [], 0, 0
        for case, labels, reference, spacing in pairs:
            filtered = remove_small_components(labels, spacing, threshold, which=(CYST,)) if threshold else labels
            results.append(CaseResult(case, compute_case_metrics_arrays(filtered, reference, spacing)))
            predicted, expected = filtered == CYST, reference == CYST
            if expected.any():
                cyst_dice.append(dice_coefficient(predicted, expected))
                found += int(predicted.any())
            elif predicted.any():
                false += 1
        regions = {r.region: r for r in summarize(results).regions}
        mass = regions["mass"]
        cyst = f"{statistics.fmean(cyst_dice):.3f} ({len(cyst_dice)})" if cyst_dice else "- (0)"
        print(f"| {threshold:g} | {regions['kidney_and_mass'].dice_mean:.4f} | {mass.dice_mean:.4f} | "
              f"{regions['tumor'].dice_mean:.4f} | {mass.surface_dice_mean:.4f} | {mass.hd95_mean:.1f} | {cyst} | "
              f"{found} | {false} of {len(pairs) - len(cyst_dice)} |", flush=True)


if __name__ == "__main__":
    main()
