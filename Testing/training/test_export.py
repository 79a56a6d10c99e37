"""Export: trained runs become one package that the engine loads, verifies and runs as trained."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_preprocessed import SPACING, write_tiny_preprocessed

from kidneytumorseg.errors import KidneyTumorSegError
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


def test_export_refuses_what_it_cannot_do(runs, tmp_path):
    with pytest.raises(KidneyTumorSegError, match="at least one run"):
        export_package([], tmp_path / "a", name="x", version="1.0.0")
    with pytest.raises(KidneyTumorSegError, match="unique"):
        export_package([runs / "plain", runs / "plain"], tmp_path / "b", name="x", version="1.0.0")
    export_package([runs / "plain"], tmp_path / "c", name="x", version="1.0.0")
    with pytest.raises(KidneyTumorSegError, match="already exists"):
        export_package([runs / "plain"], tmp_path / "c", name="x", version="1.0.0")
