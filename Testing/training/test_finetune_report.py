"""The fine-tuning report: report.md shows every KiTS region before and after, and a missing score as n/a."""

from __future__ import annotations

from kidneytumorseg.labels import KITS_REGIONS
from kidneytumorseg_training.finetune_report import format_score, report_markdown


def _metrics(dice: float | None) -> dict:
    regions = {r.name: {"dice": dice, "surface_dice": None if dice is None else dice / 2} for r in KITS_REGIONS}
    return {"regions": regions, "mean_dice": dice, "mean_surface_dice": None if dice is None else dice / 2}


def test_report_lists_every_region_before_and_after():
    report = {"parent": "kits@1.0.0", "model": "kits@1.0.1", "corrections": "/c", "train_ids": ["a", "b"],
              "holdout_ids": ["c"], "replay": None, "replay_ids": [], "skipped": [], "members": ["fold0"],
              "evaluated_members": ["fold0"], "settings": {"epochs": 1},
              "seconds": {"total": 12.0, "preprocess": 1.0, "train": 8.0, "evaluate": 3.0},
              "before": _metrics(None), "after": _metrics(0.8)}
    text = report_markdown(report)
    assert text.startswith("# Fine-tuning kits@1.0.0 -> kits@1.0.1\n")
    for region in KITS_REGIONS:
        assert f"| {region.name} | n/a | 0.800 | n/a | 0.400 |" in text
    assert "| mean | n/a | 0.800 | n/a | 0.400 |" in text
    assert "- replayed cases: none" in text and "held out: 1 case(s): c" in text


def test_report_adds_the_check_cases_when_it_has_them():
    report = {"parent": "kits@1.0.0", "model": "kits@1.0.1", "corrections": "/c", "train_ids": ["a"],
              "holdout_ids": ["c"], "replay": None, "replay_ids": [], "skipped": [], "members": ["fold0"],
              "evaluated_members": ["fold0"], "settings": {"epochs": 1},
              "seconds": {"total": 12.0, "preprocess": 1.0, "train": 8.0, "evaluate": 3.0},
              "before": _metrics(0.5), "after": _metrics(0.6), "check": None}
    assert "check cases" not in report_markdown(report)
    report["check"] = {"folder": "/earlier", "skipped": {"e": "bad"},
                       "before": {**_metrics(0.9), "case_ids": ["d", "f"]},
                       "after": {**_metrics(0.7), "case_ids": ["d", "f"]}}
    text = report_markdown(report)
    held_out, check = text.split("## The check cases")
    assert "| tumor | 0.500 | 0.600 | 0.250 | 0.300 |" in held_out
    assert "(`/earlier`)" in check and "2 case(s): d, f; skipped: e" in check
    assert "| tumor | 0.900 | 0.700 | 0.450 | 0.350 |" in check
    assert "also replayed" not in check
    report["check"]["replayed"] = ["f"]
    assert "- also replayed in the fine-tune (their scores flatter the new version): f" in report_markdown(report)


def test_format_score():
    assert format_score(None) == "n/a" and format_score(0.12345) == "0.123"
