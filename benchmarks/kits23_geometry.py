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

from kidneytumorseg.geometry import resampled_shape
from kidneytumorseg.sliding_window import tile_starts


def extents_mm(masks: Path) -> dict[str, np.ndarray]:
    """Case id -> extent in mm along the patient axes (S, P, L), whatever the files' index order."""
    result = {}
    for path in sorted(masks.glob("case_*/segmentation.nii.gz")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        extent = np.asarray(reader.GetSize(), dtype=float) * np.asarray(reader.GetSpacing(), dtype=float)
        direction = np.abs(np.asarray(reader.GetDirection(), dtype=float).reshape(3, 3))
        # index axis i runs mostly along physical axis argmax |direction[:, i]| (0 x = L, 1 y = P, 2 z = S)
        physical = [int(np.argmax(direction[:, i])) for i in range(3)]
        by_axis = {axis: extent[i] for i, axis in enumerate(physical)}
        result[path.parent.name] = np.asarray([by_axis[2], by_axis[1], by_axis[0]])
    if not result:
        raise SystemExit(f"No case_*/segmentation.nii.gz under {masks}; give the KiTS23 masks folder.")
    return result


def tiles(extent_mm: np.ndarray, spacing: list[float], patch: list[int]) -> int:
    shape = resampled_shape([1, 1, 1], list(extent_mm), spacing)
    return int(np.prod([len(tile_starts(max(n, p), p, 0.5)) for n, p in zip(shape, patch, strict=True)]))


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
    for index in np.argsort(distance, kind="stable")[: args.nearest]:
        name = list(extents)[index]
        e = extents[name]
        print(f"  {name}  {e[0]:5.0f} x {e[1]:4.0f} x {e[2]:4.0f} mm  {tiles(e, args.spacing, args.patch):3d} tiles")


if __name__ == "__main__":
    main()
