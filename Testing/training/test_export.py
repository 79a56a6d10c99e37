"""Export: trained runs become one package that the engine loads, verifies and runs as trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_preprocessed import SPACING, write_tiny_preprocessed

from kidneytumorseg.errors import KidneyTumorSegError, ModelPackageError
from kidneytumorseg.model_package import ModelPackage, build_member, verify
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.networks import build_network, plan_network
from kidneytumorseg_training.checkpoint import load_weights
from kidneytumorseg_training.cli.main import main as train_cli
from kidneytumorseg_training.export import export_package
from kidneytumorseg_training.trainer import train
from kidneytumorseg_training.training_config import TrainingConfig


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    folder = write_tiny_preprocessed(root / "pre", cases=3)
    settings = dict(preprocessed=str(folder), train_ids=["case_00000", "case_00001"], val_ids=["case_00002"],
                    epochs=1, iterations_per_epoch=2, val_iterations=1, num_workers=0, threads=1, device="cpu",
                    augmentation={"enabled": False})
    train(TrainingConfig(**settings), root / "plain")
    residual = plan_network([16, 32, 32], SPACING, base_features=4, max_features=32, block="residual",
                            deep_supervision=True).to_dict()
    train(TrainingConfig(**settings, network=residual, seed=1), root / "residual")
    return root


def test_members_run_exactly_as_trained(runs, tmp_path):
    package_dir = export_package([runs / "plain", runs / "residual"], tmp_path / "pkg", name="tiny",
                                 version="0.1.0", provenance={"data": "ellipsoids"})
    package = ModelPackage.load(package_dir)
    verify(package)
    assert [m.name for m in package.segmenters] == ["plain", "residual"]
    assert package.member("residual").network["block"] == "residual"
    assert package.member("plain").network["block"] == "plain"
    assert package.member("plain").preprocessing["target_spacing"] == SPACING
    assert package.provenance["data"] == "ellipsoids"
    x = torch.randn(1, 1, 16, 32, 32)
    for name in ("plain", "residual"):
        exported = build_member(package, name)
        config = json.loads((runs / name / "run.json").read_text())["network"]
        trained = build_network({**config, "deep_supervision": False})
        trained.load_state_dict(load_weights(runs / name / "checkpoint_best"))
        trained.eval()
        with torch.no_grad():
            assert torch.equal(exported(x), trained(x))


def test_cli_export_and_import_into_the_store(runs, tmp_path, monkeypatch):
    store_dir = tmp_path / "store"
    status = train_cli(["export", str(runs / "plain"), "-o", str(tmp_path / "pkg"), "--name", "tiny", "--version",
                        "0.2.0", "--checkpoint", "latest", "--import", "--store-dir", str(store_dir)])
    assert status == 0
    store = ModelStore(tmp_path / "no-bundled", store_dir)
    package = store.resolve("tiny@0.2.0")
    assert [m.name for m in package.segmenters] == ["plain"]
    assert package.inference["mirror_axes"] == [0, 1, 2]
    assert np.isfinite(package.manifest["preprocessing"]["normalization"]["std"])


def test_cli_export_records_the_runs_data_when_not_told_and_warns_of_an_empty_description(runs, tmp_path, caplog):
    common = ["--name", "tiny", "--version", "0.3.0"]
    with caplog.at_level("WARNING"):
        assert train_cli(["export", str(runs / "plain"), str(runs / "residual"), "-o", str(tmp_path / "a"),
                          *common]) == 0
    data = ModelPackage.load(tmp_path / "a").provenance["data"]
    assert data == f"preprocessed data {runs / 'pre'} (from the runs' config.json)"  # both runs: named once
    assert "No --description: tiny@0.3.0" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert train_cli(["export", str(runs / "plain"), "-o", str(tmp_path / "b"), *common, "--data", "ellipsoids",
                          "--description", "two tiny members"]) == 0
    package = ModelPackage.load(tmp_path / "b")
    assert (package.provenance["data"], package.manifest["description"]) == ("ellipsoids", "two tiny members")
    assert "No --description" not in caplog.text


def test_export_refuses_what_it_cannot_do(runs, tmp_path):
    with pytest.raises(KidneyTumorSegError, match="at least one run"):
        export_package([], tmp_path / "a", name="x", version="1.0.0")
    with pytest.raises(KidneyTumorSegError, match="unique"):
        export_package([runs / "plain", runs / "plain"], tmp_path / "b", name="x", version="1.0.0")
    export_package([runs / "plain"], tmp_path / "c", name="x", version="1.0.0")
    with pytest.raises(KidneyTumorSegError, match="already exists"):
        export_package([runs / "plain"], tmp_path / "c", name="x", version="1.0.0")


# -- two-stage members: trained briefly, exported, reloaded, segmenting through the engine's predictor ----------

def _member_settings(folder) -> dict:
    return dict(preprocessed=str(folder), train_ids=["case_00000", "case_00001"], val_ids=["case_00002"], epochs=1,
                iterations_per_epoch=2, val_iterations=1, num_workers=0, threads=1, device="cpu",
                augmentation={"enabled": False})


@pytest.fixture(scope="module")
def cascade_runs(runs):
    """A 3D residual kidney-region run (decaying deep supervision), a 2.5D refiner on the masked image (SE,
    attention gates, dilations 2-3-5, image injection, focal + weighted Dice, cyst resampling), and a TuNet
    W-Net / T-Net pair (median 3, image + W-Net probability)."""
    settings = _member_settings(runs / "pre")
    kidney_region = plan_network([16, 32, 32], SPACING, base_features=4, max_features=16, block="residual").to_dict()
    train(TrainingConfig(**settings, network=kidney_region, label_map=[0, 1, 1, 1], foreground_fraction=1.0,
                         deep_supervision_decay={"initial": 0.33, "factor": 0.8, "every_epochs": 15}),
          runs / "kidney")
    refiner = plan_network([32, 32], SPACING[1:], dimension=2, base_features=4, max_features=16,
                           squeeze_excitation=True, attention_gates=True, bottleneck_dilations=[2, 3, 5],
                           inject_input=True).to_dict()
    train(TrainingConfig(**settings, network=refiner, context_slices=1, label_map=[0, 0, 1, 2], loss="focal_dice",
                         stage_input={"mask_image": True, "mask_dilation_mm": 4.0, "crop_margin_mm": 8.0},
                         hard_case_class=3, hard_case_fraction=0.5, foreground_fraction=1.0), runs / "tumor")
    tunet = plan_network([16, 32, 32], SPACING, base_features=4, max_features=16, squeeze_excitation=True,
                         inject_input=True).to_dict()
    train(TrainingConfig(**settings, network=tunet, label_map=[0, 1, 1, 1], median_filter=3), runs / "w-net")
    train(TrainingConfig(**settings, network=tunet, label_map=[0, 0, 1, 0], median_filter=3,
                         stage_input={"mask_image": False, "probability_channels": ["kidney_and_mass"]},
                         stage_perturbation={"prior_blur_mm": 2.0}), runs / "t-net")
    return runs


def _tiny_ct():
    from tiny_preprocessed import _case

    from kidneytumorseg.predictor import image_from_array

    image, _ = _case(5)
    return image_from_array(image * 50.0 + 100.0, spacing=(SPACING[2], SPACING[1], SPACING[0]))  # HU, (x, y, z)


@pytest.mark.parametrize(("members", "localizer", "refiner_inputs"), [
    (["kidney", "tumor"], None, {"context_slices": 1}),
    (["w-net", "t-net"], "kidney", {"median_filter": 3}),
])
def test_two_stage_runs_export_reload_and_segment(cascade_runs, tmp_path, members, localizer, refiner_inputs):
    from kidneytumorseg.predictor import PredictionOptions, Predictor

    package_dir = export_package([cascade_runs / name for name in members], tmp_path / "pkg", name="cascade",
                                 version="0.1.0", localizer=cascade_runs / localizer if localizer else None,
                                 checkpoint="latest",
                                 postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                                                 "min_component_ml": 0.0, "hysteresis": None,
                                                 "adaptive_threshold": localizer is not None})
    package = ModelPackage.load(package_dir)
    stage_one, stage_two = (package.member(name) for name in members)
    assert stage_one.role == "segmenter" and stage_two.role == "refiner"
    assert stage_one.inputs.output_labels == (0, 1)
    for key, value in refiner_inputs.items():
        assert stage_two.preprocessing[key] == value
    config = TrainingConfig.load(cascade_runs / members[1])
    assert stage_two.preprocessing["stage_input"] == config.stage_input
    x = torch.randn(1, stage_two.network["in_channels"], *stage_two.patch_size)
    trained = build_network({**json.loads((cascade_runs / members[1] / "run.json").read_text())["network"],
                             "deep_supervision": False})
    trained.load_state_dict(load_weights(cascade_runs / members[1] / "checkpoint_latest"))
    with torch.no_grad():
        assert torch.equal(build_member(package, stage_two)(x), trained.eval()(x))
    image = _tiny_ct()
    result = Predictor(package, PredictionOptions(device="cpu", allow_non_ct=True)).segment(image)
    labels = result.labels
    assert (labels.GetSize(), labels.GetSpacing(), labels.GetOrigin()) == (image.GetSize(), image.GetSpacing(),
                                                                           image.GetOrigin())
    import SimpleITK as sitk

    assert set(np.unique(sitk.GetArrayFromImage(labels))) <= {0, 1, 2, 3}
    assert result.members == tuple(members)


def test_spline_image_interpolation_travels_to_the_predictor(runs, tmp_path):
    """A run preprocessed with a B-spline exports ``preprocessing.image_interpolation`` and the engine's predictor
    resamples the image with it (a linear run writes nothing and stays linear)."""
    import shutil

    from kidneytumorseg.geometry import resample_array
    from kidneytumorseg.member_runner import prepare_input
    from kidneytumorseg.model_package import ModelPackageError
    from kidneytumorseg.normalization import normalize
    from kidneytumorseg.predictor import settings_for

    pre = tmp_path / "pre"
    shutil.copytree(runs / "pre", pre)
    plans = json.loads((pre / "plans.json").read_text())
    (pre / "plans.json").write_text(json.dumps({**plans, "image_interpolation": "bspline"}))
    run = tmp_path / "spline"
    shutil.copytree(runs / "plain", run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "preprocessed": str(pre)}))
    spline = ModelPackage.load(export_package([run], tmp_path / "pkg", name="s", version="1.0.0"))
    linear = ModelPackage.load(export_package([runs / "plain"], tmp_path / "lin", name="l", version="1.0.0"))
    assert spline.manifest["preprocessing"]["image_interpolation"] == "bspline"
    assert "image_interpolation" not in linear.manifest["preprocessing"]
    settings = settings_for(spline.segmenters[0])
    assert settings.image_interpolation == "bspline"
    assert settings_for(linear.segmenters[0]).image_interpolation == "linear"
    volume = np.random.default_rng(0).normal(100.0, 50.0, (9, 13, 11)).astype(np.float32)
    spacing = [s / 1.7 for s in SPACING]
    got = prepare_input(volume, spacing, settings)
    normalised = normalize(volume, settings.normalization)
    assert np.allclose(got, resample_array(normalised, spacing, settings.target_spacing, "bspline"))
    assert not np.allclose(got, resample_array(normalised, spacing, settings.target_spacing, "linear"))
    manifest = json.loads((tmp_path / "pkg" / "model.json").read_text())
    manifest["preprocessing"]["image_interpolation"] = "cubic"
    (tmp_path / "pkg" / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelPackageError, match="image_interpolation"):
        ModelPackage.load(tmp_path / "pkg")


def test_a_refiner_exported_onto_a_base_package_keeps_its_members_byte_for_byte(cascade_runs, tmp_path):
    from kidneytumorseg.predictor import PredictionOptions, Predictor

    base_dir = export_package([cascade_runs / "kidney"], tmp_path / "base", name="cascade", version="1.0.0",
                              localizer=cascade_runs / "plain", checkpoint="latest",
                              postprocessing={"max_kidney_components": 1, "remove_masses_not_touching_kidney": True,
                                              "min_component_ml": 0.0, "hysteresis": None})
    status = train_cli(["export", str(cascade_runs / "tumor"), "--base", str(base_dir), "-o", str(tmp_path / "new"),
                        "--name", "cascade", "--version", "1.1.0", "--checkpoint", "latest"])
    assert status == 0
    base, package = ModelPackage.load(base_dir), ModelPackage.load(tmp_path / "new")
    verify(package)
    assert [(m.name, m.role) for m in package.members] == [("kidney", "segmenter"), ("localizer", "localizer"),
                                                           ("tumor", "refiner")]
    for name in ("kidney", "localizer"):  # same weights, same effective settings
        assert package.member(name) == base.member(name)
    assert package.postprocessing["max_kidney_components"] == 1
    assert package.member("tumor").preprocessing["context_slices"] == 1
    assert package.provenance["base"] == str(base_dir)
    result = Predictor(package, PredictionOptions(device="cpu", allow_non_ct=True)).segment(_tiny_ct())
    assert result.members == ("kidney", "tumor")

    with pytest.raises(KidneyTumorSegError, match="already has member"):
        export_package([cascade_runs / "tumor"], tmp_path / "clash", name="c", version="1.2.0", base=base_dir,
                       member_names=["kidney"], checkpoint="latest")
    replaced = export_package([cascade_runs / "tumor"], tmp_path / "other", name="c", version="1.2.0",
                              base=base_dir, localizer=cascade_runs / "kidney", checkpoint="latest")
    localizer = ModelPackage.load(replaced).localizer
    assert localizer is not None and localizer.sha256 != base.localizer.sha256


def test_a_retrained_member_replaces_the_base_members_of_its_name_in_place(cascade_runs, tmp_path):
    base_dir = export_package([cascade_runs / "kidney", cascade_runs / "plain"], tmp_path / "base", name="c",
                              version="1.0.0", localizer=cascade_runs / "plain", checkpoint="latest",
                              member_names=["fold1", "fold0"])
    status = train_cli(["export", str(cascade_runs / "plain"), "--members", "fold1", "--base", str(base_dir),
                        "--replace", "-o", str(tmp_path / "new"), "--name", "c", "--version", "1.1.0",
                        "--checkpoint", "latest"])
    assert status == 0
    base, package = ModelPackage.load(base_dir), ModelPackage.load(tmp_path / "new")
    verify(package)
    assert [m.name for m in package.members] == [m.name for m in base.members]  # same order: fold1 still first
    assert package.member("fold1").sha256 == base.member("fold0").sha256  # the plain run's weights, now as fold1
    assert package.member("fold1").sha256 != base.member("fold1").sha256
    assert package.member("fold0") == base.member("fold0") and package.localizer == base.localizer
    with pytest.raises(KidneyTumorSegError, match="must keep the role"):
        export_package([cascade_runs / "tumor"], tmp_path / "role", name="c", version="1.2.0", base=base_dir,
                       member_names=["fold1"], checkpoint="latest", replace=True)
    with pytest.raises(SystemExit, match="--base"):
        train_cli(["export", str(cascade_runs / "plain"), "--replace", "-o", str(tmp_path / "nobase"), "--name", "c",
                   "--version", "1.0.0"])


def test_export_sets_the_refiners_stage_one_weight_per_class_and_refuses_a_bad_one(cascade_runs, tmp_path, capsys):
    base_dir = export_package([cascade_runs / "kidney"], tmp_path / "base", name="cascade", version="1.0.0",
                              checkpoint="latest")
    common = ["--base", str(base_dir), "--name", "cascade", "--version", "1.1.0", "--checkpoint", "latest"]
    assert train_cli(["export", str(cascade_runs / "tumor"), "-o", str(tmp_path / "pc"), *common,
                      "--stage-one-weight", "kidney=0.5,cyst=1"]) == 0
    package = ModelPackage.load(tmp_path / "pc")
    assert package.member("tumor").inference["stage_one_weight"] == {"kidney": 0.5, "cyst": 1.0}
    assert package.member("tumor").inputs.stage_one_weight == (0.5, 0.0, 1.0)
    assert "stage_one_weight" not in package.member("kidney").inference  # segmenters are left alone
    assert train_cli(["export", str(cascade_runs / "tumor"), "-o", str(tmp_path / "one"), *common,
                      "--stage-one-weight", "0.25"]) == 0
    assert ModelPackage.load(tmp_path / "one").member("tumor").inputs.stage_one_weight == (0.25, 0.25, 0.25)

    with pytest.raises(ModelPackageError, match=r"unknown classes \['tumour'\]"):
        export_package([cascade_runs / "tumor"], tmp_path / "bad", name="c", version="1.2.0", base=base_dir,
                       checkpoint="latest", stage_one_weight={"tumour": 1.0})
    with pytest.raises(ModelPackageError, match=r"stage_one_weight' must be a number from 0"):
        export_package([cascade_runs / "tumor"], tmp_path / "bad", name="c", version="1.2.0", base=base_dir,
                       checkpoint="latest", stage_one_weight=1.5)
    assert not (tmp_path / "bad").exists()  # nothing half-written is left
    with pytest.raises(KidneyTumorSegError, match="stage_one_weight is for refiners"):
        export_package([cascade_runs / "kidney"], tmp_path / "none", name="c", version="1.0.0", checkpoint="latest",
                       stage_one_weight=0.5)
    with pytest.raises(SystemExit):
        train_cli(["export", str(cascade_runs / "tumor"), "-o", str(tmp_path / "x"), *common,
                   "--stage-one-weight", "cyst:1"])
    assert "neither a number nor CLASS=NUMBER pairs" in capsys.readouterr().err
