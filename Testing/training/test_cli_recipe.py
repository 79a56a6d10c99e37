"""``kidneytumorseg-train recipe list | show | run``: the names, the settings as JSON, and a run that exports into a
model store and prints the package folder last."""

from __future__ import annotations

import json
import logging

import pytest
from recipe_cases import write_tiny_kits_dataset

from kidneytumorseg.model_store import ModelStore, default_bundled_dir
from kidneytumorseg_training.cli.main import main
from kidneytumorseg_training.recipes import recipe_names


def test_list_names_every_recipe_and_its_paper(capsys):
    assert main(["recipe", "list"]) == 0
    out = capsys.readouterr().out
    for name in recipe_names():
        assert name in out
    assert "Isensee" in out and "Zang" in out and "Zhao" in out


def test_show_prints_the_settings_at_a_budget(capsys):
    assert main(["recipe", "show", "zang2021-kits21"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert full["budget"] == {"name": "full", "fraction": 1.0}
    assert full["training"]["patch_size"] == [128, 128, 128] and full["training"]["learning_rate"] == 0.06
    assert main(["recipe", "show", "zang2021-kits21", "--budget", "cpu"]) == 0
    cpu = json.loads(capsys.readouterr().out)
    assert cpu["budget"]["name"] == "cpu" and cpu["training"]["epochs"] < 1000
    assert cpu["training"]["learning_rate"] == 0.06


def test_bad_budget_and_unknown_recipe_are_clear_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "show", "zang2021-kits21", "--budget", "lots"])
    assert exit_info.value.code == 2 and "number in (0, 1]" in capsys.readouterr().err
    assert main(["recipe", "show", "no-such-recipe"]) == 2
    assert "Unknown recipe 'no-such-recipe'" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_run_exports_into_a_store_and_prints_the_package(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    data = write_tiny_kits_dataset(tmp_path / "data")
    pool = tmp_path / "pool.txt"
    pool.write_text("case_00112\n")
    store = tmp_path / "models"
    code = main(["recipe", "run", "isensee2019-preact", "--data", str(data), "--work", str(tmp_path / "work"),
                 "--budget", "smoke", "--train-cases", str(pool), "--val-cases", "case_00161", "--threads", "1",
                 "--workers", "0", "--jobs", "1", "--device", "cpu", "--export", str(store), "--model-name", "kits-pre",
                 "--model-version", "0.2.0", "--seed", "3"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(store / "kits-pre" / "0.2.0")
    package = ModelStore(default_bundled_dir(), store).verify("kits-pre@0.2.0")
    assert package.provenance["recipe"] == "isensee2019-preact" and package.provenance["budget"]["name"] == "smoke"
    assert "Training fold 0" in caplog.text and "Exported kits-pre@0.2.0" in caplog.text
    config = json.loads((tmp_path / "work" / "runs" / "isensee2019-preact" / "smoke" / "fold0" / "config.json")
                        .read_text())
    assert config["seed"] == 3 and config["train_ids"] == ["case_00112"] and config["val_ids"] == ["case_00161"]
