"""How far intensity alone gets: best-HU-interval classifier per label, fitted on half the cases of a
synthetic dataset and scored on the other half (held-out patients).

    .venv/bin/python benchmarks/intensity_baseline.py work_data/synthetic_1.5x1.5x3
    .venv/bin/python benchmarks/intensity_baseline.py --fixtures          # the committed 3 mm masks, 2 seeds each

Prints, per label, the fitted interval, training Dice and held-out Dice (mean and median over cases), on
the whole volume and inside the kidney-and-mass region (i.e. told where the kidney is).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.labels import LABEL_NAMES
from kidneytumorseg_training.synthetic.generator import generate_ct
from kidneytumorseg_training.synthetic.intensity_baseline import dice, fit_interval

REPO = Path(__file__).resolve().parents[1]


def load_dataset(folder: Path, max_cases: int | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    cases = sorted(p for p in folder.iterdir() if (p / "synthetic.json").is_file())[:max_cases]
    return [(p.name, sitk.GetArrayFromImage(sitk.ReadImage(str(p / "imaging.nii.gz"))),
             sitk.GetArrayFromImage(sitk.ReadImage(str(p / "segmentation.nii.gz")))) for p in cases]


def load_fixtures() -> list[tuple[str, np.ndarray, np.ndarray]]:
    made = []
    for index, path in enumerate(sorted((REPO / "Testing/fixtures/kits23_masks_3mm").glob("case_*"))):
        mask = sitk.ReadImage(str(path / "segmentation.nii.gz"))
        for seed in (1, 2):
            ct = sitk.GetArrayFromImage(generate_ct(mask, seed=100 * index + seed).image)
            made.append((path.name, ct, sitk.GetArrayFromImage(mask)))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?")
    parser.add_argument("--fixtures", action="store_true")
    parser.add_argument("--max-cases", type=int, default=120, help="cases read (memory bound); default 120")
    args = parser.parse_args()
    cases = load_fixtures() if args.fixtures or args.dataset is None else load_dataset(args.dataset, args.max_cases)
    names = sorted({name for name, _, _ in cases})
    train_names = set(names[: len(names) // 2])
    train = [(ct, labels) for name, ct, labels in cases if name in train_names]
    test = [(ct, labels) for name, ct, labels in cases if name not in train_names]
    print(f"{len(train)} training / {len(test)} held-out volumes (patients split, {len(names)} patients)")
    print(f"{'label':<8} {'where':<16} {'HU interval':<14} {'train Dice':>10} {'held-out mean':>14} {'median':>8}")
    for label, name in LABEL_NAMES.items():
        for where in ("whole volume", "inside kidney"):
            def select(ct, labels, where=where):
                return (ct, labels) if where == "whole volume" else (ct[labels > 0], labels[labels > 0])
            fit_cases = [select(ct, labels) for ct, labels in train]
            interval = fit_interval((ct, labels == label) for ct, labels in fit_cases if (labels == label).any())
            scores = []
            for ct, labels in test:
                ct_s, labels_s = select(ct, labels)
                if (labels_s == label).any():
                    scores.append(dice(interval.predict(ct_s), labels_s == label))
            print(f"{name:<8} {where:<16} [{interval.low:>5.0f},{interval.high:>5.0f}) {interval.training_dice:>10.3f} "
                  f"{statistics.mean(scores):>14.3f} {statistics.median(scores):>8.3f}")


if __name__ == "__main__":
    main()
