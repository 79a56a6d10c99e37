"""Tumor Dice of an evaluation grouped by the synthetic case's contrast phase, kidney-tumor contrast and tumor size.

    .venv/bin/python benchmarks/evaluate_model.py work_data/synthetic_1.5x1.5x3 --cases-file work_runs/test_ids.txt \\
        --limit 20 --model kits-demo@1.1.0 --cascade > eval.md
    .venv/bin/python benchmarks/tumor_dice_by_phase.py work_data/synthetic_1.5x1.5x3 eval.md

Reads the per-case table that evaluate_model.py prints, each case's ``synthetic.json`` (the phase and the mean
HU drawn for kidney cortex and tumor) and its reference ``segmentation.nii.gz`` (the tumor volume). Prints one row
per case, the mean tumor Dice per phase and per tumor size, to tell data that are ambiguous by design
(unenhanced: tumor and kidney alike) and small tumors from other errors of the network.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import SimpleITK as sitk

from kidneytumorseg.image_io import read_label_map
from kidneytumorseg.metrics import label_volumes_ml

SIZE_GROUPS_ML = ((0.0, 10.0), (10.0, 100.0), (100.0, float("inf")))


def read_tumor_dice(evaluation: Path) -> dict[str, float]:
    """``{case: tumor Dice}`` from evaluate_model.py's table (columns case, kidney_and_mass, mass, tumor, seconds)."""
    dice = {}
    for line in evaluation.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) in (5, 6) and cells[0].startswith("case_"):  # 6: with the cyst column
            dice[cells[0]] = float(cells[3])
    if not dice:
        raise SystemExit(f"{evaluation} holds no per-case table of evaluate_model.py; give that script's output.")
    return dice


def case_contrast(dataset: Path, case: str) -> tuple[str, float, float]:
    """(phase, kidney HU, tumor HU) of a synthetic case."""
    info = json.loads((dataset / case / "synthetic.json").read_text())
    return info["phase"], float(info["tissue_hu"]["kidney"]), float(info["tissue_hu"]["tumor"])


def tumor_volume_ml(dataset: Path, case: str) -> float:
    """Volume of the reference tumor (label 2) of a case, in ml."""
    image = read_label_map(dataset / case / "segmentation.nii.gz")
    return label_volumes_ml(sitk.GetArrayViewFromImage(image), image.GetSpacing())["tumor"]


def phase_table(dataset: Path, dice: dict[str, float]) -> list[str]:
    """The printed lines: one per case, then the mean tumor Dice per phase and per tumor size."""
    lines = ["| case | phase | kidney HU | tumor HU | kidney - tumor | tumor ml | tumor Dice |",
             "|---|---|---|---|---|---|---|"]
    by_phase: dict[str, list[float]] = {}
    by_size: dict[tuple[float, float], list[float]] = {group: [] for group in SIZE_GROUPS_ML}
    for case, value in dice.items():
        phase, kidney, tumor = case_contrast(dataset, case)
        volume = tumor_volume_ml(dataset, case)
        by_phase.setdefault(phase, []).append(value)
        by_size[next(group for group in SIZE_GROUPS_ML if group[0] <= volume < group[1])].append(value)
        lines.append(f"| {case} | {phase} | {kidney:.1f} | {tumor:.1f} | {kidney - tumor:.1f} | {volume:.1f} | "
                     f"{value:.3f} |")
    lines.append("")
    for phase, values in sorted(by_phase.items()):
        lines.append(f"{phase:<17} {len(values):3d} case(s)  mean tumor Dice {statistics.fmean(values):.3f}")
    enhanced = [value for phase, values in by_phase.items() if phase != "unenhanced" for value in values]
    if enhanced:
        mean = statistics.fmean(enhanced)
        lines.append(f"{'all enhanced':<17} {len(enhanced):3d} case(s)  mean tumor Dice {mean:.3f}")
    lines.append("")
    for (low, high), values in by_size.items():
        if values:
            label = f"tumor {low:g}-{high:g} ml" if high != float("inf") else f"tumor >= {low:g} ml"
            lines.append(f"{label:<17} {len(values):3d} case(s)  mean tumor Dice {statistics.fmean(values):.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, help="synthetic dataset (case_XXXXX/synthetic.json)")
    parser.add_argument("evaluation", type=Path, help="output of benchmarks/evaluate_model.py")
    args = parser.parse_args()
    print("\n".join(phase_table(args.dataset, read_tumor_dice(args.evaluation))))


if __name__ == "__main__":
    main()
