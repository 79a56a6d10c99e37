"""Peak memory of synthetic-CT generation per voxel, measured in a child process.

    .venv/bin/python benchmarks/generator_memory.py ../shared/data/kits23-masks/case_00003/segmentation.nii.gz

Runs `kidneytumorseg-train synth` on the mask at its native grid and prints the child's maximum resident
set size (getrusage), in total and per voxel of the grid.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mask", type=Path)
    args = parser.parse_args()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(args.mask))
    reader.ReadImageInformation()
    voxels = 1
    for n in reader.GetSize():
        voxels *= n
    with tempfile.TemporaryDirectory() as work:
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("kidneytumorseg-train")), "synth", str(args.mask),
                        "-o", str(Path(work) / "ct.nii.gz"), "--seed", "1"], check=True, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"{'generator memory':<22} | value")
    print(f"{'-' * 22}-|------")
    print(f"{'grid (x, y, z)':<22} | {'x'.join(map(str, reader.GetSize()))} ({voxels / 1e6:.1f} M voxels)")
    print(f"{'peak resident memory':<22} | {peak / 2**30:.2f} GiB")
    print(f"{'per voxel':<22} | {peak / voxels:.1f} bytes")
    print(f"{'wall time':<22} | {seconds:.0f} s")


if __name__ == "__main__":
    main()
