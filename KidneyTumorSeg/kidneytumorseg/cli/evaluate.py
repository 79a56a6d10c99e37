"""``kidneytumorseg evaluate PRED_DIR REF_DIR``: KiTS metrics of a folder of predictions, CSV and summary."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from kidneytumorseg.errors import InputImageError

NAME = "evaluate"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    parser = subparsers.add_parser(
        NAME,
        help="score predictions against KiTS reference segmentations",
        description=(
            "Compute the KiTS23 metrics (Dice, surface Dice, HD95 per region; volumes per label) of every "
            "prediction in PRED_DIR against its reference in REF_DIR, write them per case to a CSV and print "
            "a summary. Predictions: case_XXXXX.nii.gz, case_XXXXX/segmentation.nii.gz or "
            "case_XXXXX/prediction.nii.gz (.nrrd/.mha too). References: case_XXXXX/segmentation.nii.gz."
        ),
    )
    parser.add_argument("prediction_dir", metavar="PRED_DIR", type=Path, help="folder of predicted label maps")
    parser.add_argument("reference_dir", metavar="REF_DIR", type=Path, help="folder of reference label maps")
    parser.add_argument(
        "--csv", type=Path, default=None, help="per-case CSV to write (default: PRED_DIR/evaluation.csv)"
    )
    parser.add_argument("--jobs", "-j", type=int, default=1, help="cases evaluated in parallel (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    parser.set_defaults(handler=run)
    return parser


def _number(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else "nan" if math.isnan(value) else f"{value:.{digits}f}"


def format_summary(summary: Any) -> str:
    """The summary as a fixed-width table: one row per region, then the KiTS ranking averages."""
    header = ("region", "Dice mean", "Dice median", "SD mean", "SD median", "HD95 mean", "HD95 median")
    rows = [header]
    for region in summary.regions:
        rows.append(
            (
                region.region,
                _number(region.dice_mean, 4),
                _number(region.dice_median, 4),
                _number(region.surface_dice_mean, 4),
                _number(region.surface_dice_median, 4),
                _number(region.hd95_mean, 2),
                _number(region.hd95_median, 2),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append(
        f"KiTS ranking: mean Dice {_number(summary.mean_dice, 4)}, "
        f"mean surface Dice {_number(summary.mean_surface_dice, 4)} (averages over the 3 regions)"
    )
    lines.append("SD = surface Dice at the KiTS tolerances; HD95 in mm (inf where one of the masks is empty)")
    lines.append(f"cases evaluated: {summary.case_count}")
    if summary.missing_cases:
        lines.append(
            f"reference cases without a prediction (not in the averages): {len(summary.missing_cases)}: "
            + ", ".join(summary.missing_cases)
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the CSV, print the summary table to stdout; return the exit status."""
    from kidneytumorseg.evaluation import DEFAULT_CSV_NAME, evaluate_folder

    if args.jobs < 1:
        raise InputImageError(f"--jobs must be at least 1, got {args.jobs}.")
    csv_path = args.csv if args.csv is not None else args.prediction_dir / DEFAULT_CSV_NAME
    result = evaluate_folder(
        args.prediction_dir,
        args.reference_dir,
        csv_path=csv_path,
        jobs=args.jobs,
        show_progress_bar=not args.no_progress,
    )
    sys.stdout.write(format_summary(result.summary))
    return 0
