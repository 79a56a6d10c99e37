"""Dataset fingerprint and experiment plans: spacing rule, budget patch sizes, network, plans.json round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fixture_cases import SAMPLE_CASES as CASES
from fixture_cases import SAMPLE_DIR as SYNTHETIC
from fixture_cases import training_case

from kidneytumorseg.errors import MissingInputError
from kidneytumorseg.geometry import to_lps
from kidneytumorseg.networks import NetworkConfig
from kidneytumorseg_training.datasets import DatasetError, TrainingCase
from kidneytumorseg_training.planning import (
    BUDGETS,
    PlansError,
    compute_fingerprint,
    load_plans,
    plan_experiment,
    save_plans,
)

_case = training_case


def _fake_fingerprint(spacings, shapes):
    return {"dataset": "/data", "spacings": spacings, "shapes": shapes, "cropped_shapes": shapes,
            "median_spacing": np.median(spacings, axis=0).tolist(),
            "foreground_intensity": {"mean": 100.0, "std": 50.0, "percentile_00_5": -50.0, "percentile_99_5": 300.0}}


def _foreground(case_id: str) -> tuple[np.ndarray, tuple[int, ...]]:
    image, _, _ = to_lps(sitk.ReadImage(str(SYNTHETIC / case_id / "imaging.nii.gz")))
    label, _, _ = to_lps(sitk.ReadImage(str(SYNTHETIC / case_id / "segmentation.nii.gz")))
    return image[label > 0].astype(np.float64), image.shape


def test_fingerprint_spacings_shapes_and_intensities(fingerprint):
    (first, shape), (second, _) = _foreground(CASES[0]), _foreground(CASES[1])
    assert fingerprint["case_ids"] == CASES and fingerprint["num_cases"] == 2
    assert fingerprint["spacings"] == [[3.0, 2.0, 2.0], [3.0, 3.0, 3.0]]
    assert fingerprint["shapes"][0] == [55, 190, 190] == list(shape)
    assert fingerprint["median_spacing"] == [3.0, 2.5, 2.5]
    assert all(c <= s for c, s in zip(fingerprint["cropped_shapes"][0], fingerprint["shapes"][0], strict=True))
    stats = fingerprint["foreground_intensity"]
    assert stats["num_samples"] == 20_000  # 10,000 per case: both have more foreground voxels
    # Equal samples per case: the pooled mean is about the mean of the case means.
    assert stats["mean"] == pytest.approx((first.mean() + second.mean()) / 2, abs=0.05 * first.std())
    assert min(first.min(), second.min()) <= stats["min"] and stats["max"] <= max(first.max(), second.max())
    assert stats["min"] <= stats["percentile_00_5"] < stats["median"] < stats["percentile_99_5"] <= stats["max"]
    json.dumps(fingerprint)  # JSON-safe


def test_fingerprint_is_deterministic_and_parallel_equals_serial(fingerprint):
    assert compute_fingerprint([_case(c) for c in CASES], jobs=2, progress=False) == fingerprint


def test_fingerprint_names_a_bad_case(tmp_path):
    bad = tmp_path / "case_bad"
    bad.mkdir()
    (bad / "imaging.nii.gz").write_bytes(b"garbage")
    (bad / "segmentation.nii.gz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="case_bad"):
        compute_fingerprint([_case(CASES[1]), TrainingCase("case_bad", bad / "imaging.nii.gz",
                                                            bad / "segmentation.nii.gz", "kits")], jobs=1)


def test_cpu_plan_of_the_fixtures(fingerprint):
    plans = plan_experiment(fingerprint)
    assert plans["format_version"] == 1 and plans["name"] == "3d_fullres" and plans["budget"] == "cpu"
    assert plans["target_spacing"] == fingerprint["median_spacing"]
    assert plans["normalization"] == {
        "scheme": "clip_zscore", "mean": fingerprint["foreground_intensity"]["mean"],
        "std": fingerprint["foreground_intensity"]["std"],
        "clip": [fingerprint["foreground_intensity"]["percentile_00_5"],
                 fingerprint["foreground_intensity"]["percentile_99_5"]]}
    assert plans["image_interpolation"] == "linear" and plans["num_classes"] == 4 and plans["batch_size"] == 2
    network = NetworkConfig.from_dict(plans["network"])
    assert network.deep_supervision and network.features_per_stage[0] == 16 and network.num_classes == 4
    patch = plans["patch_size"]
    assert all(p % s == 0 for p, s in zip(patch, network.total_strides, strict=True))
    assert math.prod(patch) <= BUDGETS["cpu"]["voxels"]
    extents = np.median(np.multiply(fingerprint["cropped_shapes"], fingerprint["spacings"]), axis=0)
    assert all(p <= e / t for p, e, t in zip(patch, extents, plans["target_spacing"], strict=True))
    assert plans["fingerprint"] == fingerprint
    assert Path(plans["dataset"]) == SYNTHETIC


def test_bigger_budgets_give_bigger_patches_and_networks():
    fingerprint = _fake_fingerprint([[3.0, 0.8, 0.8]] * 3, [[120, 512, 512]] * 3)
    cpu, gpu8, gpu24 = (plan_experiment(fingerprint, budget=b) for b in ("cpu", "gpu-8gb", "gpu-24gb"))
    sizes = [math.prod(p["patch_size"]) for p in (cpu, gpu8, gpu24)]
    assert sizes[0] < sizes[1] < sizes[2]
    for plans, budget in zip((cpu, gpu8, gpu24), BUDGETS, strict=True):
        assert math.prod(plans["patch_size"]) <= BUDGETS[budget]["voxels"]
        assert 0.5 * BUDGETS[budget]["voxels"] <= math.prod(plans["patch_size"])
    assert gpu8["network"]["features_per_stage"][0] == 32
    # Shaped like the image in mm (360 x 410 x 410 mm): the in-plane axes get the same size.
    assert gpu8["patch_size"][1] == gpu8["patch_size"][2]
    with pytest.raises(ValueError, match="gpu-8gb"):
        plan_experiment(fingerprint, budget="tpu")


def test_anisotropic_data_takes_the_10th_percentile_of_the_coarse_axis():
    spacings = [[5.0, 0.8, 0.8]] * 6 + [[1.0, 0.8, 0.8]] * 2 + [[2.5, 0.8, 0.8]] * 2
    plans = plan_experiment(_fake_fingerprint(spacings, [[80, 512, 512]] * 10))
    assert plans["target_spacing"] == [pytest.approx(float(np.percentile([s[0] for s in spacings], 10))), 0.8, 0.8]
    isotropic = plan_experiment(_fake_fingerprint([[2.0, 1.0, 1.0]] * 3, [[100, 300, 300]] * 3))
    assert isotropic["target_spacing"] == [2.0, 1.0, 1.0]  # ratio 2 < 3: the median


def test_explicit_settings_and_network_options(fingerprint):
    plans = plan_experiment(fingerprint, target_spacing=[6, 6, 6], patch_size=[16, 32, 32], base_features=8,
                            block="residual", name="lowres", squeeze_excitation=True)
    assert plans["target_spacing"] == [6.0, 6.0, 6.0] and plans["patch_size"] == [16, 32, 32]
    assert plans["name"] == "lowres"
    network = plans["network"]
    assert network["features_per_stage"][0] == 8 and network["block"] == "residual"
    assert network["squeeze_excitation"] and network["deep_supervision"]
    with pytest.raises(ValueError, match="not divisible"):
        plan_experiment(fingerprint, patch_size=[20, 36, 36])


def test_plans_round_trip_and_validation(fingerprint, tmp_path):
    plans = plan_experiment(fingerprint)
    path = save_plans(plans, tmp_path)
    assert path == tmp_path / "plans.json"
    assert load_plans(tmp_path) == plans == load_plans(path)
    with pytest.raises(MissingInputError, match="plan"):
        load_plans(tmp_path / "nowhere")
    (tmp_path / "plans.json").write_text("{ not json")
    with pytest.raises(PlansError, match="JSON"):
        load_plans(tmp_path)
    broken = [
        ({k: v for k, v in plans.items() if k != "network"}, "missing"),
        (plans | {"format_version": 2}, "format_version"),
        (plans | {"target_spacing": [3.0, -1.0, 2.0]}, "target_spacing"),
        (plans | {"patch_size": [40, 112, 100]}, "not divisible"),
        (plans | {"normalization": {"scheme": "clip_zscore", "clip": [5, 1], "mean": 0, "std": 1}}, "clip"),
        (plans | {"image_interpolation": "cubic"}, "image_interpolation"),
        (plans | {"batch_size": 0}, "batch_size"),
        (plans | {"network": plans["network"] | {"num_classes": 3}}, "4 classes"),
    ]
    for bad, message in broken:
        (tmp_path / "plans.json").write_text(json.dumps(bad))
        with pytest.raises(PlansError, match=message):
            load_plans(tmp_path)
        with pytest.raises(PlansError, match=message):
            save_plans(bad, tmp_path / "other")
