"""The bundled model and sample: the README's main job, checked as a user would see it."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from kidneytumorseg.image_io import read_ct, read_label_map
from kidneytumorseg.labels import CYST
from kidneytumorseg.metrics import compute_case_metrics, dice_coefficient
from kidneytumorseg.model_store import ModelStore, default_bundled_dir
from kidneytumorseg.predictor import PredictionOptions, Predictor

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "KidneyTumorSeg" / "Resources" / "SampleData" / "kits-synthetic-00112"


@pytest.fixture(scope="module")
def package():
    store = ModelStore(default_bundled_dir(), ROOT / "no-user-models")
    return store.resolve("kits-demo")


def test_the_newest_bundled_version_is_an_ensemble_with_a_localizer(package):
    assert len(package.segmenters) >= 2, "the README's main job runs an ensemble (model card: kits-demo 1.2.0)"
    assert package.localizer is not None


def test_every_bundled_version_is_complete_small_and_verified():
    store = ModelStore(default_bundled_dir(), ROOT / "no-user-models")
    entries = [entry for entry in store.list() if entry.name == "kits-demo"]
    assert len(entries) >= 2, "several versions side by side"
    for entry in entries:
        package = store.verify(entry.spec)
        assert package.path.is_relative_to(default_bundled_dir())
        # 1.1.0 has one segmenter (model card): every version must segment, and cascade, on its own.
        assert len(package.segmenters) >= 1 and package.localizer is not None, entry.spec
        size = sum(f.stat().st_size for f in package.path.iterdir())
        assert size <= 30 * 2**20, f"{entry.spec} must stay within 30 MB, it is {size / 2**20:.1f} MB"
        assert "synthetic" in package.provenance.get("data", "").lower(), entry.spec
        assert (package.path.parent / "README.md").is_file(), "the model card belongs next to the package"


@pytest.mark.parametrize("cascade", [True, False])
def test_bundled_model_segments_the_bundled_sample(package, cascade):
    image = read_ct(SAMPLE / "imaging.nii.gz")
    result = Predictor(package, PredictionOptions(device="cpu", cascade=cascade)).segment(image)
    assert result.labels.GetSize() == image.GetSize()
    assert result.labels.GetSpacing() == image.GetSpacing()
    assert result.labels.GetDirection() == image.GetDirection()
    metrics = compute_case_metrics(result.labels, read_label_map(SAMPLE / "segmentation.nii.gz"))
    # Chance level is ~0 (the kidneys are 1% of the volume); a trained model is far above it.
    assert metrics.dice["kidney_and_mass"] > 0.9, metrics.dice
    assert 100 < result.volumes_ml["kidney"] < 1000
    if cascade:  # the newest version segments cysts (model card: 12.1 of the sample's 19.0 ml, cyst Dice 0.75)
        predicted = sitk.GetArrayViewFromImage(result.labels) == CYST
        expected = sitk.GetArrayViewFromImage(read_label_map(SAMPLE / "segmentation.nii.gz")) == CYST
        assert dice_coefficient(predicted, expected) > 0.5
