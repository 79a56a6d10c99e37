"""Result files of the equal-budget comparison and the markdown table made from them.

One JSON file per method (a recipe or the nnU-Net peer), all with the same keys:
``name``, ``kind`` ("recipe" or "peer"), ``schedule`` ({"epochs", "iterations_per_epoch"}, or null when unknown),
``train_seconds`` (the sum of the trainer's epoch times, equal_budget.epoch_time; the wall time of the training
command only where no epoch times are found), ``inference_seconds``
({case: seconds}), ``parameters``, ``device``, ``metrics`` (equal_budget.scoring.score_predictions) and
``details`` (free-form, per method).
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REGIONS = ("kidney_and_mass", "mass", "tumor")
REGION_TITLES = {"kidney_and_mass": "kidney+mass", "mass": "mass", "tumor": "tumor"}
SECTION_HEADING = "## Results at equal budget"
# Below this mean Dice (over kidney+mass, mass, tumor) a method has not learned to segment: a network that marks
# the kidneys alone (kidney+mass Dice 0.9, masses missed) already scores 0.3.
LEARNED_MEAN_DICE = 0.1
REQUIRED_KEYS = ("name", "kind", "schedule", "train_seconds", "inference_seconds", "parameters", "device", "metrics")


def write_result(result: dict[str, Any], path: Path) -> Path:
    """Write ``result`` as JSON (through a temporary file, so a half-written file never counts as done)."""
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"result of {result.get('name', '?')} lacks {missing}; it cannot go into the table.")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    temporary.replace(path)
    return path


def read_result(path: Path) -> dict[str, Any]:
    result = json.loads(path.read_text())
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise ValueError(f"{path} lacks {missing}; delete it (or rerun with --force) to measure that method again.")
    return result


def refresh_training_seconds(result: dict[str, Any], seconds: float | None, path: Path) -> dict[str, Any]:
    """``result`` with ``train_seconds`` set to ``seconds`` (the epochs' times found now), written back to
    ``path`` when that changes it; unchanged when ``seconds`` is None."""
    if seconds is None or result.get("train_seconds") == seconds:
        return result
    return read_result(write_result({**result, "train_seconds": seconds}, path))


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``<model name> (<N> logical CPUs)`` from /proc/cpuinfo, falling back to the platform's processor name."""
    model, count = "", 0
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if key == "processor":
                count += 1
            elif key == "model name" and not model:
                model = line.split(":", 1)[1].strip()
    model = model or platform.processor() or platform.machine()
    return f"{model} ({count} logical CPUs)" if count else model


def gpu_description() -> str | None:
    """The CUDA device's name when torch sees one, else None."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def median_inference_seconds(result: dict[str, Any]) -> float:
    values = list(result["inference_seconds"].values())
    return statistics.median(values) if values else float("nan")


def _schedule(result: dict[str, Any]) -> str:
    """``epochs x iterations``; a cascade lists each network's, e.g. ``22 x 4 + 22 x 11``, so the table shows that
    its networks take fewer steps each than a single network at the same budget."""
    schedule = result.get("schedule")
    if not schedule:
        return "?"
    stages = schedule.get("stages") or [schedule]
    return " + ".join(f"{stage['epochs']} x {stage['iterations_per_epoch']}" for stage in stages)


def _parameters(count: int | None) -> str:
    if count is None:
        return "?"
    return f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count:,}"


def format_table(results: Sequence[dict[str, Any]], gpu_column: bool = False) -> str:
    """One markdown table row per method: Dice and surface Dice per region and mean, times, parameters."""
    header = (["method", "epochs x iterations (per network)"] + [f"Dice {REGION_TITLES[r]}" for r in REGIONS]
              + ["mean Dice"]
              + [f"SD {REGION_TITLES[r]}" for r in REGIONS]
              + ["mean SD", "training (min)", "inference (s/case, median)", "parameters"])
    if gpu_column:
        header.append("device")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        metrics = result["metrics"]
        cells = [result["name"], _schedule(result)]
        cells += [f"{metrics['dice'][r]:.3f}" for r in REGIONS] + [f"**{metrics['mean_dice']:.3f}**"]
        cells += [f"{metrics['surface_dice'][r]:.3f}" for r in REGIONS] + [f"{metrics['mean_surface_dice']:.3f}"]
        cells += [f"{result['train_seconds'] / 60:.1f}", f"{median_inference_seconds(result):.1f}",
                  _parameters(result["parameters"])]
        if gpu_column:
            cells.append(result["device"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(results: Sequence[dict[str, Any]]) -> str:
    """Whether the best recipe matches or beats the peer on mean Dice (the issue's bar), in one sentence."""
    recipes = [r for r in results if r["kind"] == "recipe"]
    peers = [r for r in results if r["kind"] == "peer"]
    if not recipes or not peers:
        return ""
    best = max(recipes, key=lambda r: r["metrics"]["mean_dice"])
    peer = peers[0]
    ours, theirs = best["metrics"]["mean_dice"], peer["metrics"]["mean_dice"]
    relation = "beats" if ours > theirs else ("matches" if ours == theirs else "falls short of")
    sentence = (f"Best recipe at this budget: `{best['name']}`, mean Dice {ours:.3f}; it {relation} {peer['name']} "
                f"({theirs:.3f}).")
    if max(ours, theirs) < LEARNED_MEAN_DICE:
        sentence += (f" **No method learned to segment at this budget** (every mean Dice is below "
                     f"{LEARNED_MEAN_DICE:.2f}): the order is noise, and this table compares the methods' costs "
                     f"(time, parameters), not their accuracy. Ranking accuracy needs a larger budget.")
    return sentence


def replace_section(document: str, heading: str, body: str) -> str:
    """``document`` with the section under ``heading`` (up to the next heading of the same or a higher level)
    replaced by ``body``; the section is appended when the document has none."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = document.splitlines()
    section = [heading, "", *body.strip("\n").splitlines(), ""]
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == heading)
    except StopIteration:
        kept = lines + ([""] if lines and lines[-1].strip() else [])
        return "\n".join(kept + section).rstrip("\n") + "\n"
    end, in_fence = start + 1, False
    while end < len(lines):
        stripped = lines[end].lstrip()
        in_fence = in_fence != stripped.startswith("```")  # a '# comment' in a code block is no heading
        hashes = len(stripped) - len(stripped.lstrip("#"))
        if not in_fence and 0 < hashes <= level and stripped[hashes:hashes + 1] == " ":
            break
        end += 1
    return "\n".join(lines[:start] + section + lines[end:]).rstrip("\n") + "\n"
