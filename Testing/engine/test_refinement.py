"""Two-stage models: stage-1 kidney region, stage-2 refiners inside it, label combination, and whole packages
(KiTS19 two-stage, TuNet) segmenting through the predictor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from cascade_packages import tunet_package, two_stage_package

from kidneytumorseg.adaptive_threshold import whole_region
from kidneytumorseg.errors import ModelPackageError
from kidneytumorseg.geometry import image_from_lps, to_lps
from kidneytumorseg.member_runner import PredictorSettings, Progress, span
from kidneytumorseg.model_package import ModelPackage
from kidneytumorseg.postprocessing import PostprocessingSettings
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg.predictor_core import stage_one_probabilities
from kidneytumorseg.refinement import RefinementSettings, combine_stages, predict_two_stage, stage_one_region
from kidneytumorseg.stage_inputs import StageInputSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHAPE = (20, 40, 40)
SPACING = (2.0, 1.0, 1.0)
IDENTITY_HU = {"scheme": "clip_zscore", "clip": [-1000, 1000], "mean": 0.0, "std": 100.0}  # x / 100
KIDNEY = (slice(6, 14), slice(10, 26), slice(4, 16))
TUMOR = (slice(8, 12), slice(14, 20), slice(6, 12))
SPOT = (slice(8, 11), slice(30, 33), slice(30, 33))  # bright, small, far from the kidney


class _BrightIsKidney(torch.nn.Module):
    """Stage 1, two classes (output_labels [0, 1]): kidney region where the intensity is above 75 HU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 10.0 * (x - 0.75)], dim=1)


class _VeryBrightIsTumor(torch.nn.Module):
    """2.5D refiner (k = 1, classes no-mass / tumor / cyst): tumor where the centre slice is above 300 HU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, 1:2]
        return torch.cat([torch.zeros_like(centre), 10.0 * (centre - 3.0), torch.full_like(centre, -20.0)], dim=1)


def _ct() -> np.ndarray:
    volume = np.full(SHAPE, -80.0, dtype=np.float32)
    volume[KIDNEY] = 160.0
    volume[TUMOR] = 450.0
    volume[SPOT] = 450.0
    return volume


def _settings(**changes) -> PredictorSettings:
    return PredictorSettings(**{"target_spacing": SPACING, "patch_size": (8, 16, 16), "normalization": IDENTITY_HU,
                                "device": "cpu", **changes})


def _refinement(max_components: int | None = 1) -> RefinementSettings:
    refiner = _settings(patch_size=(16, 16), context_slices=1, output_labels=(0, 2, 3))
    return RefinementSettings(refiner, StageInputSpec(mask_dilation_mm=2.0, crop_margin_mm=4.0), max_components)


def test_tumor_is_found_by_stage_two_inside_the_stage_one_region_only():
    prediction = predict_two_stage(_ct(), SPACING, [_BrightIsKidney()], _settings(output_labels=(0, 1)),
                                   [_VeryBrightIsTumor()], _refinement())
    expected = np.zeros(SHAPE, np.uint8)
    expected[KIDNEY] = 1
    expected[TUMOR] = 2
    np.testing.assert_array_equal(prediction.labels, expected)  # the spot: outside the kept region, not tumor
    p = prediction.probabilities
    assert p.shape == (4, *SHAPE)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-5)
    assert p[2][TUMOR].min() > 0.9 and p[2][SPOT].max() < 1e-3


def test_with_every_component_kept_the_spot_is_refined_too_and_postprocessing_applies():
    prediction = predict_two_stage(_ct(), SPACING, [_BrightIsKidney()], _settings(output_labels=(0, 1)),
                                   [_VeryBrightIsTumor()], _refinement(None))
    assert (prediction.labels[SPOT] == 2).all()
    rules = PostprocessingSettings(max_kidney_components=None, remove_masses_not_touching_kidney=False,
                                   max_tumor_components=1)
    kept = predict_two_stage(_ct(), SPACING, [_BrightIsKidney()], _settings(output_labels=(0, 1)),
                             [_VeryBrightIsTumor()], _refinement(None), rules)
    assert (kept.labels[TUMOR] == 2).all() and (kept.labels[SPOT] == 1).all()


def test_no_stage_one_kidney_means_no_refinement_and_background_labels():
    empty = np.full(SHAPE, -80.0, dtype=np.float32)
    calls = []

    class Counting(_VeryBrightIsTumor):
        def forward(self, x):
            calls.append(1)
            return super().forward(x)

    prediction = predict_two_stage(empty, SPACING, [_BrightIsKidney()], _settings(output_labels=(0, 1)),
                                   [Counting()], _refinement())
    assert not prediction.labels.any() and not calls


def test_combination_rule():
    stage_one = np.array([[0.9, 0.2, 0.2, 0.2], [0.1, 0.8, 0.8, 0.8], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    conditional = np.array([[1, 0.6, 0.1, 0.1], [0, 0, 0, 0], [0, 0.3, 0.8, 0.2], [0, 0.1, 0.1, 0.7]], np.float32)
    region = stage_one_region(stage_one[:, None, None, :], None)[0, 0]
    np.testing.assert_array_equal(region, [False, True, True, True])
    labels, probabilities = combine_stages(stage_one, conditional, region)
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
    np.testing.assert_allclose(probabilities[:, 2], [0.2, 0.08, 0.64, 0.08], atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-6)


def test_stage_one_weight_averages_stage_one_split_into_the_refiner_and_zero_changes_nothing():
    # stage 1: region everywhere; its split of the region says tumor at voxel 0, kidney at voxel 1
    stage_one = np.array([[0.2, 0.2], [0.2, 0.6], [0.6, 0.2], [0.0, 0.0]], np.float32)
    # refiner: kidney at voxel 0 (no mass 0.6, tumor 0.4), tumor at voxel 1 (0.1 / 0.9)
    conditional = np.array([[0.6, 0.1], [0.0, 0.0], [0.4, 0.9], [0.0, 0.0]], np.float32)
    region = np.array([True, True])
    alone, alone_p = combine_stages(stage_one, conditional, region)
    np.testing.assert_array_equal(alone, [1, 2])
    same, same_p = combine_stages(stage_one, conditional, region, stage_one_weight=0.0)
    np.testing.assert_array_equal(same_p, alone_p)
    # w = 0.5: voxel 0 tumor 0.5 * 0.4 + 0.5 * 0.75 = 0.575 > kidney 0.425; voxel 1 tumor 0.45 + 0.125 = 0.575
    labels, probabilities = combine_stages(stage_one, conditional, region, stage_one_weight=0.5)
    np.testing.assert_array_equal(labels, [2, 2])
    np.testing.assert_allclose(probabilities[2], [0.8 * 0.575, 0.8 * 0.575], atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-6)
    only_stage_one, _ = combine_stages(stage_one, conditional, region, stage_one_weight=1.0)
    np.testing.assert_array_equal(only_stage_one, np.argmax(stage_one, axis=0))


def test_a_package_stage_one_weight_reaches_the_refinement_and_a_bad_one_is_refused(tmp_path):
    path = two_stage_package(tmp_path / "pkg")
    manifest = json.loads((path / "model.json").read_text())
    for member in manifest["members"]:
        if member["role"] == "refiner":
            member.setdefault("inference", {})["stage_one_weight"] = 0.3
    (path / "model.json").write_text(json.dumps(manifest))
    predictor = Predictor(ModelPackage.load(path), PredictionOptions(device="cpu"))
    assert predictor.refinement.stage_one_weight == pytest.approx((0.3, 0.3, 0.3))
    for weight, expected in (({"cyst": 1}, (0.0, 0.0, 1.0)), ({"kidney": 0.25, "tumor": 0.5}, (0.25, 0.5, 0.0))):
        for member in manifest["members"]:
            if member["role"] == "refiner":
                member["inference"]["stage_one_weight"] = weight
        (path / "model.json").write_text(json.dumps(manifest))
        predictor = Predictor(ModelPackage.load(path), PredictionOptions(device="cpu"))
        assert predictor.refinement.stage_one_weight == pytest.approx(expected)
    for bad, message in ((1.5, r"stage_one_weight' must be a number from 0"),
                         ({"cyst": 2}, r"stage_one_weight\.cyst' must be a number from 0"),
                         ({"tumour": 1}, r"unknown classes \['tumour'\]")):
        for member in manifest["members"]:
            if member["role"] == "refiner":
                member["inference"]["stage_one_weight"] = bad
        (path / "model.json").write_text(json.dumps(manifest))
        with pytest.raises(ModelPackageError, match=message):
            Predictor(ModelPackage.load(path), PredictionOptions(device="cpu"))


def test_stage_one_weight_per_class_takes_the_cyst_from_stage_one_and_the_tumor_from_the_refiner():
    # stage 1 (region everywhere) splits: voxel 0 cyst, voxel 1 kidney, voxel 2 tumor
    stage_one = np.array([[0.2, 0.2, 0.2], [0.1, 0.7, 0.1], [0.1, 0.05, 0.6], [0.6, 0.05, 0.1]], np.float32)
    # refiner: voxel 0 tumor, voxel 1 cyst (stage 1 sees none there), voxel 2 tumor
    conditional = np.array([[0.0, 0.0, 0.0], [0.3, 0.3, 0.1], [0.6, 0.1, 0.8], [0.1, 0.6, 0.1]], np.float32)
    region = np.array([True, True, True])
    refiner_alone, _ = combine_stages(stage_one, conditional, region)
    np.testing.assert_array_equal(refiner_alone, [2, 3, 2])
    labels, probabilities = combine_stages(stage_one, conditional, region, stage_one_weight=(0.0, 0.0, 1.0))
    # cyst = stage 1's 0.75 / 0.0625 / 0.125 against the refiner's kidney and tumor, then renormalised
    np.testing.assert_array_equal(labels, [3, 1, 2])
    cyst = 0.75 / (0.3 + 0.6 + 0.75)
    np.testing.assert_allclose(probabilities[3, 0], 0.8 * cyst, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-6)
    # one number is the same weight for every class
    scalar, scalar_p = combine_stages(stage_one, conditional, region, stage_one_weight=0.5)
    same, same_p = combine_stages(stage_one, conditional, region, stage_one_weight=(0.5, 0.5, 0.5))
    np.testing.assert_array_equal(scalar, same)
    np.testing.assert_allclose(scalar_p, same_p, atol=1e-6)
    with pytest.raises(ValueError, match="3 numbers"):
        combine_stages(stage_one, conditional, region, stage_one_weight=(0.5, 0.5))


@pytest.fixture(scope="module")
def small_ct(sample_ct) -> sitk.Image:
    """The sample CT at 6 mm: the random-weight packages run on it in about a second."""
    size = [int(round(n * s / 6.0)) for n, s in zip(sample_ct.GetSize(), sample_ct.GetSpacing(), strict=True)]
    return sitk.Resample(sample_ct, size, sitk.Transform(), sitk.sitkLinear, sample_ct.GetOrigin(), (6.0, 6.0, 6.0),
                         sample_ct.GetDirection(), -1000.0, sample_ct.GetPixelID())


@pytest.mark.parametrize("make", [two_stage_package, tunet_package])
def test_two_stage_packages_segment_on_the_input_grid_with_masses_inside_the_kidney_region(make, small_ct,
                                                                                          tmp_path):
    package = ModelPackage.load(make(tmp_path / "pkg", stage_one_bias=0.5))
    predictor = Predictor(package, PredictionOptions(device="cpu"))
    assert [m.name for m in package.refiners] == [s.name for s in predictor.refiner_specs]
    result = predictor.segment(small_ct)
    labels = result.labels
    assert (labels.GetSize(), labels.GetSpacing(), labels.GetOrigin(), labels.GetDirection()) == (
        small_ct.GetSize(), small_ct.GetSpacing(), small_ct.GetOrigin(), small_ct.GetDirection())
    values = sitk.GetArrayFromImage(labels)
    assert set(np.unique(values)) <= {0, 1, 2, 3}
    volume, spacing, orientation = to_lps(small_ct)
    stage_one, _ = stage_one_probabilities(volume.astype(np.float32), spacing, predictor.members, predictor.settings,
                                           predictor.localizer, predictor.cascade, span(Progress(None), 0, 1), None)
    region = stage_one_region(stage_one, package.postprocessing.get("max_kidney_components"))
    assert 0 < region.mean() < 1, "the random stage 1 should give a partial kidney region"
    if predictor.postprocessing.adaptive_threshold is not None:  # TuNet's Algorithm 1 grows the region first
        region = whole_region(1.0 - stage_one[0], predictor.postprocessing.adaptive_threshold)
    region_image = sitk.GetArrayFromImage(image_from_lps(region.astype(np.uint8), orientation)).astype(bool)
    assert values[region_image].any() and not (values[~region_image] > 1).any()
    assert result.members == tuple(m.name for m in package.segmenters + package.refiners)
    assert result.volumes_ml["tumor"] == pytest.approx((values == 2).sum() * 6.0**3 / 1000, abs=1e-2)


def test_fast_quality_and_member_choice_in_two_stage_packages(tmp_path):
    package = ModelPackage.load(two_stage_package(tmp_path / "pkg"))
    fast = Predictor(package, PredictionOptions(device="cpu", quality="fast"))
    assert [s.name for s in fast.refiner_specs] == ["tumor"] and fast.refinement.stage_input.mask_image
    assert fast.refinement.predictor.context_slices == 1 and fast.refinement.predictor.output_labels == (0, 2, 3)
    assert fast.settings.output_labels == (0, 1)
    named = Predictor(package, PredictionOptions(device="cpu", members=("kidney",)))
    assert [s.name for s in named.refiner_specs] == ["tumor"]
    with pytest.raises(Exception, match="names no segmenter"):
        Predictor(package, PredictionOptions(device="cpu", members=("tumor",)))
