"""Training throughput: patches per second and the share of time the training loop waits for data.

    .venv/bin/python benchmarks/training_throughput.py work_data/pre_3x2x2 [--steps 20] [--workers 0 1 2] \
        [--precision fp32 bf16]

Runs the trainer on a preprocessed folder (``kidneytumorseg-train preprocess``) with its plan (network,
patch, batch), default augmentation, and each data-loader worker count given, for ``--steps`` steps after
one warm-up epoch, and prints one row per setting (precision x workers), with each precision's speed as a
ratio to the first one's at the same worker count. "Data wait" is the time the loop spends in ``next(batch)``
divided by the training time; with worker processes it shows whether loading and augmentation keep up.
For a quick look without the full dataset, preprocess the committed fixtures:
    .venv/bin/kidneytumorseg-train preprocess Testing/fixtures/synthetic -o /tmp/pre --spacing 2,2,3
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import torch

from kidneytumorseg_training.sampling import complete_case_ids
from kidneytumorseg_training.trainer import train
from kidneytumorseg_training.training_config import TrainingConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("preprocessed", type=Path)
    parser.add_argument("--steps", type=int, default=20, help="measured steps per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", nargs="+", default=["bf16"], choices=["fp32", "bf16", "fp16", "auto"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cases = complete_case_ids(args.preprocessed)
    rows = []
    for precision in args.precision:
        for workers in args.workers:
            with tempfile.TemporaryDirectory() as work:
                config = TrainingConfig(preprocessed=str(args.preprocessed), train_ids=cases, epochs=2,
                                        iterations_per_epoch=args.steps, val_iterations=0, num_workers=workers,
                                        threads=args.threads, device="cpu", precision=precision, progress=False)
                result = train(config, Path(work) / "run")
                measured = result.history[-1]  # epoch 1 is the warm-up (worker start, first reads)
                rows.append((precision, workers, measured["patches_per_second"], measured["data_wait_fraction"],
                             measured["seconds"]))
    first = {workers: speed for precision, workers, speed, _, _ in rows if precision == args.precision[0]}
    print(f"# training throughput, {os.cpu_count()} CPU cores, torch {torch.__version__}, {args.threads} threads, "
          f"{len(cases)} cases in {args.preprocessed}")
    print(f"| precision | data workers | patches/s | vs {args.precision[0]} | data wait | seconds for the epoch |")
    print("|---|---|---|---|---|---|")
    for precision, workers, speed, wait, seconds in rows:
        print(f"| {precision} | {workers} | {speed:.2f} | {speed / first[workers]:.2f}x | {100 * wait:.1f}% "
              f"| {seconds:.1f} |")


if __name__ == "__main__":
    main()
