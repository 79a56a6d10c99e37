"""How large is a KiTS-sized case? The extent of the KiTS23 volumes, read from the headers of their masks.

    .venv/bin/python benchmarks/kits23_geometry.py ../shared/data/kits23-masks [--spacing 3 2 2] [--patch 64 128 128]

Prints the quartiles of each axis's extent in mm (the masks share their CT's grid), the cases nearest the median
extent (candidates for a "KiTS-sized" benchmark case; the synthetic CT made from that mask has the same extent),
and how many sliding-window tiles (overlap 0.5, nnU-Net's placement) such a volume needs at a model spacing and
tile. Only headers are read, so it takes seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.geometry import orientation_of, resampled_shape
from kidneytumorseg.sliding_window import tile_starts


def extents_mm(masks: Path) -> dict[str, np.ndarray]:
    """Case id -> extent in mm along the patient axes (S, P, L), whatever the files' index order."""
    result = {}
    for path in sorted(masks.glob("case_*/segmentation.nii.gz")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        # the reader after ReadImageInformation has the geometry getters orientation_of reads, and no pixels
        orientation = orientation_of(reader)  # type: ignore[arg-type]
        result[path.parent.name] = np.asarray(orientation.lps_shape, dtype=float) * orientation.lps_spacing
    if not result:
        raise SystemExit(f"No case_*/segmentation.nii.gz under {masks}; give the KiTS23 masks folder.")
    return result


def tiles(extent_mm: np.ndarray, spacing: list[float], patch: list[int]) -> int:
    shape = resampled_shape([1, 1, 1], list(extent_mm), spacing)
    return int(np.prod([len(tile_starts(n, p, 0.5)) for n, p in zip(shape, patch, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("masks", type=Path)
    parser.add_argument("--spacing", type=float, nargs=3, default=[3.0, 2.0, 2.0], help="model spacing, mm")
    parser.add_argument("--patch", type=int, nargs=3, default=[64, 128, 128], help="tile in voxels")
    parser.add_argument("--nearest", type=int, default=5, help="cases nearest the median extent to list")
    args = parser.parse_args()
    extents = extents_mm(args.masks)
    table = np.stack(list(extents.values()))
    median = np.median(table, axis=0)
    print(f"{len(extents)} cases of {args.masks}; extent in mm along (S, P, L) = (head-feet, front-back, left-right):")
    for name, q in (("25th percentile", 25), ("median", 50), ("75th percentile", 75)):
        values = np.percentile(table, q, axis=0)
        print(f"  {name:16s} {values[0]:6.0f} {values[1]:6.0f} {values[2]:6.0f}   "
              f"{tiles(values, args.spacing, args.patch):3d} tiles of {args.patch} at {args.spacing} mm")
    distance = np.linalg.norm((table - median) / median, axis=1)
    print(f"cases nearest the median extent (tiles of {args.patch} at {args.spacing} mm):")
    names = list(extents)
    for index in np.argsort(distance, kind="stable")[: args.nearest]:
        name, e = names[index], table[index]
        print(f"  {name}  {e[0]:5.0f} x {e[1]:4.0f} x {e[2]:4.0f} mm  {tiles(e, args.spacing, args.patch):3d} tiles")


if __name__ == "__main__":
    main()
