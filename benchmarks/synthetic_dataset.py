"""Benchmark: build the synthetic dataset from all KiTS23 masks and report the time it takes.

    .venv/bin/python benchmarks/synthetic_dataset.py                       # all 300 masks, 1.5 x 1.5 x 3 mm, 2 jobs
    .venv/bin/python benchmarks/synthetic_dataset.py --limit 10 --jobs 1   # a quick look

Prints a table (cases, workers, wall time, median / max seconds per case, output size, contrast phases).
The destination must not hold finished cases (they would be kept and not timed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections import Counter
from pathlib import Path

from kidneytumorseg_training.synthetic.dataset import RECORD_NAME, build_dataset, is_complete

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "kits23-masks")
    parser.add_argument("--destination", type=Path, default=REPO / "work_data" / "synthetic_1.5x1.5x3")
    parser.add_argument("--spacing", default="1.5,1.5,3")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.source.is_dir():
        raise SystemExit(f"{args.source} not found: this benchmark needs the KiTS23 masks (../shared/data).")
    if args.destination.is_dir() and any(is_complete(p) for p in args.destination.iterdir() if p.is_dir()):
        raise SystemExit(f"{args.destination} already holds finished cases; give an empty --destination.")
    spacing = tuple(float(v) for v in args.spacing.split(","))
    started = time.perf_counter()
    report = build_dataset(args.source, args.destination, spacing=spacing, jobs=args.jobs, limit=args.limit)
    wall = time.perf_counter() - started
    records = [json.loads((args.destination / name / RECORD_NAME).read_text()) for name in report.built]
    seconds = [r["seconds"] for r in records]
    size_mb = sum(f.stat().st_size for f in args.destination.rglob("*") if f.is_file()) / 2**20
    phases = Counter(r["phase"] for r in records)
    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"),
        ("spacing LR,AP,SI (mm)", args.spacing),
        ("cases built / failed", f"{len(report.built)} / {len(report.failed)}"),
        ("worker processes", str(args.jobs)),
        ("wall time", f"{wall / 60:.1f} min"),
        ("per case, median (s)", f"{statistics.median(seconds):.1f}" if seconds else "-"),
        ("per case, max (s)", f"{max(seconds):.1f}" if seconds else "-"),
        ("dataset size", f"{size_mb:.0f} MB"),
        ("phases", ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))),
    ]
    title = "synthetic dataset build"
    width = max([len(k) for k, _ in rows] + [len(title)])
    print(f"{title:<{width}} | value")
    print(f"{'-' * width}-|------")
    for key, value in rows:
        print(f"{key:<{width}} | {value}")
    for name, reason in report.failed.items():
        print(f"failed: {name}: {reason}")


if __name__ == "__main__":
    main()
