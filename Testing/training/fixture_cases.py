"""The committed synthetic fixture cases (KiTS layout) as training cases; importable by any training test."""

from __future__ import annotations

from pathlib import Path

from kidneytumorseg_training.datasets import TrainingCase

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAMPLE_DIR = FIXTURES / "synthetic"
SAMPLE_CASES = ["case_00112", "case_00161"]


def training_case(case_id: str) -> TrainingCase:
    """A committed synthetic fixture case as a ``TrainingCase``."""
    folder = SAMPLE_DIR / case_id
    return TrainingCase(case_id, folder / "imaging.nii.gz", folder / "segmentation.nii.gz", "kits")
