"""``kidneytumorseg-train train``: train one network on a preprocessed dataset, or resume a run.

Examples::

    kidneytumorseg-train train work/pre -o runs/fold0 --fold 0 --epochs 100
    kidneytumorseg-train train --resume runs/fold0            # after a kill: loses at most one epoch
    torchrun --nproc_per_node 2 -m kidneytumorseg_training.cli.main train work/pre -o runs/ddp --fold 0
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

LOGGER = logging.getLogger("kidneytumorseg_training")


def _ids(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="train a network on a preprocessed dataset (or --resume a run)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preprocessed", type=Path, nargs="?", help="folder made by `preprocess` (has plans.json)")
    parser.add_argument("-o", "--output", type=Path, help="run folder (checkpoints, history, report)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    split = parser.add_argument_group("cases")
    split.add_argument("--fold", type=int, help="cross-validation fold (uses --splits, made if missing)")
    split.add_argument("--splits", type=Path, help="split file (default: <preprocessed>/splits.json, 5 folds)")
    split.add_argument("--train-cases", help="comma-separated training case ids (instead of --fold)")
    split.add_argument("--val-cases", help="comma-separated validation case ids")
    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=int, help="epochs in all (default 100); with --resume, extends the run")
    schedule.add_argument("--iterations", type=int, default=250, help="training steps per epoch (default 250)")
    schedule.add_argument("--val-iterations", type=int, default=25, help="validation batches per epoch")
    schedule.add_argument("--batch-size", type=int, help="patches per step (default: the plan's)")
    schedule.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                          help="sgd: Nesterov + poly decay (nnU-Net); adam: reduce-on-plateau")
    schedule.add_argument("--lr", type=float, help="initial learning rate (default 0.01 SGD, 3e-4 Adam)")
    model = parser.add_argument_group("model")
    model.add_argument("--loss", default="dice_ce", choices=["dice_ce", "exp_log", "focal_dice"])
    model.add_argument("--batch-dice", action="store_true",
                       help="dice_ce: one Dice over the whole batch (nnU-Net's 3d_fullres) instead of one per patch")
    model.add_argument("--block", choices=["plain", "residual", "preact"], help="re-plan the network with this block")
    model.add_argument("--base-features", type=int, help="re-plan the network with this many first-stage features")
    model.add_argument("--no-deep-supervision", action="store_true")
    model.add_argument("--no-augmentation", action="store_true")
    model.add_argument("--initial-weights", type=Path, help=".safetensors or checkpoint folder to start from")
    model.add_argument("--anchor-strength", type=float, default=0.0, metavar="S",
                       help="L2-SP: pull the weights toward --initial-weights by S x (w - w_initial) each step "
                            "(fine-tuning; default 0 = off)")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--hard-case-class", type=int, choices=[1, 2, 3],
                          help="oversample patches centred on this label (3: cyst, small and rare in KiTS)")
    sampling.add_argument("--hard-case-fraction", type=float, default=0.0,
                          help="share of all patches centred on --hard-case-class (e.g. 0.25)")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--workers", type=int, default=1, help="data-loading worker processes (default 1)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    run.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                     help="auto: fp16 mixed precision on CUDA, bf16 on a CPU with native bfloat16 "
                          "(avx512_bf16 / amx_bf16), fp32 on other devices")
    run.add_argument("--threads", type=int, help="torch threads per process (default: cores / processes)")
    run.add_argument("--stop-after", type=int, help="train only this many more epochs now (resume later)")
    parser.set_defaults(handler=run_command)
    return parser


def _network_override(args: argparse.Namespace, plans: dict) -> dict | None:
    if not (args.block or args.base_features):
        return None
    from kidneytumorseg.networks import plan_network

    base = args.base_features or plans["network"]["features_per_stage"][0]
    return plan_network(plans["patch_size"], plans["target_spacing"], base_features=base,
                        max_features=max(plans["network"]["features_per_stage"]), block=args.block or "plain",
                        num_classes=plans["network"]["num_classes"], deep_supervision=True).to_dict()


def _split(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from kidneytumorseg.errors import KidneyTumorSegError
    from kidneytumorseg_training.sampling import complete_case_ids

    available = complete_case_ids(args.preprocessed)
    if not available:
        raise KidneyTumorSegError(f"{args.preprocessed} holds no preprocessed cases; run `preprocess` first.")
    if args.train_cases:
        train_ids, val_ids = _ids(args.train_cases) or [], _ids(args.val_cases) or []
        unknown = sorted(set(train_ids + val_ids) - set(available))
        if unknown:
            raise KidneyTumorSegError(f"Cases {unknown[:5]} are not preprocessed in {args.preprocessed}.")
        return train_ids, val_ids
    if args.fold is None:
        LOGGER.warning("No --fold or --train-cases: training on all %d cases without validation.", len(available))
        return available, []
    from kidneytumorseg_training.splits import fold_split, load_splits, make_folds, save_splits

    splits_path = args.splits or args.preprocessed / "splits.json"
    if not splits_path.is_file():
        save_splits(make_folds(available, num_folds=5, seed=0), splits_path)
        LOGGER.info("Wrote a 5-fold split of %d cases to %s", len(available), splits_path)
    train_ids, val_ids = fold_split(load_splits(splits_path), args.fold)
    return list(train_ids), list(val_ids)


def run_command(args: argparse.Namespace) -> int:
    from kidneytumorseg.errors import KidneyTumorSegError
    from kidneytumorseg_training.planning import load_plans
    from kidneytumorseg_training.report import write_training_report
    from kidneytumorseg_training.trainer import train
    from kidneytumorseg_training.training_config import TrainingConfig

    if args.resume:
        config = TrainingConfig.load(args.resume)
        explicit = {k: v for k, v in (("num_workers", args.workers), ("device", args.device),
                                      ("threads", args.threads)) if v is not None}
        for key, value in explicit.items():
            setattr(config, key, value)
        if args.epochs is not None:
            config.epochs = args.epochs
        run_dir = args.resume
    else:
        if args.preprocessed is None or args.output is None:
            raise KidneyTumorSegError("Give the preprocessed folder and -o RUN_DIR, or --resume RUN_DIR.")
        if args.batch_dice and args.loss != "dice_ce":
            raise KidneyTumorSegError(f"--batch-dice applies to --loss dice_ce only, not {args.loss}; drop one.")
        if args.hard_case_fraction and args.hard_case_class is None:
            raise KidneyTumorSegError("--hard-case-fraction needs --hard-case-class (the label, 3: cyst).")
        if args.anchor_strength and args.initial_weights is None:
            raise KidneyTumorSegError("--anchor-strength pulls the weights toward --initial-weights; give those too.")
        plans = load_plans(args.preprocessed)
        train_ids, val_ids = _split(args)
        config = TrainingConfig(
            preprocessed=str(args.preprocessed.resolve()), train_ids=train_ids, val_ids=val_ids,
            epochs=args.epochs or 100, iterations_per_epoch=args.iterations, val_iterations=args.val_iterations,
            batch_size=args.batch_size, network=_network_override(args, plans), optimizer=args.optimizer,
            learning_rate=args.lr, loss=args.loss, loss_options={"batch_dice": True} if args.batch_dice else {},
            hard_case_class=args.hard_case_class, hard_case_fraction=args.hard_case_fraction,
            deep_supervision=not args.no_deep_supervision,
            augmentation={"enabled": False} if args.no_augmentation else None, seed=args.seed,
            num_workers=args.workers, device=args.device, precision=args.precision, threads=args.threads,
            initial_weights=str(args.initial_weights) if args.initial_weights else None,
            anchor_strength=args.anchor_strength, name=args.output.name)
        run_dir = args.output
    result = train(config, run_dir, stop_after=args.stop_after)
    is_main = os.environ.get("RANK", "0") == "0"
    if is_main and result.epochs_done >= config.epochs and (Path(run_dir) / "history.json").is_file():
        png, markdown = write_training_report(Path(run_dir))
        LOGGER.info("Training report: %s, %s", png, markdown)
    LOGGER.info("Run %s: %d/%d epochs done", run_dir, result.epochs_done, config.epochs)
    return 0
