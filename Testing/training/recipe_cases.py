"""A tiny KiTS-layout dataset for the recipe tests, and the check every recipe test makes: train at the smoke
budget, export, segment through the engine.

The two committed synthetic cases are cropped to their kidney that holds a tumor and a cyst, with a margin
(about 13 x 11 x 10 cm and 11 x 9 x 11 cm): small enough that any recipe's spacing gives volumes of a few dozen
voxels a side, so preprocessing, training and prediction take seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from fixture_cases import SAMPLE_CASES, SAMPLE_DIR
from scipy import ndimage

from kidneytumorseg.model_package import ModelPackage
from kidneytumorseg.predictor import PredictionOptions, Predictor

MARGIN = 4  # voxels around the kidney


def _kidney_with_tumor_box(label: np.ndarray) -> tuple[slice, ...]:
    components, _ = ndimage.label(label > 0)
    boxes = ndimage.find_objects(components)
    chosen = next(i for i, box in enumerate(boxes) if np.any(label[box][components[box] == i + 1] == 2))
    return tuple(slice(max(0, s.start - MARGIN), min(n, s.stop + MARGIN))
                 for s, n in zip(boxes[chosen], label.shape, strict=True))


def write_tiny_kits_dataset(folder: Path) -> Path:
    """``folder/case_00112`` and ``folder/case_00161`` (imaging + segmentation), cropped around a kidney."""
    for case in SAMPLE_CASES:
        image = sitk.ReadImage(str(SAMPLE_DIR / case / "imaging.nii.gz"))
        label = sitk.ReadImage(str(SAMPLE_DIR / case / "segmentation.nii.gz"))
        box = _kidney_with_tumor_box(sitk.GetArrayViewFromImage(label))
        index = [s.start for s in reversed(box)]
        size = [s.stop - s.start for s in reversed(box)]
        (folder / case).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.RegionOfInterest(image, size, index), str(folder / case / "imaging.nii.gz"))
        sitk.WriteImage(sitk.RegionOfInterest(label, size, index), str(folder / case / "segmentation.nii.gz"))
    return folder


def assert_segments_like_its_input(package: Path, dataset: Path, members: int = 1,
                                   cases: tuple[str, ...] = ("case_00161",)) -> ModelPackage:
    """Segment ``cases`` of ``dataset`` with ``package`` through the engine's predictor (all segmenter members):
    the labels are on the input's exact grid and in 0..3. Returns the loaded package."""
    loaded = ModelPackage.load(package)
    assert len(loaded.segmenters) == members
    predictor = Predictor(loaded, PredictionOptions(quality="default", device="cpu"))
    assert len(predictor.members) == members
    for case in cases:
        image = sitk.ReadImage(str(dataset / case / "imaging.nii.gz"))
        result = predictor.segment(image)
        labels = result.labels
        assert labels.GetSize() == image.GetSize()
        assert labels.GetSpacing() == image.GetSpacing()
        assert labels.GetOrigin() == image.GetOrigin()
        assert labels.GetDirection() == image.GetDirection()
        values = set(np.unique(sitk.GetArrayViewFromImage(labels)).tolist())
        assert values <= {0, 1, 2, 3}, values
    return loaded
