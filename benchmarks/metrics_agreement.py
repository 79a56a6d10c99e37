"""Our KiTS metrics against the reference definition (kits23's code path: np.isin region masks and
DeepMind's surface-distance), on real KiTS23 masks with perturbed predictions.

    .venv/bin/python benchmarks/metrics_agreement.py            # committed crops + 5 full masks from ../shared

Prints the largest absolute difference of Dice, surface Dice and HD95 over all regions and cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import surface_distance as reference
from scipy import ndimage

from kidneytumorseg.labels import CYST, KITS_REGIONS, TUMOR
from kidneytumorseg.metrics import compute_case_metrics_arrays

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "kits23-masks"
FULL_CASES = ["case_00004", "case_00021", "case_00061", "case_00100", "case_00200"]


def perturbations(labels: np.ndarray) -> dict[str, np.ndarray]:
    swapped = labels.copy()
    swapped[labels == TUMOR], swapped[labels == CYST] = CYST, TUMOR
    grown = labels.copy()
    grown[ndimage.binary_dilation(labels == TUMOR) & (labels > 0)] = TUMOR
    return {
        "shift along axis 0": np.roll(labels, 1, axis=0),
        "shift in-plane": np.roll(labels, 2, axis=2),
        "erosion": np.where(ndimage.binary_erosion(labels > 0), labels, 0),
        "grown tumor": grown,
        "tumor-cyst swap": swapped,
    }


def reference_metrics(pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, tuple[float, float, float]]:
    out = {}
    for region in KITS_REGIONS:
        p, g = np.isin(pred, region.labels), np.isin(ref, region.labels)
        if not p.any() and not g.any():
            out[region.name] = (1.0, 1.0, 0.0)
        elif not p.any() or not g.any():
            out[region.name] = (0.0, 0.0, np.inf)
        else:
            d = reference.compute_surface_distances(g, p, spacing)
            dice = 2 * np.count_nonzero(p & g) / (np.count_nonzero(p) + np.count_nonzero(g))
            out[region.name] = (dice, reference.compute_surface_dice_at_tolerance(d, region.tolerance_mm),
                                reference.compute_robust_hausdorff(d, 95))
    return out


def main() -> None:
    paths = sorted((REPO / "Testing/fixtures/kits23_crops").glob("case_*/segmentation.nii.gz"))
    if SHARED.is_dir():
        paths += [SHARED / case / "segmentation.nii.gz" for case in FULL_CASES]
    worst = {"Dice": 0.0, "surface Dice": 0.0, "HD95 (mm)": 0.0}
    results = 0
    for path in paths:
        image = sitk.ReadImage(str(path))
        labels, spacing = sitk.GetArrayFromImage(image), image.GetSpacing()[::-1]
        for prediction in perturbations(labels).values():
            ours = compute_case_metrics_arrays(prediction, labels, spacing)
            theirs = reference_metrics(prediction, labels, spacing)
            for region in KITS_REGIONS:
                d, s, h = theirs[region.name]
                worst["Dice"] = max(worst["Dice"], abs(ours.dice[region.name] - d))
                worst["surface Dice"] = max(worst["surface Dice"], abs(ours.surface_dice[region.name] - s))
                if np.isfinite(h):
                    worst["HD95 (mm)"] = max(worst["HD95 (mm)"], abs(ours.hd95_mm[region.name] - h))
                results += 1
    print(f"{len(paths)} real masks x 5 perturbations = {results} region results "
          f"({'with' if SHARED.is_dir() else 'without'} the full masks of ../shared)")
    print(f"{'metric':<14} | max |ours - reference|")
    print(f"{'-' * 14}-|----------------------")
    for name, value in worst.items():
        print(f"{name:<14} | {value:.2g}")


if __name__ == "__main__":
    main()
