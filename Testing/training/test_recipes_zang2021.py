"""``zang2021-kits21`` holds the paper's numbers, and trains at the smoke budget, exports and segments through the
engine; its per-case normalisation is measured on the whole image, as the predictor measures it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from recipe_cases import assert_segments_like_its_input, write_tiny_kits_dataset

from kidneytumorseg.geometry import to_lps
from kidneytumorseg_training.losses import deep_supervision_weights
from kidneytumorseg_training.recipes import get_recipe
from kidneytumorseg_training.recipes.runner import run_recipe
from kidneytumorseg_training.trainer import _make_optimizer

RECIPE = get_recipe("zang2021-kits21")


def test_settings_are_the_papers():
    resolved = RECIPE.resolve("full")
    training, network = resolved.training, resolved.network
    assert resolved.target_spacing == [1.99, 1.99, 1.99]
    assert RECIPE.image_interpolation == "bspline" and RECIPE.label_interpolation == "nearest"
    assert resolved.normalization == {"scheme": "percentile_zscore", "percentiles": [0.5, 99.5]}
    assert training["patch_size"] == [128, 128, 128] and training["batch_size"] == 4
    assert (training["epochs"], training["iterations_per_epoch"]) == (1000, 250)
    assert network["features_per_stage"][:3] == [32, 64, 128]
    totals = [math.prod(stride[axis] for stride in network["strides"]) for axis in range(3)]
    assert [p // t for p, t in zip(training["patch_size"], totals, strict=True)] == [4, 4, 4]
    assert all(kernel == [3, 3, 3] for kernel in network["kernel_sizes"])
    assert all(stride == [2, 2, 2] for stride in network["strides"][1:])  # 2 x 2 x 2 transposed convolutions up
    assert network["num_classes"] == 4  # background, kidney, tumor, cyst
    assert training["deep_supervision"] and network["deep_supervision"]
    weights = deep_supervision_weights(len(network["features_per_stage"]) - 1)
    assert all(weights[i + 1] == pytest.approx(weights[i] / 2) for i in range(len(weights) - 2))
    assert training["loss"] == "dice_ce"
    assert training["foreground_fraction"] >= 1 / 3
    assert (training["optimizer"], training["learning_rate"], training["momentum"]) == ("sgd", 0.06, 0.99)
    config = resolved.training_config("pre", ["a"], [])
    optimizer = _make_optimizer(config, [torch.nn.Parameter(torch.zeros(1))])
    assert optimizer.defaults["nesterov"] is True and optimizer.defaults["lr"] == 0.06
    augmentation = training["augmentation"]
    for key in ("p_mirror", "p_rotation", "p_scale", "p_brightness", "p_contrast", "p_gamma"):
        assert augmentation[key] == 0.4, key
    for key in ("p_noise", "p_blur", "p_lowres", "p_gamma_inverted", "p_elastic"):
        assert augmentation[key] == 0.0, key
    assert resolved.inference["tile_overlap"] == 0.5  # a stride of half the patch
    assert resolved.postprocessing["max_kidney_components"] is None
    assert resolved.postprocessing["remove_masses_not_touching_kidney"] is False


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smoke_run_trains_exports_and_segments(tmp_path):
    data = write_tiny_kits_dataset(tmp_path / "data")
    run = run_recipe(RECIPE, data, tmp_path / "work", "smoke", workers=0, threads=1, jobs=1, device="cpu",
                     report=False)
    package = assert_segments_like_its_input(run.package, data)
    manifest = json.loads((run.package / "model.json").read_text())
    assert manifest["preprocessing"]["normalization"] == {"scheme": "percentile_zscore", "percentiles": [0.5, 99.5]}
    assert manifest["preprocessing"]["target_spacing"] == [1.99, 1.99, 1.99]
    assert package.postprocessing["max_kidney_components"] is None
    assert manifest["provenance"]["recipe"] == "zang2021-kits21"
    # the case's own percentiles and statistics, of the whole image (the predictor's), not of the body crop
    record = json.loads((run.preprocessed / "case_00161.json").read_text())
    image_lps, _, _ = to_lps(sitk.ReadImage(str(data / "case_00161" / "imaging.nii.gz")))
    low, high = np.percentile(image_lps, [0.5, 99.5])
    assert record["normalization"]["clip"] == pytest.approx([low, high])
    assert record["normalization"]["mean"] == pytest.approx(float(np.clip(image_lps, low, high).mean()), rel=1e-5)
    # labels resampled by nearest neighbour: only the values of the source
    labels = np.load(run.preprocessed / "case_00161.label.npy")
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 3}
