"""The equal-budget harness end to end with stand-in commands: every recipe trained, exported, predicted and
scored, nnU-Net at the recipes' schedule, the section of docs/recipes.md written, finished methods kept."""

from __future__ import annotations

import json

import pytest
from fake_runs import FakeRunner, tiny_package
from recipes_table import main, peer_schedule


@pytest.fixture
def setup(kits_dataset, tmp_path):
    (tmp_path / "train.txt").write_text("case_00000,case_00001,case_00002\n")
    (tmp_path / "test.txt").write_text("case_00003\ncase_00004\n")
    doc = tmp_path / "recipes.md"
    doc.write_text("# Recipes\n\nWritten by hand.\n\n## Results at equal budget\n\nold\n\n## Notes\nkept\n")
    runner = FakeRunner(kits_dataset, tiny_package(tmp_path / "tiny"), fail=["beta"], recipes=["alpha", "beta"])
    argv = [str(kits_dataset), "--budget", "smoke", "--train-cases", str(tmp_path / "train.txt"),
            "--test-cases", str(tmp_path / "test.txt"), "--work", str(tmp_path / "work"), "--doc", str(doc),
            "--threads", "1", "--device", "cpu", "--note", "Ran beside nothing else."]
    return runner, argv, doc, tmp_path / "work"


def test_table_from_every_recipe_and_the_peer(setup):
    runner, argv, doc, work = setup
    assert main(argv, runner) == 1  # beta failed
    run = next(c for c in runner.commands if c[1:4] == ["recipe", "run", "alpha"])
    assert run[run.index("--budget") + 1] == "smoke" and run[run.index("--threads") + 1] == "1"
    assert run[run.index("--train-cases") + 1] == str(work / "train_cases.txt")
    assert run[run.index("--export") + 1] == str(work / "models")
    assert run[run.index("--model-version") + 1] == "0.1.0"
    assert run[run.index("--precision") + 1] == "fp32"  # nnU-Net's trainer's arithmetic on a CPU
    predict = next(c for c in runner.commands if c[1] == "predict")
    assert predict[predict.index("--store-dir") + 1] == str(work / "models")
    assert predict[predict.index("--model") + 1] == "alpha@0.1.0"
    assert predict[predict.index("--precision") + 1] == "auto"  # the engine's default
    assert sorted(p.name for p in (work / "test_input").iterdir()) == ["case_00003", "case_00004"]
    train = next(c for c in runner.commands if "train" in c and "equal_budget.nnunet_worker" in c)
    assert (train[train.index("--epochs") + 1], train[train.index("--iterations") + 1]) == ("3", "4")
    plan = next(c for c in runner.commands if "plan" in c)
    assert plan[plan.index("--gpu-memory-gb") + 1] == "1.0"  # the smoke budget's planner target

    alpha = json.loads((work / "results" / "alpha.json").read_text())
    assert alpha["inference_seconds"] == {"case_00003": 1.0, "case_00004": 2.0}
    assert alpha["metrics"]["mean_dice"] == pytest.approx(1.0)
    assert alpha["schedule"] == {"epochs": 3, "iterations_per_epoch": 4}
    assert alpha["parameters"] > 0 and alpha["device"] == "cpu"
    assert alpha["train_seconds"] == 5.0  # the epochs' logged times, not the command's wall clock
    peer = json.loads((work / "nnunet" / "result.json").read_text())
    assert peer["train_seconds"] == 10.0  # 2 epochs x median 5 s  # nnU-Net's "Epoch time" lines
    assert not (work / "results" / "beta.json").exists()
    for recipe in ("alpha", "beta"):  # recipes that preprocess alike share the table's cache
        assert (work / "runs" / recipe / "preprocessed").resolve() == (work / "preprocessed").resolve()

    text = doc.read_text()
    assert text.startswith("# Recipes\n\nWritten by hand.\n\n## Results at equal budget\n")
    assert text.endswith("## Notes\nkept\n") and "\nold\n" not in text
    assert "logical CPUs" in text and "budget `smoke`" in text and "synthetic" in text
    assert "ran with 1 torch thread(s)" in text and "\nRan beside nothing else.\n" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| alpha | 3 x 4 | 1.000 |") and rows[2].startswith("| nnU-Net v2 | 3 x 4 | 1.000 |")
    assert "`beta`" in text and "it matches nnU-Net v2" in text
    assert "benchmarks/recipes_table.py" in text and "--budget smoke" in text


def test_finished_methods_are_not_run_again(setup):
    runner, argv, doc, work = setup
    main(argv, runner)
    before = len(runner.commands)
    runner.fail = set()
    stale = json.loads((work / "results" / "alpha.json").read_text())
    (work / "results" / "alpha.json").write_text(json.dumps({**stale, "train_seconds": 7.7}))  # an old wall clock
    assert main(argv, runner) == 0
    assert json.loads((work / "results" / "alpha.json").read_text())["train_seconds"] == 5.0
    again = runner.commands[before:]
    assert [c[3] for c in again if c[1:3] == ["recipe", "run"]] == ["beta"]  # only the failed one
    assert not any("equal_budget.nnunet_worker" in c for c in again)
    assert "Not in the table" not in doc.read_text()
    assert [line.split("|")[1].strip() for line in doc.read_text().splitlines()
            if line.startswith("| ")][1:] == ["alpha", "beta", "nnU-Net v2"]
    before = len(runner.commands)
    assert main([*argv, "--recipes", "alpha", "--force"], runner) == 0
    forced = runner.commands[before:]
    assert [c[3] for c in forced if c[1:3] == ["recipe", "run"]] == ["alpha"]
    assert sum("equal_budget.nnunet_worker" in c and "train" in c for c in forced) == 1
    assert sum("equal_budget.nnunet_worker" in c and "plan" in c for c in forced) == 0  # preprocessing kept


def test_a_killed_prediction_resumes_with_the_cases_not_yet_predicted(setup):
    runner, argv, doc, work = setup
    runner.predict_stops_after = 1  # killed after the first test case
    main([*argv, "--recipes", "alpha", "--no-peer"], runner)
    predictions = work / "predictions" / "alpha"
    assert sorted(p.name for p in predictions.glob("*.nii.gz")) == ["case_00003.nii.gz"]
    assert not (work / "results" / "alpha.json").exists()

    runner.predict_stops_after = None
    before = len(runner.commands)
    assert main([*argv, "--recipes", "alpha", "--no-peer"], runner) == 0
    [predict] = [c for c in runner.commands[before:] if c[1] == "predict"]
    assert predict[predict.index("-i") + 1] == str(work / "test_input_remaining" / "alpha")
    assert sorted(p.name for p in (work / "test_input_remaining" / "alpha").iterdir()) == ["case_00004"]
    result = json.loads((work / "results" / "alpha.json").read_text())
    assert result["inference_seconds"] == {"case_00003": 1.0, "case_00004": 1.0}  # each from its own run
    assert result["metrics"]  # both cases scored


def test_predictions_from_other_weights_are_not_kept(setup):
    runner, argv, doc, work = setup
    runner.predict_stops_after = 1
    main([*argv, "--recipes", "alpha", "--no-peer"], runner)
    (work / "predictions" / "alpha" / ".weights").write_text("another package's weights\n")
    runner.predict_stops_after = None
    before = len(runner.commands)
    assert main([*argv, "--recipes", "alpha", "--no-peer"], runner) == 0
    [predict] = [c for c in runner.commands[before:] if c[1] == "predict"]
    assert predict[predict.index("-i") + 1] == str(work / "test_input")
    assert json.loads((work / "results" / "alpha.json").read_text())["inference_seconds"] == {
        "case_00003": 1.0, "case_00004": 2.0}


def test_peer_schedule_from_the_recipes_or_given():
    results = [{"name": n, "schedule": s} for n, s in
               [("a", {"epochs": 10, "iterations_per_epoch": 5}), ("b", {"epochs": 10, "iterations_per_epoch": 5}),
                ("c", {"epochs": 20, "iterations_per_epoch": 5}), ("d", None)]]
    assert peer_schedule(results, None, None) == (10, 5)
    assert peer_schedule(results, 7, None) == (7, 5)
    assert peer_schedule([], 7, 3) == (7, 3)
    with pytest.raises(RuntimeError, match="--peer-epochs"):
        peer_schedule(results[3:], None, None)


@pytest.mark.parametrize(("precision", "peer_half"), [("half", True), ("fp32", False)])
def test_nnunet_predicts_with_the_recipes_arithmetic(setup, precision, peer_half):
    runner, argv, doc, work = setup
    main([*argv, "--precision", precision], runner)
    predict = next(c for c in runner.commands if c[1] == "predict")
    assert predict[predict.index("--precision") + 1] == precision
    peer_predict = next(c for c in runner.commands if "predict" in c and "equal_budget.nnunet_worker" in c)
    assert ("--half-precision" in peer_predict) is peer_half
    assert ("nnU-Net alike" in doc.read_text()) is peer_half
