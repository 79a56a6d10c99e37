"""Time the README's main job: segment the bundled sample CT with the bundled model, as whole processes.

    .venv/bin/python benchmarks/sample_segmentation.py [--repeats 3] [--model kits-demo] \
        [--variants auto,fp32,fp32-eager]

Each repeat runs ``kidneytumorseg predict`` on the sample in a fresh process (Python start, imports, model
loading and verification, segmentation, writing the label map, the .seg.nrrd and the overlay) at the default
settings, and the table gives the median. ``--variants`` times several settings side by side, interleaved per
repeat: ``auto`` (the default precision), ``fp32``, ``half`` (``--precision``), and ``fp32-eager`` (float32 with
the CPU fast path off, ``KIDNEYTUMORSEG_CPU_FAST_PATH=0``: the eager PyTorch network). The labels of the
first variant are scored. The label map is also scored against the sample's reference mask
(the real KiTS23 expert mask of case_00112 the synthetic CT was made from; case 00112 is held out of
training).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
import torch

from kidneytumorseg.image_io import read_label_map
from kidneytumorseg.labels import CYST
from kidneytumorseg.metrics import compute_case_metrics, dice_coefficient, label_volumes_ml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "KidneyTumorSeg" / "Resources" / "SampleData" / "kits-synthetic-00112"
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {  # name: (--precision, extra environment)
    "auto": ("auto", {}),
    "fp32": ("fp32", {}),
    "half": ("half", {}),
    "fp32-eager": ("fp32", {"KIDNEYTUMORSEG_CPU_FAST_PATH": "0"}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="kits-demo")
    parser.add_argument("--variants", default="auto",
                        help=f"comma-separated, from {', '.join(VARIANTS)} (default auto)")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}.")
    command = [str(Path(sys.executable).with_name("kidneytumorseg")), "predict", "-i",
               str(SAMPLE / "imaging.nii.gz"), "--model", args.model, "--overlay", "--progress", "none"]
    seconds: dict[str, list[float]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            for variant in variants:
                precision, environment = VARIANTS[variant]
                out = Path(work) / f"{variant}-run{repeat}"
                started = time.perf_counter()
                subprocess.run([*command, "--precision", precision, "-o", str(out)], check=True,
                               stdout=subprocess.DEVNULL, env=os.environ | environment)
                seconds[variant].append(time.perf_counter() - started)
        labels = sorted((Path(work) / f"{variants[0]}-run0").glob("*.nii.gz"))[0]
        predicted, reference = read_label_map(labels), read_label_map(SAMPLE / "segmentation.nii.gz")
        metrics = compute_case_metrics(predicted, reference)
        cyst = _cyst_line(predicted, reference)
    print(f"# bundled sample segmentation, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| repeat | " + " | ".join(f"{variant} (s)" for variant in variants) + " |")
    print("|---|" + "---|" * len(variants))
    for repeat in range(args.repeats):
        print(f"| {repeat + 1} | " + " | ".join(f"{seconds[v][repeat]:.1f}" for v in variants) + " |")
    print("| **median** | " + " | ".join(f"**{statistics.median(seconds[v]):.1f}**" for v in variants) + " |")
    print()
    print(f"Scored: the {variants[0]} labels.")
    print("| region | Dice | surface Dice |")
    print("|---|---|---|")
    for region, dice in metrics.dice.items():
        print(f"| {region} | {dice:.3f} | {metrics.surface_dice[region]:.3f} |")
    print(cyst)


def _cyst_line(predicted: sitk.Image, reference: sitk.Image) -> str:
    """The cyst label alone (the KiTS regions count it only inside the mass): its Dice and both volumes."""
    ours, theirs = sitk.GetArrayViewFromImage(predicted), sitk.GetArrayViewFromImage(reference)
    volumes = [label_volumes_ml(array, reference.GetSpacing())["cyst"] for array in (ours, theirs)]
    return (f"cyst (label 3 alone): Dice {dice_coefficient(ours == CYST, theirs == CYST):.3f}, "
            f"predicted {volumes[0]:.1f} ml, reference {volumes[1]:.1f} ml")


if __name__ == "__main__":
    main()
