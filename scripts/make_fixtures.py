"""Make the committed test fixtures from the real KiTS23 masks in ../shared/data/kits23-masks.

Metric fixtures (``make_metric_fixtures``): native-resolution crops of real KiTS23 expert segmentations
around one kidney with its tumor (two of them with cysts as well), written as
``Testing/fixtures/kits23_crops/case_XXXXX/segmentation.nii.gz``. SimpleITK slicing keeps each crop's
origin, spacing and direction, so the crops are real geometry, not just real shapes.

Run once from the repository root: ``.venv/bin/python scripts/make_fixtures.py``. The fixtures' licence and
citation are in Testing/fixtures/NOTICE.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "KidneyTumorSeg"))  # runs without the editable install too

from kidneytumorseg.image_io import read_label_map, write_image_atomic  # noqa: E402
from kidneytumorseg.labels import CYST, TUMOR  # noqa: E402

LOGGER = logging.getLogger("make_fixtures")

DEFAULT_MASKS_DIR = REPO_ROOT.parent / "shared" / "data" / "kits23-masks"
METRIC_FIXTURES_DIR = REPO_ROOT / "Testing" / "fixtures" / "kits23_crops"

# Chosen for variety at a small size: slice spacing 3, 5 and 2.5 mm; 00010 has a kidney with a tumor, 00021
# and 00051 a kidney with tumor and cyst.
METRIC_FIXTURE_CASES: tuple[str, ...] = ("case_00010", "case_00021", "case_00051")
# Background voxels kept around the kidney, so shifted or dilated copies stay inside the crop.
CROP_MARGIN_VOXELS = 4
MAX_METRIC_FIXTURES_BYTES = 300_000


def crop_around_tumor_kidney(label_map: sitk.Image, margin: int = CROP_MARGIN_VOXELS) -> sitk.Image:
    """Crop ``label_map`` to the connected foreground component holding the most tumor (and cyst) voxels.

    The crop is the component's bounding box grown by ``margin`` voxels (clipped to the image), taken with
    SimpleITK slicing so the origin, spacing and direction stay those of the original voxels.
    """
    components = sitk.ConnectedComponent(label_map > 0)
    labels = sitk.GetArrayViewFromImage(label_map)
    component_ids = sitk.GetArrayViewFromImage(components)
    mass = (labels == TUMOR) | (labels == CYST)
    counts = np.bincount(component_ids[mass], minlength=int(component_ids.max()) + 1)
    counts[0] = 0
    if counts.max() == 0:
        raise ValueError("This label map has no tumor or cyst; pick a case with a renal mass.")
    chosen = int(np.argmax(counts))
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(components)
    box = statistics.GetBoundingBox(chosen)  # (x, y, z, size_x, size_y, size_z) in image index order
    dimension = label_map.GetDimension()
    start = [max(box[i] - margin, 0) for i in range(dimension)]
    stop = [min(box[i] + box[i + dimension] + margin, label_map.GetSize()[i]) for i in range(dimension)]
    return sitk.Cast(label_map[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]], sitk.sitkUInt8)


def make_metric_fixtures(
    masks_dir: Path = DEFAULT_MASKS_DIR,
    output_dir: Path = METRIC_FIXTURES_DIR,
    cases: tuple[str, ...] = METRIC_FIXTURE_CASES,
) -> list[Path]:
    """Write the real-mask crops used by the metric and evaluation tests; return the files written."""
    written = []
    for case in cases:
        source = masks_dir / case / "segmentation.nii.gz"
        crop = crop_around_tumor_kidney(read_label_map(source))
        target = write_image_atomic(crop, output_dir / case / "segmentation.nii.gz")
        counts = np.bincount(sitk.GetArrayViewFromImage(crop).ravel(), minlength=4)
        LOGGER.info(
            "%s: size %s, spacing %s, voxels per label %s, %d bytes",
            target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else target,
            crop.GetSize(),
            tuple(round(s, 3) for s in crop.GetSpacing()),
            counts.tolist(),
            target.stat().st_size,
        )
        written.append(target)
    total = sum(path.stat().st_size for path in written)
    if total > MAX_METRIC_FIXTURES_BYTES:
        raise RuntimeError(
            f"The metric fixtures take {total} bytes, over the {MAX_METRIC_FIXTURES_BYTES} budget; "
            f"choose smaller cases or a smaller margin."
        )
    LOGGER.info("metric fixtures: %d files, %d bytes in all", len(written), total)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--masks-dir",
        type=Path,
        default=DEFAULT_MASKS_DIR,
        help="KiTS23 masks (case_XXXXX/segmentation.nii.gz)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if not args.masks_dir.is_dir():
        LOGGER.error("%s not found: the fixtures are made from the KiTS23 masks; pass --masks-dir.", args.masks_dir)
        return 2
    make_metric_fixtures(args.masks_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
