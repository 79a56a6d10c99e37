"""``kidneytumorseg-train recipe``: the seed papers as named recipes (docs/recipes.md).

Examples::

    kidneytumorseg-train recipe list
    kidneytumorseg-train recipe show zang2021-kits21 --budget cpu          # the resolved settings as JSON
    kidneytumorseg-train recipe run isensee2019-residual --data work_data/synthetic_1.5x1.5x3 --work work_recipes \\
        --budget cpu --train-cases work_runs/train_pool.txt --folds 0 --threads 2 --workers 1 \\
        --export ~/models --model-name kits-residual --model-version 1.0.0

``run`` plans and preprocesses (cached in the work folder), trains each fold (resumable: run it again after a
kill), exports one model package whose members are the folds, and prints the package folder on the last line
of stdout. The budget is ``smoke``, ``cpu``, ``full`` (the paper's sizes) or a number in (0, 1].
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

LOGGER = logging.getLogger("kidneytumorseg_training")


def _folds(text: str) -> list[int]:
    try:
        folds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        folds = []
    if not folds or any(fold < 0 for fold in folds):
        raise argparse.ArgumentTypeError(f"'{text}' is not a fold list: give fold numbers separated by commas, "
                                         f"e.g. 0 or 0,1,2,3,4")
    return folds


def _budget(text: str) -> str:
    from kidneytumorseg_training.recipes import Budget, RecipeError

    try:
        Budget.parse(text)
    except RecipeError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``recipe list | show | run`` to ``subparsers``."""
    parser = subparsers.add_parser("recipe", help="list, show or run the seed papers' recipes",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="recipe_command", required=True)
    listing = commands.add_parser("list", help="the recipes, their papers and what they do")
    listing.set_defaults(handler=list_command)
    show = commands.add_parser("show", help="print a recipe's settings at a budget as JSON")
    show.add_argument("name", help="recipe name (see `recipe list`)")
    show.add_argument("--budget", type=_budget, default="full", help="smoke, cpu, full (default) or a number in (0, 1]")
    show.set_defaults(handler=show_command)

    run = commands.add_parser("run", help="plan, preprocess, train every fold and export a model package")
    run.add_argument("name", help="recipe name (see `recipe list`)")
    run.add_argument("--data", type=Path, required=True, help="dataset folder (KiTS layout: case_xxxxx/imaging.nii.gz "
                                                              "+ segmentation.nii.gz)")
    run.add_argument("--work", type=Path, required=True, help="work folder (cached preprocessing, runs, package)")
    run.add_argument("--budget", type=_budget, required=True, help="smoke, cpu, full or a number in (0, 1]")
    cases = run.add_argument_group("cases")
    cases.add_argument("--train-cases", metavar="FILE_OR_CSV",
                       help="training pool: a file with one case id per line, or ids separated by commas "
                            "(default: every case of --data)")
    cases.add_argument("--val-cases", metavar="FILE_OR_CSV",
                       help="validation cases (one split); default: the recipe's folds of the training pool")
    cases.add_argument("--folds", type=_folds, help="folds to train, e.g. 0,1,2,3,4 (default: the paper's at the "
                                                    "full budget, fold 0 below)")
    export = run.add_argument_group("export")
    export.add_argument("--export", type=Path, metavar="MODELS_DIR",
                        help="write the package into this model store folder as <model-name>/<model-version> "
                             "(default: WORK/packages/...)")
    export.add_argument("--model-name", help="package name (default: the recipe name)")
    export.add_argument("--model-version", default="1.0.0", help="package version (default 1.0.0)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing package in MODELS_DIR")
    how = run.add_argument_group("run")
    how.add_argument("--seed", type=int, default=0, help="seed of fold 0 (fold k uses seed + k)")
    how.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    how.add_argument("--workers", type=int, default=1, help="data-loading worker processes (default 1)")
    how.add_argument("--jobs", type=int, default=2, help="preprocessing processes (default 2)")
    how.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    how.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                     help="auto: fp16 mixed precision on CUDA, bf16 on a CPU with native "
                          "bfloat16, fp32 on other devices")
    run.set_defaults(handler=run_command)
    return parser


def list_command(args: argparse.Namespace) -> int:
    """One line per recipe: name, summary, paper."""
    from kidneytumorseg_training.recipes import all_recipes

    for recipe in all_recipes():
        sys.stdout.write(f"{recipe.name:22s} {recipe.summary}\n{'':22s} {recipe.paper}\n")
    return 0


def show_command(args: argparse.Namespace) -> int:
    """The recipe's resolved settings at the budget, as JSON on stdout."""
    from kidneytumorseg_training.recipes import get_recipe

    resolved = get_recipe(args.name).resolve(args.budget)
    sys.stdout.write(json.dumps(resolved.to_dict(), indent=2) + "\n")
    return 0


def run_command(args: argparse.Namespace) -> int:
    """Run the recipe; the exported package folder is the last line on stdout."""
    from kidneytumorseg_training.recipes import get_recipe
    from kidneytumorseg_training.recipes.preparation import read_case_ids
    from kidneytumorseg_training.recipes.runner import run_recipe

    recipe = get_recipe(args.name)
    options = dict(
        train_cases=read_case_ids(args.train_cases), val_cases=read_case_ids(args.val_cases), folds=args.folds,
        seed=args.seed, threads=args.threads, workers=args.workers, jobs=args.jobs, device=args.device,
        precision=args.precision, export_dir=args.export, model_name=args.model_name,
        model_version=args.model_version, overwrite=args.overwrite)
    runner = getattr(recipe, "run", None)
    if callable(runner):  # a cascade recipe brings its own runner
        result = runner(data=args.data, work=args.work, budget=args.budget, **options)
    else:
        result = run_recipe(recipe, args.data, args.work, args.budget, **options)
    LOGGER.info("Recipe %s at budget %s: package %s (times in s: %s)", result.recipe, result.budget.name,
                result.package, result.seconds)
    sys.stdout.write(f"{result.package}\n")
    return 0
