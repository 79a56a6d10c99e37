"""Two packages' evaluations of the same cases, compared case by case.

    .venv/bin/python benchmarks/evaluate_model.py DATA --cases-file ids.txt --model kits-demo@1.4.0 --cascade \\
        --csv old.csv
    .venv/bin/python benchmarks/evaluate_model.py DATA --cases-file ids.txt --model kits-demo@1.5.0 --cascade \\
        --csv new.csv
    .venv/bin/python benchmarks/paired_evaluations.py old.csv new.csv

A difference of means hides how it is made: one case rescued from Dice 0 and many slightly worse look the same
as a small gain everywhere. For each KiTS region this prints both means, the mean and median of the per-case
differences (new - old), how many cases got better or worse by more than ``--margin``, and a 95 % interval of
the mean difference from a paired bootstrap over cases (seeded, so a rerun prints the same numbers).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np

REGIONS = ("kidney_and_mass", "mass", "tumor")


def read_dice(evaluation_csv: Path) -> dict[str, dict[str, float]]:
    """``{case: {region: Dice}}`` from the ``--csv`` file of evaluate_model.py."""
    try:
        with evaluation_csv.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise SystemExit(f"Cannot read {evaluation_csv}: {error}. "
                         "Give the --csv file evaluate_model.py wrote.") from None
    columns = [f"dice_{region}" for region in REGIONS]
    if not rows or any(column not in rows[0] for column in ("case", *columns)):
        raise SystemExit(f"{evaluation_csv} has no case and {', '.join(columns)} columns; give the --csv file "
                         "evaluate_model.py wrote.")
    return {row["case"]: {region: float(row[f"dice_{region}"]) for region in REGIONS} for row in rows}


def paired_rows(old: dict[str, dict[str, float]], new: dict[str, dict[str, float]], margin: float = 0.01,
                resamples: int = 10000, seed: int = 0) -> list[dict[str, float | int | str]]:
    """One row per region over the cases both evaluations scored; refuses sets that differ."""
    if set(old) != set(new):
        missing = sorted(set(old) ^ set(new))
        raise SystemExit(f"The two evaluations scored different cases ({', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}); evaluate both on the same --cases-file.")
    cases = sorted(old)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(cases), size=(resamples, len(cases)))
    rows = []
    for region in REGIONS:
        before = np.array([old[case][region] for case in cases])
        after = np.array([new[case][region] for case in cases])
        differences = after - before
        means = differences[picks].mean(axis=1)
        low, high = np.percentile(means, [2.5, 97.5])
        rows.append({"region": region, "cases": len(cases), "old": float(before.mean()), "new": float(after.mean()),
                     "mean_difference": float(differences.mean()),
                     "median_difference": float(statistics.median(differences.tolist())),
                     "better": int((differences > margin).sum()), "worse": int((differences < -margin).sum()),
                     "low": float(low), "high": float(high)})
    return rows


def format_table(rows: list[dict[str, float | int | str]], margin: float) -> str:
    """A markdown table of :func:`paired_rows`."""
    lines = [f"| region | cases | old | new | mean diff | median diff | better (> {margin}) | worse (< -{margin}) "
             "| 95 % interval of the mean diff (paired bootstrap) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['region']} | {row['cases']} | {row['old']:.4f} | {row['new']:.4f} | "
                     f"{row['mean_difference']:+.4f} | {row['median_difference']:+.4f} | {row['better']} | "
                     f"{row['worse']} | {row['low']:+.4f} .. {row['high']:+.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="evaluate_model.py --csv of the reference package")
    parser.add_argument("new", type=Path, help="evaluate_model.py --csv of the package compared with it")
    parser.add_argument("--margin", type=float, default=0.01, help="Dice change counted as better or worse")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    rows = paired_rows(read_dice(args.old), read_dice(args.new), args.margin, seed=args.seed)
    print(f"# {args.new} against {args.old}: per-case Dice differences (new - old)")
    print(format_table(rows, args.margin))


if __name__ == "__main__":
    main()
