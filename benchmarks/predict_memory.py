"""Peak memory and time of ``kidneytumorseg predict`` on one CT, measured in a child process.

    .venv/bin/python benchmarks/predict_memory.py work_data/big_ct_611.nii.gz

The CT is segmented by a model package with random weights (its labels are meaningless; memory and time
depend on the grid sizes, the patch and the network, not on the weights), with the whole-volume sliding
window (no cascade), on the CPU. Peak memory is the child's maximum resident set size (getrusage).
Make a 611 x 512 x 512 CT, the largest KiTS23 geometry, with:
    .venv/bin/kidneytumorseg-train synth ../shared/data/kits23-masks/case_00000/segmentation.nii.gz \\
        -o work_data/big_ct_611.nii.gz
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
import torch

from kidneytumorseg.model_package import write_package
from kidneytumorseg.networks import build_network, count_parameters, plan_network

NORMALIZATION = {"scheme": "clip_zscore", "clip": [-79, 304], "mean": 101.0, "std": 76.9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ct", type=Path)
    parser.add_argument("--spacing", default="3.0,1.5,1.5", help="model spacing si,ap,lr (mm)")
    parser.add_argument("--patch", default="48,96,96")
    parser.add_argument("--features", type=int, default=16, help="base features of the U-Net")
    parser.add_argument("--precision", choices=("auto", "fp32", "half"), default="auto",
                        help="the predict command's --precision (fp32 on a CPU: the channels-last oneDNN fast path)")
    args = parser.parse_args()
    spacing = [float(v) for v in args.spacing.split(",")]
    patch = [int(v) for v in args.patch.split(",")]
    with tempfile.TemporaryDirectory() as work:
        store = Path(work) / "store"
        torch.manual_seed(0)
        network = plan_network(patch, spacing, base_features=args.features, max_features=320).to_dict()
        module = build_network(network)
        write_package(store / "memory-test" / "1.0.0", name="memory-test", version="1.0.0",
                      preprocessing={"target_spacing": spacing, "normalization": NORMALIZATION},
                      network=network, patch_size=patch, inference={"tile_overlap": 0.5, "mirror_axes": [0, 1, 2]},
                      postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                                      "min_component_ml": 0.2, "hysteresis": None},
                      members=[({"name": "fold0"}, module.state_dict())])
        command = [str(Path(sys.executable).with_name("kidneytumorseg")), "predict", "-i", str(args.ct),
                   "-o", str(Path(work) / "out"), "--store-dir", str(store), "--model", "memory-test",
                   "--device", "cpu", "--quality", "fast", "--no-cascade", "--progress", "none",
                   "--precision", args.precision]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(args.ct))
    reader.ReadImageInformation()
    rows = [
        ("CT size (x, y, z)", "x".join(map(str, reader.GetSize()))),
        ("CT spacing (mm)", ", ".join(f"{s:.3g}" for s in reader.GetSpacing())),
        ("model spacing si,ap,lr / patch", f"{args.spacing} / {args.patch}"),
        ("network parameters", f"{count_parameters(module) / 1e6:.1f} M (base {args.features} features)"),
        ("device, threads, precision", f"cpu, {torch.get_num_threads()}, {args.precision}"),
        ("peak resident memory", f"{peak_gib:.2f} GiB"),
        ("wall time (whole process)", f"{seconds:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'predict memory':<{width}} | value")
    print(f"{'-' * width}-|------")
    for key, value in rows:
        print(f"{key:<{width}} | {value}")


if __name__ == "__main__":
    main()
