"""Time the README's main job: segment the bundled sample CT with the bundled model, as whole processes.

    .venv/bin/python benchmarks/sample_segmentation.py [--repeats 3] [--model kits-demo]

Each repeat runs ``kidneytumorseg predict`` on the sample in a fresh process (Python start, imports, model
loading and verification, segmentation, writing the label map, the .seg.nrrd and the overlay) at the default
settings, and the table gives the median. The label map is also scored against the sample's reference mask
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

import torch

from kidneytumorseg.image_io import read_label_map
from kidneytumorseg.metrics import compute_case_metrics

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "KidneyTumorSeg" / "Resources" / "SampleData" / "kits-synthetic-00112"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="kits-demo")
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("kidneytumorseg")), "predict", "-i",
               str(SAMPLE / "imaging.nii.gz"), "--model", args.model, "--overlay", "--progress", "none"]
    seconds = []
    with tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            out = Path(work) / f"run{repeat}"
            started = time.perf_counter()
            subprocess.run([*command, "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - started)
        labels = sorted(out.glob("*.nii.gz"))[0]
        metrics = compute_case_metrics(read_label_map(labels), read_label_map(SAMPLE / "segmentation.nii.gz"))
    print(f"# bundled sample segmentation, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| repeat | seconds |")
    print("|---|---|")
    for repeat, value in enumerate(seconds, 1):
        print(f"| {repeat} | {value:.1f} |")
    print(f"| **median** | **{statistics.median(seconds):.1f}** |")
    print()
    print("| region | Dice | surface Dice |")
    print("|---|---|---|")
    for region, dice in metrics.dice.items():
        print(f"| {region} | {dice:.3f} | {metrics.surface_dice[region]:.3f} |")


if __name__ == "__main__":
    main()
