"""A refiner run set up from a stage-1 run trains and exports as stage 2 of one package with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_preprocessed import write_tiny_preprocessed

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.export import export_package
from kidneytumorseg_training.refiner_config import write_refiner_run
from kidneytumorseg_training.trainer import train
from kidneytumorseg_training.training_config import TrainingConfig


def test_a_refiner_of_a_trained_run_trains_and_exports_as_stage_two(tmp_path: Path):
    folder = write_tiny_preprocessed(tmp_path / "pre", cases=3)
    stage_one = TrainingConfig(preprocessed=str(folder), train_ids=["case_00000", "case_00001"],
                               val_ids=["case_00002"], epochs=1, iterations_per_epoch=2, val_iterations=1,
                               seed=1, num_workers=0, threads=1, device="cpu", augmentation={"enabled": False},
                               optimizer="adam", learning_rate=1e-3)
    train(stage_one, tmp_path / "fold0")
    write_refiner_run(tmp_path / "fold0", tmp_path / "refiner", patch_size=(16, 32, 32), epochs=1)

    config = TrainingConfig.load(tmp_path / "refiner")
    assert config.is_refiner and config.label_map == [0, 0, 1, 2] and config.foreground_fraction == 1.0
    assert (config.train_ids, config.val_ids, config.optimizer) == (stage_one.train_ids, stage_one.val_ids, "adam")
    assert config.patch_size == [16, 32, 32] and config.network is None and config.name == "refiner"
    train(config, tmp_path / "refiner")

    package = export_package([tmp_path / "fold0", tmp_path / "refiner"], tmp_path / "package", name="two-stage",
                          version="0.1.0")
    members = json.loads((Path(package) / "model.json").read_text())["members"]
    assert [m["role"] for m in members] == ["segmenter", "refiner"]
    refiner = members[1]
    assert refiner["inference"]["output_labels"] == [0, 2, 3]
    assert refiner["preprocessing"]["stage_input"]["mask_image"] is True

    with pytest.raises(KidneyTumorSegError, match="already holds a run"):
        write_refiner_run(tmp_path / "fold0", tmp_path / "refiner")
    with pytest.raises(KidneyTumorSegError, match="holds no config.json"):
        write_refiner_run(tmp_path / "nothing", tmp_path / "other")


def test_a_warm_started_refiner_begins_from_stage_one_weights_except_its_heads(tmp_path: Path):
    from kidneytumorseg_training.checkpoint import load_weights
    from kidneytumorseg_training.trainer import BEST, Trainer

    folder = write_tiny_preprocessed(tmp_path / "pre", cases=3)
    stage_one = TrainingConfig(preprocessed=str(folder), train_ids=["case_00000", "case_00001"],
                               val_ids=["case_00002"], epochs=1, iterations_per_epoch=1, val_iterations=1,
                               seed=1, num_workers=0, threads=1, device="cpu", augmentation={"enabled": False})
    train(stage_one, tmp_path / "fold0")
    stage_one_weights = load_weights(tmp_path / "fold0" / BEST)
    with pytest.raises(KidneyTumorSegError, match="do not exist"):
        write_refiner_run(tmp_path / "fold0", tmp_path / "refiner", warm_start=tmp_path / "missing.safetensors")
    write_refiner_run(tmp_path / "fold0", tmp_path / "refiner", epochs=1, warm_start=tmp_path / "fold0" / BEST)

    config = TrainingConfig.load(tmp_path / "refiner")
    assert config.initial_weights_partial and config.initial_weights == str(tmp_path / "fold0" / BEST)
    weights = Trainer(config, tmp_path / "refiner").model.state_dict()
    same = [name for name, tensor in weights.items()
            if name in stage_one_weights and torch.equal(tensor, stage_one_weights[name])]
    other = [name for name in weights if name not in same]
    assert len(same) > 0.8 * len(weights)
    assert other and all(weights[name].shape[0] == 3 for name in other)  # the 3-class output heads


def test_a_refiner_trains_and_exports_at_its_own_spacing_on_its_own_preprocessed_data(tmp_path: Path):
    stage_one = TrainingConfig(preprocessed=str(write_tiny_preprocessed(tmp_path / "pre", cases=3)),
                               train_ids=["case_00000", "case_00001"], val_ids=["case_00002"], epochs=1,
                               iterations_per_epoch=1, val_iterations=1, seed=1, num_workers=0, threads=1,
                               device="cpu", augmentation={"enabled": False})
    train(stage_one, tmp_path / "fold0")
    finer = write_tiny_preprocessed(tmp_path / "finer", cases=3)
    plans = json.loads((finer / "plans.json").read_text())
    plans["target_spacing"] = [3.0, 1.0, 1.0]
    (finer / "plans.json").write_text(json.dumps(plans))

    write_refiner_run(tmp_path / "fold0", tmp_path / "refiner", epochs=1, preprocessed=finer)
    config = TrainingConfig.load(tmp_path / "refiner")
    assert config.preprocessed == str(finer) and config.train_ids == stage_one.train_ids
    train(config, tmp_path / "refiner")
    package = export_package([tmp_path / "fold0", tmp_path / "refiner"], tmp_path / "package", name="two-stage",
                             version="0.1.0")
    model = json.loads((Path(package) / "model.json").read_text())
    members = {m["role"]: m for m in model["members"]}
    assert members["refiner"]["preprocessing"]["target_spacing"] == [3.0, 1.0, 1.0]
    assert {**model["preprocessing"], **members["segmenter"].get("preprocessing", {})}["target_spacing"] == [
        3.0, 2.0, 2.0]

    (finer / "case_00002.json").unlink()
    with pytest.raises(KidneyTumorSegError, match=r"lacks 1 case\(s\) of stage 1's split"):
        write_refiner_run(tmp_path / "fold0", tmp_path / "other", preprocessed=finer)
    with pytest.raises(KidneyTumorSegError, match="holds no plans.json"):
        write_refiner_run(tmp_path / "fold0", tmp_path / "other", preprocessed=tmp_path / "nothing")


def test_every_validation_patch_of_a_refiner_holds_the_kidney_region_as_its_inference_crops_do(tmp_path: Path):
    from kidneytumorseg_training.trainer import Trainer

    folder = write_tiny_preprocessed(tmp_path / "pre", cases=4)
    stage_one = TrainingConfig(preprocessed=str(folder), train_ids=["case_00000", "case_00001"],
                               val_ids=["case_00002", "case_00003"], epochs=1, iterations_per_epoch=1,
                               val_iterations=4, seed=1, num_workers=0, threads=1, device="cpu",
                               augmentation={"enabled": False}, patch_size=[16, 16, 16])
    train(stage_one, tmp_path / "fold0")
    write_refiner_run(tmp_path / "fold0", tmp_path / "refiner", patch_size=(16, 16, 16), epochs=1)
    refiner = Trainer(TrainingConfig.load(tmp_path / "refiner"), tmp_path / "refiner")
    blank = [i for i in range(8) if not bool(refiner.val_data[i]["image"].any())]
    assert blank == [], f"validation patches {blank} lie outside the kidney region: all masked"
    segmenter = Trainer(stage_one, tmp_path / "fold0b")
    labels = [segmenter.val_data[i]["label"] for i in range(8)]
    assert any(not bool(label.any()) for label in labels), "a segmenter's validation still samples background"
