"""The fine-tuning report: held-out metrics before and after as JSON-safe numbers, and ``report.md``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kidneytumorseg.labels import KITS_REGIONS
from kidneytumorseg_training.validation import ValidationResult, json_number


def summarize_metrics(result: ValidationResult) -> dict[str, Any]:
    """Mean Dice and surface Dice per KiTS region, their means over the regions, and per case."""
    regions = {r.region: {"dice": json_number(r.dice_mean), "surface_dice": json_number(r.surface_dice_mean)}
               for r in result.summary.regions}
    cases = {c.case_id: {"dice": {k: json_number(v) for k, v in c.metrics.dice.items()},
                         "surface_dice": {k: json_number(v) for k, v in c.metrics.surface_dice.items()}}
             for c in result.cases}
    return {"case_ids": sorted(cases), "mean_dice": json_number(result.summary.mean_dice),
            "mean_surface_dice": json_number(result.summary.mean_surface_dice), "regions": regions, "cases": cases}


def format_score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: what was fine-tuned on what, the held-out metrics before and after per KiTS region, and those
    of the check cases when the report has them."""
    before, after = report["before"], report["after"]
    lines = [f"# Fine-tuning {report['parent']} -> {report['model']}", "",
             f"- corrections: `{report['corrections']}`; fine-tuned on {len(report['train_ids'])} case(s): "
             f"{', '.join(report['train_ids'])}",
             f"- held out: {len(report['holdout_ids'])} case(s): {', '.join(report['holdout_ids'])}",
             f"- replayed cases: {len(report['replay_ids'])} from `{report['replay']}`" if report["replay"]
             else "- replayed cases: none",
             f"- skipped corrections: {', '.join(report['skipped']) or 'none'}",
             f"- members fine-tuned: {', '.join(report['members'])}; evaluated as an ensemble: "
             f"{', '.join(report['evaluated_members'])}"
             + (f"; refiners kept as they were (stage 2 of both): {', '.join(report['refiners_kept'])}"
                if report.get("refiners_kept") else ""),
             f"- settings: {json.dumps(report['settings'])}",
             f"- time: {report['seconds']['total']:.0f} s (preprocess {report['seconds']['preprocess']:.0f} s, "
             f"train {report['seconds']['train']:.0f} s, evaluate {report['seconds']['evaluate']:.0f} s)", "",
             "## The held-out corrections", "", *_table(before, after)]
    check = report.get("check")
    if check:
        lines += ["", f"## The check cases (`{check['folder']}`): what the fine-tune costs the earlier cases", "",
                  f"- {len(check['before']['case_ids'])} case(s): {', '.join(check['before']['case_ids'])}; "
                  f"skipped: {', '.join(check['skipped']) or 'none'}",
                  *([f"- also replayed in the fine-tune (their scores flatter the new version): "
                     f"{', '.join(check['replayed'])}"] if check.get("replayed") else []),
                  "", *_table(check["before"], check["after"])]
    return "\n".join(lines) + "\n"


def _table(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    lines = ["| region | Dice before | Dice after | surface Dice before | surface Dice after |",
             "|---|---|---|---|---|"]
    for region in [r.name for r in KITS_REGIONS]:
        b, a = before["regions"][region], after["regions"][region]
        scores = (b["dice"], a["dice"], b["surface_dice"], a["surface_dice"])
        lines.append(f"| {region} | " + " | ".join(format_score(v) for v in scores) + " |")
    lines.append(f"| mean | {format_score(before['mean_dice'])} | {format_score(after['mean_dice'])} | "
                 f"{format_score(before['mean_surface_dice'])} | {format_score(after['mean_surface_dice'])} |")
    return lines
