"""What the recipe commands leave behind, read back: the recipe list, each run's schedule, the package's
parameter count and the per-case times of `kidneytumorseg predict --progress json`."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kidneytumorseg.model_package import MANIFEST_NAME, ModelPackage

RECIPE_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*$")
CONFIG_NAME = "config.json"  # kidneytumorseg_training.training_config.CONFIG_NAME
HEADER_WORDS = {"name", "recipe", "recipes"}


def parse_recipe_list(text: str) -> list[str]:
    """Recipe names from `kidneytumorseg-train recipe list`: the first word of each line (a markdown table's
    first cell too), skipping indented continuation lines (the paper), headers, rules, comments and anything
    that is not a recipe-like name."""
    names: list[str] = []
    for line in text.splitlines():
        if line[:1].isspace():
            continue
        words = line.strip().strip("|").replace("|", " ").split()
        if not words or words[0].startswith("#"):
            continue
        word = words[0].rstrip(":")
        if word.lower() in HEADER_WORDS or not RECIPE_NAME.match(word) or word in names:
            continue
        names.append(word)
    return names


def run_schedules(run_folder: Path) -> list[dict[str, int]]:
    """``{"epochs", "iterations_per_epoch"}`` of every training run (config.json) under ``run_folder``."""
    schedules = []
    for path in sorted(run_folder.rglob(CONFIG_NAME)) if run_folder.is_dir() else []:
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(config, dict) and {"epochs", "iterations_per_epoch", "train_ids"} <= config.keys():
            schedules.append({"epochs": int(config["epochs"]),
                              "iterations_per_epoch": int(config["iterations_per_epoch"])})
    return schedules


def recipe_schedule(run_folder: Path) -> dict[str, Any] | None:
    """The recipe's schedule: its longest network's epochs x iterations, and every stage when there are several
    (a cascade trains one network per stage); None when no run config is found."""
    stages = run_schedules(run_folder)
    if not stages:
        return None
    longest = max(stages, key=lambda s: s["epochs"] * s["iterations_per_epoch"])
    schedule: dict[str, Any] = dict(longest)
    if len(stages) > 1:
        schedule["stages"] = stages
    return schedule


def common_schedule(schedules: Sequence[dict[str, Any] | None]) -> tuple[int, int] | None:
    """The (epochs, iterations) most recipes trained with (the first one seen on a tie); None if none is known."""
    pairs = [(s["epochs"], s["iterations_per_epoch"]) for s in schedules if s]
    if not pairs:
        return None
    counts = Counter(pairs)
    return max(pairs, key=lambda pair: counts[pair])  # max keeps the first of equal counts


def find_package(models: Path, name: str, version: str) -> tuple[Path, bool]:
    """The exported package folder and whether it lies in store layout (``models/name/version``).

    Looks at ``models/name/version``, ``models/name`` and ``models`` itself, in that order."""
    for folder, in_store in ((models / name / version, True), (models / name, False), (models, False)):
        if (folder / MANIFEST_NAME).is_file():
            return folder, in_store
    raise FileNotFoundError(f"No exported package {name}@{version} under {models} (looked for {MANIFEST_NAME} in "
                            f"{models / name / version}, {models / name} and {models}); did the recipe's --export "
                            f"step run? See its log.")


def count_parameters(package_folder: Path) -> int:
    """Parameters of every member of the package (all folds and any localizer), from the safetensors headers."""
    from safetensors import safe_open

    package = ModelPackage.load(package_folder)
    total = 0
    for member in package.members:
        with safe_open(str(package.member_path(member)), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 - safe_open has keys(), no __iter__
                count = 1
                for size in weights.get_slice(key).get_shape():
                    count *= size
                total += count
    return total


def predict_seconds(output: str) -> dict[str, float]:
    """{case: seconds} from the ``result`` lines of `kidneytumorseg predict --progress json` (other lines skipped)."""
    seconds = {}
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(message, dict) and message.get("type") == "result":
            case = Path(str(message["case"])).name
            seconds[case.removesuffix(".nii.gz")] = float(message["seconds"])
    return seconds
