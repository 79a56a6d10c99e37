"""``kidneytumorseg-train preprocess``: fingerprint a dataset, plan an experiment, preprocess the cases.

The dataset may be in the KiTS23 layout (also the synthetic datasets), nnU-Net's raw layout or a folder of
corrections exported by the Slicer module. The plan (``plans.json``) is written next to the preprocessed
cases; running the command again resumes, redoing only unfinished cases.

Examples::

    kidneytumorseg-train preprocess /data/kits23/dataset -o work/pre --budget gpu-8gb
    kidneytumorseg-train preprocess work/synthetic -o work/pre --spacing 2,2,3 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

LOGGER = logging.getLogger("kidneytumorseg_training")


def _lr_ap_si(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' is not a spacing: give three positive mm values "
                                         f"left-right,anterior-posterior,superior-inferior, e.g. 2,2,3")
    return [values[2], values[1], values[0]]  # the plan's [si, ap, lr]


def patch_size_argument(text: str) -> list[int]:
    """An argparse type: a patch size ``SI,AP,LR`` in voxels."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' is not a patch size: give three positive voxel counts "
                                         f"superior-inferior,anterior-posterior,left-right, e.g. 48,112,112")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("preprocess", help="plan an experiment and preprocess a dataset (resumable)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="KiTS23, nnU-Net raw or corrections folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="preprocessed folder (plans.json inside)")
    parser.add_argument("--budget", choices=["cpu", "gpu-8gb", "gpu-24gb"], default="cpu",
                        help="compute budget the patch size and network are planned for (default cpu)")
    parser.add_argument("--spacing", type=_lr_ap_si, help="target spacing LR,AP,SI in mm (default: planned)")
    parser.add_argument("--patch-size", type=patch_size_argument, help="patch SI,AP,LR in voxels (default: planned)")
    parser.add_argument("--base-features", type=int, help="first-stage features (default: the budget's)")
    parser.add_argument("--block", choices=["plain", "residual", "preact"], default="plain")
    parser.add_argument("--cases", help="comma-separated case ids (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--skip-bad", action="store_true", help="skip unusable cases (named) instead of stopping")
    parser.add_argument("--plan-only", action="store_true", help="write plans.json and stop")
    parser.set_defaults(handler=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    from kidneytumorseg.errors import KidneyTumorSegError
    from kidneytumorseg_training.datasets import check_case, find_training_cases
    from kidneytumorseg_training.planning import (
        PLANS_NAME,
        compute_fingerprint,
        load_plans,
        plan_experiment,
        save_plans,
    )
    from kidneytumorseg_training.preprocessing import preprocess_dataset

    cases = find_training_cases(args.dataset, args.cases.split(",") if args.cases else None)
    LOGGER.info("%d case(s) in %s", len(cases), args.dataset)
    if args.skip_bad and not (args.output / PLANS_NAME).is_file():
        usable = []
        for case in cases:  # the fingerprint reads every case, so drop unusable ones first
            try:
                check_case(case)
                usable.append(case)
            except KidneyTumorSegError as error:
                LOGGER.warning("skipped %s: %s", case.case_id, error)
        cases = usable
    if (args.output / PLANS_NAME).is_file():
        plans = load_plans(args.output)
        LOGGER.info("Using the existing plan %s", args.output / PLANS_NAME)
    else:
        fingerprint = compute_fingerprint(cases, jobs=args.jobs)
        plans = plan_experiment(fingerprint, budget=args.budget, target_spacing=args.spacing,
                                patch_size=args.patch_size, base_features=args.base_features, block=args.block)
        save_plans(plans, args.output)
        LOGGER.info("Planned: spacing %s mm (SI,AP,LR), patch %s, batch %d, normalization %s",
                    plans["target_spacing"], plans["patch_size"], plans["batch_size"],
                    json.dumps(plans["normalization"]))
    if args.plan_only:
        return 0
    report = preprocess_dataset(cases, plans, args.output, jobs=args.jobs,
                                on_error="skip" if args.skip_bad else "raise")
    LOGGER.info("Preprocessed %d, reused %d, skipped %d case(s) into %s", len(report.done), len(report.reused),
                len(report.skipped), args.output)
    for case_id, reason in report.skipped.items():
        LOGGER.warning("skipped %s: %s", case_id, reason)
    return 0
