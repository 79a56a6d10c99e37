"""Fine-tuning a two-stage package (segmenters of the four KiTS labels plus a refiner, as kits-demo 1.5.0): the
segmenters are fine-tuned, the refiner is kept byte for byte, and before/after are measured through both stages,
as the engine segments with the package."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
import torch
from test_finetune import make_corrections, make_store
from tiny_models import add_tiny_refiner

from kidneytumorseg.model_package import ModelPackage, file_sha256, load_member_weights
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg_training.finetune import finetune


@pytest.fixture(scope="module")
def finetuned_two_stage(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune_two_stage")
    store = make_store(root)
    parent = add_tiny_refiner(store)
    corrections = make_corrections(root / "corrections", half_written=False)
    result = finetune("tiny@1.1.0", corrections, holdout=0.5, epochs=2, iterations=5, learning_rate=1e-2,
                      optimizer="adam", store=store, work_dir=root / "work", seed=0, threads=1)
    return {"store": store, "parent": parent, "result": result, "corrections": corrections, "root": root}


def test_the_segmenters_are_fine_tuned_and_the_refiner_is_kept(finetuned_two_stage):
    parent, result = finetuned_two_stage["parent"], finetuned_two_stage["result"]
    new = ModelPackage.load(result.package_path)
    assert [m.name for m in new.refiners] == ["refiner"]
    assert new.refiners[0].inputs.stage_one_weight == (0.5, 0.5, 1.0)
    assert file_sha256(new.path / new.refiners[0].file) == file_sha256(parent.path / parent.refiners[0].file)
    old_fold, new_fold = load_member_weights(parent, "fold0"), load_member_weights(new, "fold0")
    assert any(not torch.equal(old_fold[k], new_fold[k]) for k in old_fold)
    report = json.loads((finetuned_two_stage["root"] / "work" / "report.json").read_text())
    assert report["refiners_kept"] == ["refiner"] and report["members"] == ["fold0"]
    assert "refiners kept as they were" in (finetuned_two_stage["root"] / "work" / "report.md").read_text()


@pytest.mark.parametrize("when", ["before", "after"])
def test_held_out_cases_are_scored_through_both_stages(finetuned_two_stage, when):
    """The report's per-case volumes are those the engine's two-stage Predictor gives with the package (the
    parent before, the new version after), not those of its stage 1 alone."""
    result, corrections = finetuned_two_stage["result"], finetuned_two_stage["corrections"]
    package = finetuned_two_stage["parent"] if when == "before" else ModelPackage.load(result.package_path)
    report = json.loads((finetuned_two_stage["root"] / "work" / f"evaluation_{when}" / "validation.json").read_text())
    scored = {case["case_id"]: case["volume_pred_ml"] for case in report["cases"]}
    assert sorted(scored) == sorted(result.holdout_ids)
    two_stage = Predictor(package, PredictionOptions(device="cpu", precision="fp32"))
    assert two_stage.refinement is not None
    for case_id in result.holdout_ids:
        image = sitk.ReadImage(str(corrections / case_id / "imaging.nii.gz"))
        volumes = two_stage.segment(image).volumes_ml
        for label in ("kidney", "tumor", "cyst"):
            assert scored[case_id][label] == pytest.approx(volumes[label], abs=1e-3), (case_id, label)
