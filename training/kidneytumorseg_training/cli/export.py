"""``kidneytumorseg-train export``: write trained runs as one model package (the runs become its members).

Examples::

    kidneytumorseg-train export runs/fold0 runs/fold1 -o packages/kits-demo --name kits-demo --version 1.0.0
    kidneytumorseg-train export runs/fold* --localizer runs/localizer -o pkg --name kits --version 2.0.0 --import
    kidneytumorseg-train export runs/refiner --base models/kits-demo/1.1.0 -o pkg --name kits-demo --version 1.2.0
    kidneytumorseg-train export runs/fold1b --members fold1 --base models/kits-demo/1.3.0 --replace -o pkg \\
        --name kits-demo --version 1.4.0
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

LOGGER = logging.getLogger("kidneytumorseg_training")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("export", help="write trained runs as one model package",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+",
                        help="run folders (each becomes a segmenter, or a refiner when its run has a stage_input)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="package folder to write")
    parser.add_argument("--name", required=True, help="package name, e.g. kits-demo")
    parser.add_argument("--version", required=True, help="semantic version, e.g. 1.0.0")
    parser.add_argument("--localizer", type=Path, help="run folder of a low-resolution localizer (cascade mode)")
    parser.add_argument("--base", type=Path, help="existing package folder whose members (e.g. the segmenters and "
                        "localizer of a bundled version) the new package keeps, the runs added to them")
    parser.add_argument("--replace", action="store_true", help="with --base: a run named like a base member (see "
                        "--members) takes its place, e.g. one fold retrained")
    parser.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    parser.add_argument("--stage-one-weight", type=parse_stage_one_weight, metavar="W | kidney=W,tumor=W,cyst=W",
                        help="the refiner runs' share of stage 1's split of the kidney region: one number in [0, 1] "
                        "for all classes, or per class (missing classes 0), e.g. kidney=0.5,tumor=0.5,cyst=1 "
                        "(docs/cascades.md)")
    parser.add_argument("--members", help="comma-separated member names (default: the run folder names)")
    parser.add_argument("--description", default="", help="one line for model.json (shown in the model list)")
    parser.add_argument("--metrics", type=Path, help="JSON file of measured metrics to record in the provenance")
    parser.add_argument("--recipe", default="kidneytumorseg-train", help="recipe name for the provenance")
    parser.add_argument("--data", default="", help="what the runs were trained on, for the provenance (default: "
                        "the preprocessed folders named in the runs' config.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package folder")
    parser.add_argument("--import", dest="import_", action="store_true", help="also import it into the user store")
    parser.add_argument("--store-dir", type=Path, help="user model store folder (default: the standard one)")
    parser.set_defaults(handler=run_command)
    return parser


def parse_stage_one_weight(text: str) -> float | dict[str, float]:
    """``"0.5"`` -> 0.5; ``"kidney=0.5,cyst=1"`` -> ``{"kidney": 0.5, "cyst": 1.0}`` (checked when the package
    is written and loaded)."""
    try:
        if "=" not in text:
            return float(text)
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a number nor CLASS=NUMBER pairs such as kidney=0.5,tumor=0.5,cyst=1") from None


def runs_data(runs: list[Path]) -> str:
    """What the runs were trained on when --data is not given: the preprocessed folders their config.json names
    (a package's provenance should never say nothing about its data)."""
    from kidneytumorseg_training.training_config import TrainingConfig

    folders = []
    for run in runs:
        try:
            folder = str(TrainingConfig.load(run).preprocessed)
        except (OSError, ValueError, TypeError):  # not a run: export_package says so, naming the folder
            continue
        if folder not in folders:
            folders.append(folder)
    return f"preprocessed data {', '.join(folders)} (from the runs' config.json)" if folders else ""


def run_command(args: argparse.Namespace) -> int:
    from kidneytumorseg_training.export import export_package

    if args.replace and not args.base:
        raise SystemExit("--replace puts runs in the place of a base package's members; give the package with --base.")
    data = args.data or runs_data(args.runs)
    provenance: dict = {"recipe": args.recipe, "data": data, "runs": [str(run) for run in args.runs]}
    if not args.description:
        LOGGER.warning("No --description: %s@%s gets an empty one in model.json, and the model list cannot tell it "
                       "from other versions. Give --description 'one line' to set it.", args.name, args.version)
    if args.base:
        provenance["base"] = str(args.base)
    if args.metrics:
        provenance["metrics"] = json.loads(args.metrics.read_text())
    folder = export_package(
        args.runs, args.output, name=args.name, version=args.version, localizer=args.localizer,
        checkpoint=args.checkpoint, member_names=args.members.split(",") if args.members else None,
        provenance=provenance, description=args.description, overwrite=args.overwrite, base=args.base,
        replace=args.replace, stage_one_weight=args.stage_one_weight)
    LOGGER.info("Wrote %s@%s to %s", args.name, args.version, folder)
    if args.import_:
        from kidneytumorseg.model_store import ModelStore, default_bundled_dir

        store = ModelStore.default() if args.store_dir is None else ModelStore(default_bundled_dir(), args.store_dir)
        imported = store.import_package(folder)
        LOGGER.info("Imported %s@%s into %s", args.name, args.version, getattr(imported, "path", store.user_dir))
    return 0
