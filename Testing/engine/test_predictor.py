"""The predictor on a real (random-weight) model package: geometry, orientation, options, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from kidneytumorseg.errors import Cancelled, InputImageError, ModelPackageError, NotCTError
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.predictor import PredictionOptions, Predictor, image_from_array


@pytest.fixture(scope="module")
def store(random_package, tmp_path_factory):
    return ModelStore(tmp_path_factory.mktemp("bundled"), random_package)


@pytest.fixture(scope="module")
def predictor(store):
    return Predictor.from_store("random-test", PredictionOptions(device="cpu"), store)


@pytest.mark.parametrize("orientation", ["IPL", "RAS", "LPI", "SLA"])
def test_labels_are_on_exactly_the_input_grid_in_any_orientation(predictor, sample_ct, orientation):
    image = sitk.DICOMOrient(sample_ct, orientation)
    image.SetSpacing((image.GetSpacing()[0] * 1.3, *image.GetSpacing()[1:]))  # anisotropic on purpose
    labels = predictor.segment(image).labels
    assert labels.GetSize() == image.GetSize()
    assert labels.GetSpacing() == image.GetSpacing()
    assert labels.GetOrigin() == image.GetOrigin()
    assert labels.GetDirection() == image.GetDirection()
    assert set(np.unique(sitk.GetArrayViewFromImage(labels))) <= {0, 1, 2, 3}


def test_the_same_patient_stored_differently_gets_the_same_labels(predictor, sample_ct):
    stored = sitk.DICOMOrient(sample_ct, "RAS")
    a = sitk.DICOMOrient(predictor.segment(sample_ct).labels, "LPS")
    b = sitk.DICOMOrient(predictor.segment(stored).labels, "LPS")
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))


def test_quality_chooses_members_and_mirroring(store):
    fast = Predictor.from_store("random-test", PredictionOptions(device="cpu", quality="fast"), store)
    default = Predictor.from_store("random-test", PredictionOptions(device="cpu"), store)
    best = Predictor.from_store("random-test", PredictionOptions(device="cpu", quality="best"), store)
    assert len(fast.members) == 1 and len(default.members) == 2 and len(best.members) == 2
    assert fast.settings.mirror_axes == () and best.settings.mirror_axes == (0, 1, 2)
    chosen = Predictor.from_store("random-test", PredictionOptions(device="cpu", members=("fold1",)), store)
    assert chosen.segmenter_specs[0].name == "fold1"


def test_precision_reaches_every_stage(store):
    half = Predictor.from_store("random-test", PredictionOptions(device="cpu", precision="half"), store)
    assert half.half_precision and half.settings.half_precision
    assert half.cascade is not None and half.cascade.localizer.half_precision
    full = Predictor.from_store("random-test", PredictionOptions(device="cpu", precision="fp32"), store)
    assert not full.half_precision and not full.settings.half_precision
    assert full.cascade is not None and not full.cascade.localizer.half_precision
    with pytest.raises(InputImageError, match="precision must be one of auto, fp32, half"):
        PredictionOptions(precision="fp64")


def test_cascade_is_used_when_the_package_has_a_localizer(store, sample_ct):
    cascaded = Predictor.from_store("random-test", PredictionOptions(device="cpu"), store)
    whole = Predictor.from_store("random-test", PredictionOptions(device="cpu", cascade=False), store)
    assert cascaded.localizer is not None and whole.localizer is None
    assert whole.segment(sample_ct).boxes == []


def test_progress_is_monotonic_and_ends_at_one(predictor, sample_ct):
    seen = []
    predictor.segment(sample_ct, progress=lambda stage, fraction: seen.append(fraction))
    assert seen == sorted(seen) and seen[-1] == 1.0


def test_cancelling_raises_between_tiles(predictor, sample_ct):
    class AfterFirstReport:
        def __init__(self):
            self.reported = False

        def is_set(self):
            return self.reported

    cancel = AfterFirstReport()
    with pytest.raises(Cancelled):
        predictor.segment(sample_ct, progress=lambda *_: setattr(cancel, "reported", True), cancel=cancel)


def test_volumes_in_ml_match_the_label_map(predictor, sample_ct):
    result = predictor.segment(sample_ct)
    counts = np.bincount(sitk.GetArrayViewFromImage(result.labels).ravel(), minlength=4)
    voxel_ml = np.prod(sample_ct.GetSpacing()) / 1000
    for label, name in ((1, "kidney"), (2, "tumor"), (3, "cyst")):
        assert result.volumes_ml[name] == pytest.approx(counts[label] * voxel_ml, abs=1e-2)


def test_mr_like_intensities_are_refused_unless_allowed(store, sample_ct):
    mr = sitk.GetArrayFromImage(sample_ct).astype(np.float32)
    mr = (mr - mr.min()) * 0.5  # no air, no negative values: not CT
    image = image_from_array(mr, sample_ct.GetSpacing(), sample_ct.GetOrigin(), sample_ct.GetDirection())
    predictor = Predictor.from_store("random-test", PredictionOptions(device="cpu", cascade=False), store)
    with pytest.raises(NotCTError, match="allow"):
        predictor.segment(image)
    allowed = Predictor.from_store("random-test", PredictionOptions(device="cpu", cascade=False, allow_non_ct=True),
                                   store)
    assert allowed.segment(image).labels.GetSize() == image.GetSize()


def test_a_tampered_model_file_is_refused(make_random_package, tmp_path):
    folder = make_random_package(tmp_path / "random-test" / "1.0.0", with_localizer=False)
    weights = folder / "fold0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="fold0.safetensors"):
        Predictor.from_store("random-test", PredictionOptions(device="cpu"), ModelStore(tmp_path / "b", tmp_path))


def test_an_unknown_quality_is_refused():
    with pytest.raises(ValueError, match="quality"):
        PredictionOptions(quality="ultra")
