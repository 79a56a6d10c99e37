"""The end-of-training report of a run folder: ``report.png`` (curves) and ``report.md`` (numbers).

Reads ``history.json`` (required; one entry per epoch, docs/training-contracts.md), and when present
``config.json`` (run name, parameter count) and ``validation.json`` (the final whole-case validation that
:func:`kidneytumorseg_training.validation.write_validation_report` writes).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kidneytumorseg.atomic import atomic_path, write_text_atomic
from kidneytumorseg.labels import LABEL_COLORS, LABEL_NAMES

logger = logging.getLogger(__name__)

HISTORY_JSON = "history.json"
CONFIG_JSON = "config.json"
VALIDATION_JSON = "validation.json"
REPORT_PNG = "report.png"
REPORT_MD = "report.md"
CLASS_NAMES: tuple[str, ...] = tuple(LABEL_NAMES.values())  # kidney, tumor, cyst
CLASS_COLORS: dict[str, tuple[float, float, float]] = {LABEL_NAMES[k]: c for k, c in LABEL_COLORS.items()}


class ReportError(ValueError):
    """A run folder's files cannot be turned into a report."""


def _number(value: Any) -> float:
    """A float, or NaN for null / missing / non-numeric values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # accepts NaN / Infinity tokens too
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path} could not be read as JSON ({error}); fix or delete the file.") from error


def load_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The run's ``history.json`` entries, sorted by epoch (the last entry wins when an epoch repeats)."""
    path = Path(run_dir) / HISTORY_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. A report needs the history a training run writes; "
                                f"check the run folder, or train at least one epoch first.")
    data = _read_json(path)
    if not isinstance(data, list) or not data:
        raise ReportError(f"{path} must be a non-empty list of per-epoch entries, got "
                          f"{type(data).__name__ if data else 'nothing'}; the run has no finished epoch yet.")
    by_epoch: dict[int, dict[str, Any]] = {}
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("epoch"), int):
            raise ReportError(f"{path}: entry {index} has no whole-number 'epoch'; each entry must be an object "
                              f"like {{'epoch': 0, 'train_loss': ..., ...}}.")
        by_epoch[entry["epoch"]] = entry
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def _optional_json(path: Path) -> dict[str, Any] | None:
    """An optional JSON object file: None when absent, or (with a warning) when unreadable or not an object."""
    if not path.is_file():
        return None
    try:
        data = _read_json(path)
    except ReportError as error:
        logger.warning("Leaving %s out of the report: %s", path.name, error)
        return None
    if not isinstance(data, dict):
        logger.warning("Leaving %s out of the report: expected a JSON object, got %s.", path.name,
                       type(data).__name__)
        return None
    return data


def _series(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [_number(entry.get(key)) for entry in history]


def _dice(entry: Mapping[str, Any], name: str) -> float:
    """An epoch's validation Dice of one class; NaN when absent or null (class not in the patches)."""
    dice = entry.get("val_dice")
    return _number(dice.get(name)) if isinstance(dice, dict) else float("nan")


def _mean_dice(entry: Mapping[str, Any]) -> float:
    return _mean([_dice(entry, name) for name in CLASS_NAMES])


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _mean(values: Sequence[float]) -> float:
    finite = _finite(values)
    return math.fsum(finite) / len(finite) if finite else float("nan")


def _fmt(value: Any, digits: int = 4) -> str:
    number = _number(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "–"


def _fmt_lr(value: Any) -> str:
    number = _number(value)
    return f"{number:.3g}" if math.isfinite(number) else "–"


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1 h 02 min``, ``65`` -> ``1 min 05 s``, ``12.3`` -> ``12.3 s``."""
    if not math.isfinite(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _plot(history: Sequence[Mapping[str, Any]], title: str, path: Path) -> Path:
    """Loss, validation Dice per class and learning rate against the epoch, in three panels."""
    epochs = [entry["epoch"] for entry in history]
    style = {"marker": "o", "markersize": 3 if len(epochs) > 30 else 5, "linewidth": 1.5}
    figure = Figure(figsize=(15, 4.2), dpi=100, layout="constrained")
    loss_axes, dice_axes, lr_axes = figure.subplots(1, 3)

    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = _series(history, key)
        if _finite(values):
            loss_axes.plot(epochs, values, label=label, **style)
    loss_axes.set(title="Loss", xlabel="epoch", ylabel="loss")

    for name in CLASS_NAMES:
        values = [_dice(entry, name) for entry in history]
        if _finite(values):
            dice_axes.plot(epochs, values, label=name, color=CLASS_COLORS.get(name), **style)
    mean_dice = [_mean_dice(entry) for entry in history]
    if _finite(mean_dice):
        dice_axes.plot(epochs, mean_dice, label="mean", color="black", linestyle="--", **style)
    dice_axes.set(title="Validation Dice per class", xlabel="epoch", ylabel="Dice", ylim=(-0.02, 1.02))

    learning_rates = _series(history, "lr")
    if _finite(learning_rates):
        lr_axes.plot(epochs, learning_rates, color="tab:purple", **style)
        if all(v > 0 for v in _finite(learning_rates)):
            lr_axes.set_yscale("log")
    lr_axes.set(title="Learning rate", xlabel="epoch", ylabel="lr")

    for axes in (loss_axes, dice_axes, lr_axes):
        axes.grid(True, alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(epochs) == 1:
            axes.set_xlim(epochs[0] - 1, epochs[0] + 1)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    figure.suptitle(title)
    with atomic_path(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png")
    return path


def _validation_lines(validation: Mapping[str, Any]) -> list[str]:
    """The final whole-case validation as a markdown table (one row per KiTS region)."""
    regions = validation.get("regions")
    if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
        logger.warning("Leaving the final metrics out of the report: validation.json has no 'regions' list.")
        return []
    lines = [
        "## Final validation (whole cases, KiTS regions)",
        "",
        "| region | Dice mean | Dice median | surface Dice mean | surface Dice median | HD95 mean (mm) |",
        "|---|---|---|---|---|---|",
    ]
    for region in regions:
        lines.append(
            f"| {region.get('region', '?')} | {_fmt(region.get('dice_mean'))} | {_fmt(region.get('dice_median'))} "
            f"| {_fmt(region.get('surface_dice_mean'))} | {_fmt(region.get('surface_dice_median'))} "
            f"| {_fmt(region.get('hd95_mean'), 2)} |"
        )
    lines += [
        "",
        f"KiTS ranking: mean Dice {_fmt(validation.get('mean_dice'))}, mean surface Dice "
        f"{_fmt(validation.get('mean_surface_dice'))} over {validation.get('case_count', '?')} case(s). "
        f"HD95 '–' where a region was missed or predicted in a case without it.",
        "",
    ]
    return lines


def _markdown(history: Sequence[Mapping[str, Any]], config: Mapping[str, Any] | None,
              validation: Mapping[str, Any] | None, name: str) -> str:
    last = history[-1]
    total_seconds = math.fsum(_finite(_series(history, "seconds")))
    wait = _mean(_series(history, "data_wait_fraction"))
    parameters = (config or {}).get("parameters")
    lines = [f"# Training report: {name}", ""]
    lines.append(f"- Epochs: {len(history)} (epochs {history[0]['epoch']}–{last['epoch']})")
    lines.append(f"- Training time: {format_duration(total_seconds)} ({total_seconds:.0f} s, sum of epochs)")
    if isinstance(parameters, int) and not isinstance(parameters, bool):
        lines.append(f"- Parameters: {parameters:,}")
    lines.append(f"- Mean data-wait share: {wait:.1%}" if math.isfinite(wait) else "- Mean data-wait share: –")
    mean_dice = [_mean_dice(entry) for entry in history]
    if _finite(mean_dice):
        best = max(range(len(history)), key=lambda i: mean_dice[i] if math.isfinite(mean_dice[i]) else -1.0)
        lines.append(f"- Best mean validation Dice (classes present): {_fmt(mean_dice[best])} at epoch "
                     f"{history[best]['epoch']}")
    lines += ["", "## Last epoch", "",
              "| epoch | train loss | val loss | " + " | ".join(f"Dice {c}" for c in CLASS_NAMES) + " | lr |",
              "|---" * (4 + len(CLASS_NAMES)) + "|"]
    dice = [_fmt(_dice(last, c)) for c in CLASS_NAMES]
    lines.append(f"| {last['epoch']} | {_fmt(last.get('train_loss'))} | {_fmt(last.get('val_loss'))} | "
                 + " | ".join(dice) + f" | {_fmt_lr(last.get('lr'))} |")
    lines += ["", "Dice '–': the class was absent from the validation patches of that epoch.", ""]
    if validation is not None:
        lines += _validation_lines(validation)
    lines += [f"![training curves]({REPORT_PNG})", ""]
    return "\n".join(lines)


def write_training_report(run_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``report.png`` and ``report.md`` into ``run_dir`` (atomically) and return their paths.

    Needs ``history.json``; ``config.json`` and ``validation.json`` are used when present.
    """
    run_dir = Path(run_dir)
    history = load_history(run_dir)
    config = _optional_json(run_dir / CONFIG_JSON)
    validation = _optional_json(run_dir / VALIDATION_JSON)
    name = str((config or {}).get("name") or (config or {}).get("run_name") or run_dir.resolve().name)
    png = _plot(history, f"{name}: {len(history)} epoch(s)", run_dir / REPORT_PNG)
    markdown = write_text_atomic(run_dir / REPORT_MD, _markdown(history, config, validation, name))
    logger.info("Training report written to %s and %s", png, markdown)
    return png, markdown
