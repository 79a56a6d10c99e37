"""Result files, the markdown table, the verdict and the replacement of docs/recipes.md's section."""

from __future__ import annotations

import pytest
from equal_budget.report import (
    SECTION_HEADING,
    cpu_description,
    format_table,
    read_result,
    replace_section,
    verdict,
    write_result,
)


def result(name: str, kind: str, mean_dice: float, device: str = "cpu") -> dict:
    regions = {"kidney_and_mass": 0.9, "mass": 0.6, "tumor": 0.5}
    return {"name": name, "kind": kind, "schedule": {"epochs": 50, "iterations_per_epoch": 25},
            "train_seconds": 1230.0, "inference_seconds": {"case_00002": 30.0, "case_00007": 10.0, "case_00012": 20.0},
            "parameters": 1_234_567, "device": device,
            "metrics": {"dice": regions, "surface_dice": {k: v - 0.1 for k, v in regions.items()},
                        "mean_dice": mean_dice, "mean_surface_dice": 0.567}}


def test_result_round_trip_and_incomplete_files(tmp_path):
    path = write_result(result("a", "recipe", 0.7), tmp_path / "results" / "a.json")
    assert read_result(path) == result("a", "recipe", 0.7)
    assert not list(path.parent.glob(".*.tmp"))
    incomplete = result("b", "recipe", 0.7)
    del incomplete["metrics"]
    with pytest.raises(ValueError, match="metrics"):
        write_result(incomplete, tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"name": "c"}')
    with pytest.raises(ValueError, match="--force"):
        read_result(tmp_path / "c.json")


def test_cpu_description_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\n\nprocessor\t: 1\n"
                       "model name\t: Test CPU @ 2.0GHz\n")
    assert cpu_description(cpuinfo) == "Test CPU @ 2.0GHz (2 logical CPUs)"


def test_table_rows():
    table = format_table([result("zhao2019-msunet", "recipe", 0.667), result("nnU-Net v2", "peer", 0.6)])
    header, rule, first, second = table.splitlines()
    assert header.startswith("| method | epochs x iterations (per network) | Dice kidney+mass | Dice mass | "
                             "Dice tumor | mean Dice")
    assert rule.count("---") == header.count("|") - 1
    cells = [cell.strip() for cell in first.strip("|").split("|")]
    assert cells == ["zhao2019-msunet", "50 x 25", "0.900", "0.600", "0.500", "**0.667**", "0.800", "0.500",
                     "0.400", "0.567", "20.5", "20.0", "1.23 M"]
    assert second.startswith("| nnU-Net v2 |")
    cascade = result("kits19-twostage", "recipe", 0.5)
    stages = [{"epochs": 22, "iterations_per_epoch": 4}, {"epochs": 22, "iterations_per_epoch": 11}]
    cascade["schedule"] = {"epochs": 22, "iterations_per_epoch": 11, "stages": stages}
    assert "| kits19-twostage | 22 x 4 + 22 x 11 |" in format_table([cascade])
    with_device = format_table([result("a", "recipe", 0.5, device="NVIDIA H100")], gpu_column=True)
    assert with_device.splitlines()[0].endswith("| device |")
    assert with_device.splitlines()[2].endswith("| NVIDIA H100 |")


def test_verdict_names_the_best_recipe():
    results = [result("a", "recipe", 0.5), result("b", "recipe", 0.7), result("nnU-Net v2", "peer", 0.6)]
    assert "`b`, mean Dice 0.700; it beats nnU-Net v2 (0.600)" in verdict(results)
    results[1]["metrics"]["mean_dice"] = 0.55
    assert "falls short of" in verdict(results)
    assert "No method learned" not in verdict(results)
    assert verdict(results[:2]) == ""


def test_verdict_says_when_no_method_learned():
    results = [result("a", "recipe", 0.007), result("b", "recipe", 0.03), result("nnU-Net v2", "peer", 0.02)]
    text = verdict(results)
    assert "`b`, mean Dice 0.030; it beats nnU-Net v2 (0.020)" in text
    assert "No method learned to segment at this budget" in text and "not their accuracy" in text


def test_replaces_only_its_section():
    document = ("# Recipes\n\nIntro.\n\n## Results at equal budget\n\nold table\n```bash\n# not a heading\n```\n"
                "still old\n\n### Sub-heading of the old section\nold\n\n## Next section\nkept\n")
    updated = replace_section(document, SECTION_HEADING, "new table")
    assert updated == "# Recipes\n\nIntro.\n\n## Results at equal budget\n\nnew table\n\n## Next section\nkept\n"
    assert replace_section(updated, SECTION_HEADING, "new table") == updated


def test_appends_a_missing_section():
    assert replace_section("# Recipes\nIntro.\n", SECTION_HEADING, "table\n") == \
        "# Recipes\nIntro.\n\n## Results at equal budget\n\ntable\n"
