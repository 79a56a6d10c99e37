"""Does averaging the fine-tuned weights with the parent's keep the old domain? A sweep of the fraction.

    .venv/bin/python benchmarks/finetune_weight_averaging.py --masks ../shared/data/kits23-masks \\
        --original work_data/synthetic_1.5x1.5x3 --parent kits-demo@1.3.0 \\
        --work work_runs/finetune_130_hyper [--fractions 0,0.25,0.5,0.75,1] [--original-cases 10]

Reads what benchmarks/finetune_shifted_domain.py left in --work: the corrections folder (the shifted domain) and
the fine-tuned package in its store. For each fraction ``a`` it writes the package whose segmenters are
``(1 - a) * parent + a * fine-tuned`` (:mod:`kidneytumorseg_training.weight_averaging`; ``a = 0`` is the parent,
``a = 1`` the fine-tuned package), segments the shifted cases that fine-tuning held out and the same original
held-out cases as finetune_shifted_domain.py, with the engine's Predictor at default settings, and prints the
mean Dice of the KiTS regions on both domains and the change against the parent. All data are synthetic CT made
from real KiTS23 masks.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from finetune_shifted_domain import REGIONS, evaluate, held_out_ids

from kidneytumorseg.model_package import ModelPackage, parse_version
from kidneytumorseg.model_store import ModelStore, default_bundled_dir
from kidneytumorseg_training.weight_averaging import write_averaged_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--masks", type=Path, required=True, help="KiTS23 masks, to pick the original held-out cases")
    parser.add_argument("--original", type=Path, required=True, help="the original synthetic dataset")
    parser.add_argument("--parent", required=True, help="NAME@VERSION that was fine-tuned")
    parser.add_argument("--work", type=Path, required=True, help="the --work folder of finetune_shifted_domain.py")
    parser.add_argument("--tuned-version",
                        help="the fine-tuned version (default: the newest that fine-tuning wrote into --work's store)")
    parser.add_argument("--fractions", default="0,0.25,0.5,0.75,1", help="comma-separated fractions in [0, 1]")
    parser.add_argument("--shifted-cases", type=int, default=16, help="as given to finetune_shifted_domain.py")
    parser.add_argument("--original-cases", type=int, default=10, help="as given to finetune_shifted_domain.py")
    parser.add_argument("--threads", type=int, help="torch threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    store = ModelStore(default_bundled_dir(), args.work / "store")
    parent = store.resolve(args.parent)
    name = args.parent.split("@")[0]
    made = sorted((p.name for p in (args.work / "store" / name).glob("*") if (p / "model.json").is_file()),
                  key=parse_version)  # the versions fine-tuning wrote into --work's own store
    if not made and not args.tuned_version:
        raise SystemExit(f"No fine-tuned version of {name} in {args.work / 'store'}; run "
                         f"benchmarks/finetune_shifted_domain.py with --work {args.work} first.")
    tuned = store.resolve(f"{name}@{args.tuned_version or made[-1]}")
    shifted_ids = list(tuned.provenance["corrections_cases"]["holdout"])
    corrections = Path(tuned.provenance["corrections"])
    ids = held_out_ids(args.masks)
    original_ids = ids[args.shifted_cases: args.shifted_cases + args.original_cases]
    print(f"# parent {parent.name}@{parent.version}, fine-tuned {tuned.name}@{tuned.version}; shifted held-out "
          f"{shifted_ids} from {corrections}; original held-out {original_ids}")
    print("| fraction fine-tuned | shifted " + " | shifted ".join(REGIONS) + " | original "
          + " | original ".join(REGIONS) + " |")
    print("|---" * (1 + 2 * len(REGIONS)) + "|")
    baseline: dict[str, dict[str, float]] = {}
    for fraction in (float(f) for f in args.fractions.split(",")):
        folder = args.work / "averaged" / f"{fraction:g}"
        package = ModelPackage.load(write_averaged_package(parent, tuned, fraction, folder,
                                                           version=tuned.version))
        scores = {"shifted": evaluate(package, corrections, shifted_ids),
                  "original": evaluate(package, args.original, original_ids)}
        if fraction == 0:  # the parent's own weights: the changes are against this row
            baseline = scores
        cells = []
        for domain in ("shifted", "original"):
            for region in REGIONS:
                change = f" ({scores[domain][region] - baseline[domain][region]:+.3f})" if baseline else ""
                cells.append(f"{scores[domain][region]:.3f}{change}")
        print(f"| {fraction:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
