"""Reading back what the recipe commands leave: recipe names, schedules, the package and prediction times."""

from __future__ import annotations

import json

import pytest
from equal_budget.recipes import (
    common_schedule,
    count_parameters,
    find_package,
    parse_recipe_list,
    predict_seconds,
    recipe_schedule,
)
from fake_runs import tiny_package
from safetensors.torch import load_file

from kidneytumorseg.model_package import ModelPackage


def test_recipe_names_from_plain_and_table_listings():
    plain = "zhao2019-msunet    Zhao 2019, multi-scale U-Net\nisensee2019-plain: plain U-Net\n\n# comment\n"
    assert parse_recipe_list(plain) == ["zhao2019-msunet", "isensee2019-plain"]
    table = "| name | paper |\n|---|---|\n| tunet | TuNet |\n| kits19-twostage | two stages |\n"
    assert parse_recipe_list(table) == ["tunet", "kits19-twostage"]
    listing = ("isensee2019-plain      plain 3D U-Net, 30 features\n"
               "                       Isensee F, Maier-Hein KH. An attempt at beating the 3D U-Net.\n"
               "zang2021-kits21        3D U-Net at 1.99 mm isotropic\n"
               "                       and more text\n")
    assert parse_recipe_list(listing) == ["isensee2019-plain", "zang2021-kits21"]


def _config(folder, epochs, iterations):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"epochs": epochs, "iterations_per_epoch": iterations,
                                                    "train_ids": ["case_00000"]}))


def test_schedule_of_one_and_of_several_stages(tmp_path):
    assert recipe_schedule(tmp_path / "absent") is None
    _config(tmp_path / "single" / "fold0", 40, 25)
    (tmp_path / "single" / "export").mkdir()
    (tmp_path / "single" / "export" / "config.json").write_text('{"something": "else"}')
    assert recipe_schedule(tmp_path / "single") == {"epochs": 40, "iterations_per_epoch": 25}
    _config(tmp_path / "cascade" / "kidney", 20, 25)
    _config(tmp_path / "cascade" / "tumor", 40, 25)
    schedule = recipe_schedule(tmp_path / "cascade")
    assert (schedule["epochs"], schedule["iterations_per_epoch"]) == (40, 25)
    assert len(schedule["stages"]) == 2


def test_common_schedule_is_the_most_frequent():
    a, b = {"epochs": 40, "iterations_per_epoch": 25}, {"epochs": 20, "iterations_per_epoch": 50}
    assert common_schedule([b, a, None, a]) == (40, 25)
    assert common_schedule([b, a]) == (20, 50)
    assert common_schedule([None]) is None


def test_package_found_in_store_or_folder_layout(tmp_path):
    (tmp_path / "m" / "r" / "0.1.0").mkdir(parents=True)
    (tmp_path / "m" / "r" / "0.1.0" / "model.json").write_text("{}")
    assert find_package(tmp_path / "m", "r", "0.1.0") == (tmp_path / "m" / "r" / "0.1.0", True)
    (tmp_path / "f" / "r").mkdir(parents=True)
    (tmp_path / "f" / "r" / "model.json").write_text("{}")
    assert find_package(tmp_path / "f", "r", "0.1.0") == (tmp_path / "f" / "r", False)
    with pytest.raises(FileNotFoundError, match="--export"):
        find_package(tmp_path / "none", "r", "0.1.0")


def test_parameters_count_every_member(tmp_path):
    folder = tiny_package(tmp_path)
    package = ModelPackage.load(folder)
    expected = sum(tensor.numel() for member in package.members
                   for tensor in load_file(str(package.member_path(member))).values())
    assert len(package.members) == 2
    assert count_parameters(folder) == expected > 0


def test_seconds_from_json_lines():
    output = ("warning: something\n"
              '{"type": "progress", "case": "case_00002", "stage": "tiles", "fraction": 0.5}\n'
              '{"type": "result", "case": "case_00002", "seconds": 12.5}\n'
              "{not json\n"
              '{"type": "result", "case": "/data/case_00007.nii.gz", "seconds": 3}\n')
    assert predict_seconds(output) == {"case_00002": 12.5, "case_00007": 3.0}
