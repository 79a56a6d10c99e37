"""``kidneytumorseg-train finetune``: fine-tune a model package on exported corrections -> a new package version.

The corrected cases are split into fine-tune and held-out cases; every segmenter member is trained further
from its packaged weights, old and new members are scored on the held-out cases, and the new version (by
default the next patch version) is imported into your model store beside the old one, with a report
(report.json, report.md) in the work folder and in the package.

Examples::

    kidneytumorseg-train finetune --model kits-demo@1.0.0 --corrections ~/KidneyTumorSeg/corrections
    kidneytumorseg-train finetune --model kits-demo --corrections exports --replay work/pre --epochs 10
    kidneytumorseg predict --model kits-demo@1.0.1 -i ct.nii.gz -o labels.nii.gz
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOGGER = logging.getLogger("kidneytumorseg_training")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``finetune`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser("finetune", help="fine-tune a model package on corrections (new version)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="NAME[@VERSION]",
                        help="package in the model store (default version: the newest)")
    parser.add_argument("--corrections", type=Path, required=True, metavar="DIR",
                        help="corrections exported by the Slicer module (case_<id>/ with correction.json)")
    parser.add_argument("--replay", type=Path, metavar="DIR",
                        help="original training data to mix in: a preprocessed folder (plans.json) made with the "
                             "package's spacing and normalisation, or a dataset folder")
    parser.add_argument("--holdout", type=float, default=0.3,
                        help="fraction of the corrections held out to compare old and new (default 0.3)")
    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    schedule.add_argument("--iterations", type=int, default=20, help="training steps per epoch (default 20)")
    schedule.add_argument("--lr", type=float, default=1e-3, help="initial learning rate (default 1e-3)")
    schedule.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                          help="sgd: Nesterov + poly decay (default); adam")
    schedule.add_argument("--no-augmentation", action="store_true", help="train without data augmentation")
    output = parser.add_argument_group("output")
    output.add_argument("--version", help="version of the new package (default: the next patch version)")
    output.add_argument("--store-dir", type=Path,
                        help="user model folder (default: $KIDNEYTUMORSEG_MODELS_DIR or the per-user data folder)")
    output.add_argument("--work-dir", type=Path,
                        help="preprocessed data, runs and report (default ./finetune_<name>_<version>)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    run.add_argument("--workers", type=int, default=1, help="data-loading worker processes (default 1)")
    parser.set_defaults(handler=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run the fine-tuning; log the held-out Dice before and after and where the new version is."""
    from kidneytumorseg.model_store import ModelStore, default_bundled_dir
    from kidneytumorseg_training.finetune import finetune

    store = ModelStore(default_bundled_dir(), args.store_dir) if args.store_dir else None
    result = finetune(
        args.model, args.corrections, replay=args.replay, holdout=args.holdout, epochs=args.epochs,
        iterations=args.iterations, learning_rate=args.lr, optimizer=args.optimizer,
        augmentation=not args.no_augmentation, version=args.version, store=store, work_dir=args.work_dir,
        seed=args.seed, device=args.device, threads=args.threads, workers=args.workers)
    for region in ("kidney_and_mass", "mass", "tumor"):
        before, after = result.before["regions"][region]["dice"], result.after["regions"][region]["dice"]
        LOGGER.info("held-out Dice %-15s before %s  after %s", region, _number(before), _number(after))
    name = result.package_path.parent.name
    LOGGER.info("New version %s@%s in %s (report: %s). Run it with `kidneytumorseg predict --model %s@%s`.",
                name, result.version, result.package_path, result.report_path, name, result.version)
    return 0


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
