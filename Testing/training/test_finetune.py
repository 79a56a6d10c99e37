"""Fine-tuning a model package on corrections: a new version beside the old one, held-out metrics before and
after, clear errors. A random-weight package at 6 mm is fine-tuned on four coarse corrected cases (two committed
synthetic CTs and their mirror images) in well under a minute on one CPU thread."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
from tiny_models import NORMALIZATION, make_tiny_store

from kidneytumorseg.errors import ModelNotFoundError
from kidneytumorseg.model_package import MemberSpec, build_member, file_sha256, load_member_weights
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.networks import plan_network
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg_training.checkpoint import load_weights
from kidneytumorseg_training.cli.main import main
from kidneytumorseg_training.finetune import finetune, next_patch_version, package_plans
from kidneytumorseg_training.finetune_data import (
    REPLAY_PREFIX,
    FinetuneError,
    add_replay,
    replay_subset,
    replayed_check_cases,
    same_setting,
)
from kidneytumorseg_training.trainer import LATEST, resolve_training_precision

SYNTHETIC = Path(__file__).resolve().parents[1] / "fixtures" / "synthetic"
SOURCES = ("case_00112", "case_00161")
HALF_WRITTEN = "case_00999"


def _coarse(image: sitk.Image, spacing: float, label: bool) -> sitk.Image:
    size = [int(round(n * s / spacing)) for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)]
    interpolator, fill = (sitk.sitkNearestNeighbor, 0) if label else (sitk.sitkLinear, -1000)
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), (spacing,) * 3,
                         image.GetDirection(), fill, image.GetPixelID())


def _write_case(folder: Path, image: sitk.Image, label: sitk.Image, record: bool = True) -> None:
    folder.mkdir(parents=True)
    sitk.WriteImage(image, str(folder / "imaging.nii.gz"))
    sitk.WriteImage(label, str(folder / "segmentation.nii.gz"))
    if record:
        (folder / "correction.json").write_text(json.dumps(
            {"model": "tiny", "version": "1.0.0", "time": "2024-05-01T12:00:00+00:00", "note": "test"}))


def make_corrections(folder: Path, sources: tuple[str, ...] = SOURCES, mirrored: bool = True,
                     half_written: bool = True) -> Path:
    """Corrections at 4 mm: each source case, its left-right mirror image, and one export without its record."""
    for name in sources:
        image = _coarse(sitk.ReadImage(str(SYNTHETIC / name / "imaging.nii.gz")), 4.0, label=False)
        label = _coarse(sitk.ReadImage(str(SYNTHETIC / name / "segmentation.nii.gz")), 4.0, label=True)
        _write_case(folder / name, image, label)
        if mirrored:
            _write_case(folder / f"{name}1", sitk.Flip(image, [True, False, False]),
                        sitk.Flip(label, [True, False, False]))
    if half_written:
        _write_case(folder / HALF_WRITTEN, image, label, record=False)
    return folder


def make_check_cases(folder: Path) -> Path:
    """Earlier cases in the KiTS layout at 4 mm: case_00112 (also a correction's id), case_00500 (case_00161
    flipped front to back, which no correction shows) and case_00998, whose mask holds label 7."""
    def coarse(name: str) -> tuple[sitk.Image, sitk.Image]:
        return (_coarse(sitk.ReadImage(str(SYNTHETIC / name / "imaging.nii.gz")), 4.0, label=False),
                _coarse(sitk.ReadImage(str(SYNTHETIC / name / "segmentation.nii.gz")), 4.0, label=True))

    image, label = coarse("case_00112")
    _write_case(folder / "case_00112", image, label, record=False)
    image, label = coarse("case_00161")
    _write_case(folder / "case_00500", sitk.Flip(image, [False, True, False]), sitk.Flip(label, [False, True, False]),
                record=False)
    _write_case(folder / "case_00998", image, sitk.Add(label, sitk.Cast(label == 1, label.GetPixelID()) * 6),
                record=False)
    return folder


def make_store(root: Path) -> ModelStore:
    """A store holding tiny@1.0.0: one random segmenter (6 mm) and a random localizer."""
    return make_tiny_store(root)


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    store = make_store(root)
    old = store.find("tiny@1.0.0").path
    old_hashes = {p.name: file_sha256(p) for p in sorted(old.iterdir())}
    corrections = make_corrections(root / "corrections")
    check_cases = make_check_cases(root / "earlier")
    messages, stages = _Messages(), []
    logging.getLogger("kidneytumorseg_training").addHandler(messages)
    try:
        result = finetune("tiny@1.0.0", corrections, holdout=0.5, epochs=10, iterations=20, learning_rate=1e-2,
                          optimizer="adam", check_cases=check_cases, store=store, work_dir=root / "work", seed=0,
                          threads=1, progress=lambda stage, fraction: stages.append((stage, fraction)))
    finally:
        logging.getLogger("kidneytumorseg_training").removeHandler(messages)
    return {"store": store, "result": result, "old": old, "old_hashes": old_hashes, "root": root,
            "corrections": corrections, "messages": messages.messages, "stages": stages}


def _assert_kidneys_found_after(before: dict, after: dict) -> None:
    """The fine-tuned members' kidney_and_mass Dice is clearly above the random parent's."""
    dice = (before["regions"]["kidney_and_mass"]["dice"], after["regions"]["kidney_and_mass"]["dice"])
    assert dice[1] > dice[0] + 0.2, dice


def test_new_version_is_installed_beside_the_old_one(finetuned):
    store, result = finetuned["store"], finetuned["result"]
    assert result.version == "1.0.1" == next_patch_version("1.0.0")
    new = store.verify("tiny@1.0.1")
    assert new.path == result.package_path and (new.path / "finetune_report.json").is_file()
    for member in new.members:
        build_member(new, member)  # strict: the fine-tuned weights fit the packaged network description
    old = store.verify("tiny@1.0.0")
    assert old.path == finetuned["old"]
    assert {p.name: file_sha256(p) for p in sorted(old.path.iterdir())} == finetuned["old_hashes"]
    old_fold, new_fold = load_member_weights(old, "fold0"), load_member_weights(new, "fold0")
    assert old_fold.keys() == new_fold.keys() and any(not torch.equal(old_fold[k], new_fold[k]) for k in old_fold)
    old_loc, new_loc = load_member_weights(old, "localizer"), load_member_weights(new, "localizer")
    assert old_loc.keys() == new_loc.keys() and all(torch.equal(old_loc[k], new_loc[k]) for k in old_loc)
    provenance = new.provenance
    assert provenance["parent_version"] == "1.0.0" and provenance["corrections"] == str(finetuned["corrections"])
    assert provenance["metrics"]["after"] == result.after and provenance["metrics"]["before"] == result.before


def test_members_train_with_the_batch_dice_the_bundled_members_were_trained_with(finetuned):
    config = json.loads((finetuned["root"] / "work" / "runs" / "fold0" / "config.json").read_text())
    assert config["loss_options"] == {"batch_dice": True}
    settings = finetuned["store"].resolve("tiny@1.0.1").provenance["settings"]
    assert settings["batch_dice"] is True
    # the defaults: a third of the patches on a cyst, as the bundled members were trained
    assert (config["hard_case_class"], config["hard_case_fraction"]) == (3, 0.33)
    assert (settings["hard_case_class"], settings["hard_case_fraction"]) == (3, 0.33)
    assert config["anchor_strength"] == settings["anchor_strength"] == 0.0  # no L2-SP by default
    assert config["distill_weight"] == settings["distill_weight"] == 0.0  # no replay data: no distillation
    # auto precision is resolved before training: the report names the autocast the members trained in
    run = json.loads((finetuned["root"] / "work" / "runs" / "fold0" / "run.json").read_text())
    assert settings["precision"] == config["precision"] == run["precision"] == \
        resolve_training_precision("auto", torch.device("cpu"))


def test_new_version_segments_through_the_predictor(finetuned):
    predictor = Predictor.from_store("tiny@1.0.1", PredictionOptions(device="cpu"), store=finetuned["store"])
    held_out = finetuned["result"].holdout_ids[0]
    image = sitk.ReadImage(str(finetuned["corrections"] / held_out / "imaging.nii.gz"))
    assert predictor.localizer is not None  # the copied localizer runs the cascade
    assert predictor.segment(image).labels.GetSize() == image.GetSize()


def test_report_compares_held_out_cases_before_and_after(finetuned):
    result = finetuned["result"]
    assert result.holdout_ids and result.train_ids and not set(result.holdout_ids) & set(result.train_ids)
    assert sorted(result.holdout_ids + result.train_ids) == sorted([*SOURCES, *(f"{s}1" for s in SOURCES)])
    report = json.loads(result.report_path.read_text())
    assert report["holdout_ids"] == result.holdout_ids and report["train_ids"] == result.train_ids
    for when in ("before", "after"):
        assert report[when]["case_ids"] == result.holdout_ids == sorted(report[when]["cases"])
        assert set(report[when]["regions"]) == {"kidney_and_mass", "mass", "tumor"}
        assert all(set(v) == {"dice", "surface_dice"} for v in report[when]["regions"].values())
    assert report == json.loads((result.package_path / "finetune_report.json").read_text())
    markdown = (result.report_path.parent / "report.md").read_text()
    assert "kidney_and_mass" in markdown and "tiny@1.0.0 -> tiny@1.0.1" in markdown
    # A random network fine-tuned on the corrections segments the held-out kidneys clearly better.
    _assert_kidneys_found_after(result.before, result.after)


def test_check_cases_show_what_the_fine_tune_does_to_earlier_cases(finetuned):
    result = finetuned["result"]
    assert result.check_before["case_ids"] == result.check_after["case_ids"] == ["case_00112", "case_00500"]
    report = json.loads(result.report_path.read_text())
    assert report["check"]["before"] == result.check_before and report["check"]["after"] == result.check_after
    assert list(report["check"]["skipped"]) == ["case_00998"] and "label" in report["check"]["skipped"]["case_00998"]
    assert report["check"]["replayed"] == []  # no replay data in this fine-tune
    # the case that is also a correction is named: its score flatters the new version
    assert any("case_00112" in m and "also corrections" in m for m in finetuned["messages"])
    markdown = (result.report_path.parent / "report.md").read_text()
    assert "## The check cases" in markdown and "case_00112, case_00500; skipped: case_00998" in markdown
    # real scores of both versions: the random parent misses the kidneys the fine-tuned network finds
    _assert_kidneys_found_after(result.check_before, result.check_after)


def test_check_cases_without_a_usable_case_are_refused_before_any_training(tmp_path):
    store = make_store(tmp_path)
    corrections = make_corrections(tmp_path / "corrections", half_written=False)
    check_cases = make_check_cases(tmp_path / "earlier")
    for name in ("case_00112", "case_00500"):
        (check_cases / name / "segmentation.nii.gz").unlink()
    with pytest.raises(FinetuneError, match=r"no usable check case .*case_00112, case_00500, case_00998.*check-cases"):
        finetune("tiny@1.0.0", corrections, check_cases=check_cases, store=store, work_dir=tmp_path / "work")
    assert not (tmp_path / "work" / "runs").exists()


def test_progress_is_reported_in_stages_and_epochs_up_to_one(finetuned):
    stages = finetuned["stages"]
    # training: once as it starts, then after each of the 10 epochs
    assert [stage for stage, _ in stages] == ["preprocess", *["train fold0"] * 11, "evaluate", "export", "done"]
    assert [f for stage, f in stages if stage == "train fold0"] == pytest.approx([0.1 + 0.06 * e for e in range(11)])
    fractions = [fraction for _, fraction in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_half_written_export_is_skipped_and_named(finetuned):
    assert HALF_WRITTEN in finetuned["result"].skipped
    assert any(HALF_WRITTEN in message and "correction.json" in message for message in finetuned["messages"])
    assert HALF_WRITTEN not in finetuned["result"].train_ids + finetuned["result"].holdout_ids


def test_existing_version_is_refused(finetuned):
    with pytest.raises(FinetuneError, match=r"tiny@1\.0\.1 already exists"):
        finetune("tiny@1.0.0", finetuned["corrections"], version="1.0.1", store=finetuned["store"],
                 work_dir=finetuned["root"] / "again")


def test_fewer_than_two_usable_corrections_is_a_clear_error(tmp_path):
    store = make_store(tmp_path)
    corrections = make_corrections(tmp_path / "corrections", sources=SOURCES[:1], mirrored=False)
    with pytest.raises(FinetuneError, match=r"1 usable corrected case.*case_00999.*at least 2"):
        finetune("tiny@1.0.0", corrections, store=store, work_dir=tmp_path / "work")
    assert not (tmp_path / "user" / "tiny" / "1.0.1").exists()


def test_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(FinetuneError, match="epochs must be a whole number >= 1.*holdout must be a fraction"):
        finetune("tiny@1.0.0", tmp_path, epochs=0, holdout=1.5, store=make_store(tmp_path), work_dir=tmp_path / "w")
    with pytest.raises(FinetuneError, match="averaging fraction must be a number from 0"):
        finetune("tiny@1.0.0", tmp_path, average_fraction=1.5, store=make_store(tmp_path / "s"),
                 work_dir=tmp_path / "w")
    with pytest.raises(FinetuneError, match="hard_case_fraction is set but hard_case_class is not.*3 = cyst"):
        finetune("tiny@1.0.0", tmp_path, hard_case_class=None, hard_case_fraction=0.33,
                 store=make_store(tmp_path / "h"), work_dir=tmp_path / "w")
    with pytest.raises(FinetuneError, match="hard_case_class must be a KiTS label 1, 2 or 3.*got 4.*"
                                            "hard_case_fraction must be a fraction between 0 and 1, got 1.5.*"
                                            "anchor_strength must be a number >= 0"):
        finetune("tiny@1.0.0", tmp_path, hard_case_class=4, hard_case_fraction=1.5, anchor_strength=-1.0,
                 store=make_store(tmp_path / "k"),
                 work_dir=tmp_path / "w")
    with pytest.raises(FinetuneError, match="precision must be one of .*'fp32'.*got 'fp64'"):
        finetune("tiny@1.0.0", tmp_path, precision="fp64", store=make_store(tmp_path / "p"), work_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_averaging_with_the_parent_at_zero_gives_back_the_parents_weights(tmp_path):
    store = make_store(tmp_path)
    result = finetune("tiny@1.0.0", make_corrections(tmp_path / "corrections"), holdout=0.5, epochs=1, iterations=2,
                      learning_rate=1e-2, store=store, work_dir=tmp_path / "work", threads=1, average_fraction=0.0,
                      batch_dice=False, hard_case_class=2, hard_case_fraction=0.5,
                      anchor_strength=0.5)
    parent, new = store.resolve("tiny@1.0.0"), store.resolve(f"tiny@{result.version}")
    assert new.provenance["settings"]["average_fraction"] == 0.0
    config = json.loads((tmp_path / "work" / "runs" / parent.segmenters[0].name / "config.json").read_text())
    assert config["loss_options"] == {"batch_dice": False} and new.provenance["settings"]["batch_dice"] is False
    # the parent's sampling, as asked: half the patches centred on tumor (label 2), in the run and the provenance
    assert (config["hard_case_class"], config["hard_case_fraction"]) == (2, 0.5)
    assert (new.provenance["settings"]["hard_case_class"], new.provenance["settings"]["hard_case_fraction"]) == (2, 0.5)
    assert config["anchor_strength"] == new.provenance["settings"]["anchor_strength"] == 0.5
    for member in parent.segmenters:
        old, mixed = load_member_weights(parent, member), load_member_weights(new, member.name)
        assert all(torch.equal(old[name], mixed[name]) for name in old)
        trained = load_weights(tmp_path / "work" / "runs" / member.name / LATEST)
        assert any(not torch.equal(trained[name], old[name]) for name in old)  # training did move the weights


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    store = make_store(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"No model 'other@1\.0\.0'.*tiny@1\.0\.0"):
        finetune("other@1.0.0", tmp_path, store=store, work_dir=tmp_path / "work")
    code = main(["finetune", "--model", "other@2.0.0", "--corrections", str(tmp_path), "--store-dir",
                 str(tmp_path / "user"), "--work-dir", str(tmp_path / "work")])
    assert code == 2 and "No model 'other@2.0.0'" in capsys.readouterr().err


def test_replay_cases_join_under_a_prefix_and_other_preprocessing_is_refused(tmp_path):
    from tiny_preprocessed import PATCH as TINY_PATCH
    from tiny_preprocessed import SPACING as TINY_SPACING
    from tiny_preprocessed import write_tiny_preprocessed

    replay = write_tiny_preprocessed(tmp_path / "replay", cases=2)
    tiny_plans = json.loads((replay / "plans.json").read_text())
    network = plan_network(TINY_PATCH, TINY_SPACING, base_features=4).to_dict()
    member = MemberSpec("fold0", "fold0.safetensors", "0" * 64, "segmenter", network, tuple(TINY_PATCH),
                        {"target_spacing": TINY_SPACING, "normalization": tiny_plans["normalization"]}, {})
    folder = tmp_path / "pre"
    ids = add_replay(replay, package_plans(member, "corrections"), folder)
    assert ids == [f"{REPLAY_PREFIX}case_00000", f"{REPLAY_PREFIX}case_00001"]
    assert json.loads((folder / f"{ids[0]}.json").read_text())["case_id"] == ids[0]
    assert (folder / f"{ids[0]}.image.npy").resolve() == (replay / "case_00000.image.npy").resolve()
    one = add_replay(replay, package_plans(member, "corrections"), tmp_path / "pre1", corrections=1, ratio=1.0)
    assert len(one) == 1 and sorted(p.name for p in (tmp_path / "pre1").glob("*.json")) == [f"{one[0]}.json"]
    other = MemberSpec(**{**member.__dict__, "preprocessing": {"target_spacing": [6.0, 6.0, 6.0],
                                                               "normalization": NORMALIZATION}})
    with pytest.raises(FinetuneError, match="target_spacing.*normalization.*raw dataset folder"):
        add_replay(replay, package_plans(other, "corrections"), tmp_path / "pre2")
    # The same data preprocessed again (another --jobs) gives statistics that differ in their last digits:
    # still the package's preprocessing, so replayed; a real difference in the mean is still refused.
    stats = tiny_plans["normalization"]
    rounded = {**stats, "mean": stats["mean"] * (1 + 1e-8), "std": stats["std"] * (1 - 1e-8)}
    again = MemberSpec(**{**member.__dict__, "preprocessing": {"target_spacing": TINY_SPACING,
                                                               "normalization": rounded}})
    assert len(add_replay(replay, package_plans(again, "corrections"), tmp_path / "pre3")) == 2
    shifted = MemberSpec(**{**member.__dict__, "preprocessing": {"target_spacing": TINY_SPACING, "normalization":
                                                                 {**stats, "mean": stats["mean"] + 1.0}}})
    with pytest.raises(FinetuneError, match="other normalization"):
        add_replay(replay, package_plans(shifted, "corrections"), tmp_path / "pre4")


def test_preprocessing_settings_match_within_rounding_only():
    assert same_setting({"scheme": "clip_zscore", "clip": [-47.0, 293.0], "mean": 122.03447416666667},
                        {"scheme": "clip_zscore", "clip": [-47, 293], "mean": 122.034475})
    assert not same_setting({"scheme": "clip_zscore", "mean": 122.0}, {"scheme": "zscore", "mean": 122.0})
    assert not same_setting({"mean": 122.0}, {"mean": 122.0, "std": 1.0})
    assert not same_setting([3.0, 2.0, 2.0], [3.0, 2.0])
    assert not same_setting([3.0, 2.0, 2.0], [3.0, 2.0, 2.1])
    assert not same_setting(True, 1)


def test_a_stage_one_without_all_kits_labels_is_refused_with_what_to_do(tmp_path):
    from types import SimpleNamespace

    from kidneytumorseg_training.finetune import check_finetunable

    def member(name, output_labels=None):
        return SimpleNamespace(name=name, inputs=SimpleNamespace(output_labels=output_labels))

    kidney_region = SimpleNamespace(name="cascade", version="1.0.0", segmenters=(member("kidney", (0, 1)),),
                                    refiners=(member("tumor", (0, 2, 3)),))
    with pytest.raises(FinetuneError, match=r"not segment all KiTS labels.*kidney with output_labels.*recipe run"):
        check_finetunable(kidney_region)
    check_finetunable(SimpleNamespace(name="plain", version="1.0.0", segmenters=(member("fold0"),), refiners=()))
    # a stage 1 of the four KiTS labels with a refiner: its segmenters are fine-tuned (test_finetune_two_stage.py)
    check_finetunable(SimpleNamespace(name="refined", version="1.0.0", segmenters=(member("fold0"),),
                                      refiners=(member("refiner", (0, 2, 3)),)))
    store = SimpleNamespace(resolve=lambda spec: kidney_region)
    with pytest.raises(FinetuneError, match="not segment all KiTS labels"):  # before any work
        finetune("cascade@1.0.0", tmp_path / "nothing-here", store=store, work_dir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_package_plans_keep_the_members_image_interpolation(tmp_path):
    from kidneytumorseg.model_package import ModelPackage
    from kidneytumorseg_training.finetune import package_plans

    store = make_store(tmp_path)
    member = store.resolve("tiny@1.0.0").segmenters[0]
    assert package_plans(member, "d")["image_interpolation"] == "linear"
    manifest_path = store.find("tiny@1.0.0").path / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["preprocessing"]["image_interpolation"] = "bspline"
    manifest_path.write_text(json.dumps(manifest))
    spline = ModelPackage.load(manifest_path.parent).segmenters[0]
    assert package_plans(spline, "d")["image_interpolation"] == "bspline"


def test_check_cases_that_were_also_replayed_are_named(caplog):
    replay = [f"{REPLAY_PREFIX}case_00002", f"{REPLAY_PREFIX}case_00007"]
    with caplog.at_level(logging.WARNING):
        assert replayed_check_cases(["case_00007", "case_00112"], replay) == ["case_00007"]
    assert "case_00007" in caplog.text and "replayed cases the fine-tune trains on" in caplog.text
    assert replayed_check_cases(["case_00112"], replay) == []


def test_replay_is_a_seeded_subset_sized_by_the_ratio():
    replayed = [f"{REPLAY_PREFIX}case_{i:05d}" for i in range(240)]
    half = replay_subset(replayed, corrections=8, ratio=1.0, seed=0)
    assert len(half) == 8 and set(half) <= set(replayed) and half == sorted(half)
    assert replay_subset(replayed, corrections=8, ratio=1.0, seed=0) == half  # reproducible
    assert len(replay_subset(replayed, corrections=8, ratio=2.5, seed=0)) == 20
    assert replay_subset(replayed[:5], corrections=8, ratio=1.0, seed=0) == replayed[:5]  # fewer: all of them
    with pytest.raises(FinetuneError, match="replay_ratio"):
        finetune("kits-demo", "nowhere", replay_ratio=0)
