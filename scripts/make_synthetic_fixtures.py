"""Make the committed synthetic fixtures from the KiTS23 masks in ../shared (run once; see Testing/fixtures/NOTICE.md).

- Testing/fixtures/kits23_masks_3mm/case_XXXXX/segmentation.nii.gz: whole-abdomen KiTS masks resampled to
  3 x 3 x 3 mm and cropped head-to-feet to the kidneys +- 25 mm: inputs for generator and realism tests.
- Testing/fixtures/synthetic/case_XXXXX/: synthetic CTs with their masks (2 x 2 x 3 mm and 3 mm,
  LR x AP x SI); the first is the demo sample.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kidneytumorseg.image_io import read_label_map, write_image_atomic
from kidneytumorseg_training.synthetic.dataset import build_case, case_seed
from kidneytumorseg_training.synthetic.resample import anatomical_axes, resample_to_spacing

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "kits23-masks"
FIXTURES = REPO / "Testing" / "fixtures"
MASK_CASES = ["case_00021", "case_00035", "case_00105", "case_00119", "case_00147", "case_00182", "case_00217",
              "case_00252"]
# case name -> spacing (LR, AP, SI mm); the first is the demo sample.
SAMPLE_CASES = {"case_00112": (2.0, 2.0, 3.0), "case_00161": (3.0, 3.0, 3.0)}
MARGIN_MM = 25.0


def crop_to_kidneys(mask: sitk.Image, margin_mm: float = MARGIN_MM) -> sitk.Image:
    """Crop along the superior-inferior axis to the labelled region plus a margin (geometry kept)."""
    axis = anatomical_axes(mask).index(2)  # SimpleITK index axis running head-to-feet
    array = sitk.GetArrayViewFromImage(mask)
    numpy_axis = 2 - axis
    present = np.flatnonzero(np.any(array > 0, axis=tuple(a for a in range(3) if a != numpy_axis)))
    margin = int(np.ceil(margin_mm / mask.GetSpacing()[axis]))
    start = max(0, int(present[0]) - margin)
    stop = min(mask.GetSize()[axis], int(present[-1]) + margin + 1)
    index = [slice(None)] * 3
    index[axis] = slice(start, stop)
    return mask[tuple(index)]


def make_mask_fixtures() -> None:
    for case in MASK_CASES:
        full = read_label_map(SOURCE / case / "segmentation.nii.gz")
        mask = crop_to_kidneys(resample_to_spacing(full, (3.0, 3.0, 3.0), is_label=True))
        write_image_atomic(mask, FIXTURES / "kits23_masks_3mm" / case / "segmentation.nii.gz")
        logging.info("%s: %s", case, mask.GetSize())


def make_sample_fixtures() -> None:
    staging = FIXTURES / "synthetic" / ".staging"
    for case, spacing in SAMPLE_CASES.items():
        full = read_label_map(SOURCE / case / "segmentation.nii.gz")
        mask = crop_to_kidneys(resample_to_spacing(full, spacing, is_label=True))
        write_image_atomic(mask, staging / case / "segmentation.nii.gz")
        staged = staging / case / "segmentation.nii.gz"
        build_case(staged, FIXTURES / "synthetic" / case, case_seed(0, case), spacing=None, preview=True)
        logging.info("%s: %s", case, mask.GetSize())
    for path in sorted(staging.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    staging.rmdir()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    if not SOURCE.is_dir():
        raise SystemExit(f"{SOURCE} not found: the fixtures are made from the KiTS23 masks in ../shared.")
    make_mask_fixtures()
    make_sample_fixtures()


if __name__ == "__main__":
    main()
