"""Does fine-tuning on corrections help? A shifted synthetic domain, corrected cases, before and after.

    .venv/bin/python benchmarks/finetune_shifted_domain.py --masks ../shared/data/kits23-masks \\
        --original work_data/synthetic_1.5x1.5x3 --replay work_data/pre_3x2x2 --model kits-demo@1.0.0 \\
        [--shift acquisition|hyperenhancing-tumor|none] [--shifted-cases 10] [--original-cases 10] [--epochs 20] \\
        [--iterations 20] [--threads 2]

1. Shifted domain: synthetic CT from real KiTS23 masks of held-out cases (id % 5 == 2, never used in
   training), made with one of two shifts, or none (``--shift``):
   - ``acquisition`` (the default): an acquisition outside the training range: noise 55 HU (training: 6..28),
     a smoother reconstruction kernel, thicker slice profile and a +20 HU calibration offset;
   - ``hyperenhancing-tumor``: the tumor's mean HU drawn from 260..340, above the kidney cortex's range in every
     phase (at most 250), as a hypervascular tumor in an arterial phase looks; training draws the tumor's mean
     from 20..180 by phase, mostly below the cortex. The intensity augmentation (brightness, contrast, gamma)
     changes the whole patch and keeps the order of tissues, so it cannot make this domain;
   - ``none``: the control, no shift: corrections from the training domain itself. What the original domain
     loses here is what fine-tuning costs by itself, whatever the new domain asks of the network.
2. These cases are exported as a corrections folder (what "Export correction" writes: the image, the
   corrected label map and correction.json). `finetune` holds out half of them, fine-tunes every member of
   the model on the rest (mixed with replayed original training data so it does not forget), and measures
   the held-out shifted cases before and after.
3. The original domain: other held-out cases of the original synthetic dataset, segmented by the old and
   the new version.
Prints tumor / mass / kidney_and_mass Dice before and after on both domains. All data are synthetic CT
generated from real masks.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from equal_budget.report import cpu_description

from kidneytumorseg.evaluation import CaseResult, summarize
from kidneytumorseg.image_io import read_ct, read_label_map, write_image_atomic
from kidneytumorseg.metrics import compute_case_metrics
from kidneytumorseg.model_package import ModelPackage
from kidneytumorseg.model_store import ModelStore, default_bundled_dir
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg_training import finetune_defaults as defaults
from kidneytumorseg_training.finetune import finetune
from kidneytumorseg_training.synthetic.dataset import case_seed
from kidneytumorseg_training.synthetic.generator import generate_ct
from kidneytumorseg_training.synthetic.resample import resample_to_spacing
from kidneytumorseg_training.trainer import resolve_training_precision
from kidneytumorseg_training.training_config import PRECISIONS

SHIFT = {"noise_hu": 55.0, "in_plane_blur": 1.2, "slice_profile": 0.9, "calibration_offset": 20.0}
# name -> (scanner overrides, tissue mean-HU overrides) of generate_ct
SHIFTS: dict[str, tuple[dict[str, float], dict[str, tuple[float, float]]]] = {
    "acquisition": (SHIFT, {}),
    "hyperenhancing-tumor": ({}, {"tumor": (260.0, 340.0)}),
    "none": ({}, {}),
}
REGIONS = ("kidney_and_mass", "mass", "tumor")


def held_out_ids(masks: Path) -> list[str]:
    return sorted(p.name for p in masks.glob("case_*") if int(p.name.split("_")[1]) % 5 == 2)


def build_corrections(masks: Path, ids: list[str], folder: Path, model: str, shift: str = "acquisition") -> None:
    scanner, tissue = SHIFTS[shift]
    note = f"synthetic shifted domain {shift}: scanner {scanner}, tissue HU {tissue}"
    for case in ids:
        target = folder / case
        if (target / "correction.json").is_file():
            recorded = json.loads((target / "correction.json").read_text()).get("shift", "acquisition")
            if recorded != shift:
                raise SystemExit(f"{target} was built with the {recorded!r} shift, not {shift!r}; give another "
                                 f"--work folder.")
            continue
        mask = resample_to_spacing(read_label_map(masks / case / "segmentation.nii.gz"), (1.5, 1.5, 3.0),
                                   is_label=True)
        synthetic = generate_ct(mask, case_seed(1, case), scanner_overrides=scanner, tissue_hu_overrides=tissue)
        target.mkdir(parents=True, exist_ok=True)
        write_image_atomic(synthetic.image, target / "imaging.nii.gz")
        write_image_atomic(mask, target / "segmentation.nii.gz")
        record = {"model": model, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "shift": shift,
                  "note": f"{note}; the reference mask stands for the correction"}
        (target / "correction.json").write_text(json.dumps(record, indent=2))
        logging.info("built shifted case %s", case)


def score_cases(package: ModelPackage, dataset: Path, ids: list[str]) -> list[CaseResult]:
    """The KiTS metrics of ``package`` (default settings) on each case ``ids`` of a KiTS-layout folder."""
    predictor = Predictor(package, PredictionOptions(device="cpu"))
    results = []
    for case in ids:
        labels = predictor.segment(read_ct(dataset / case / "imaging.nii.gz"), name=case).labels
        results.append(CaseResult(case, compute_case_metrics(labels, read_label_map(dataset / case /
                                                                                     "segmentation.nii.gz"))))
    return results


def evaluate(package: ModelPackage, dataset: Path, ids: list[str]) -> dict[str, float]:
    """Mean Dice per KiTS region of ``package`` (default settings) on the cases ``ids`` of a KiTS-layout folder."""
    summary = summarize(score_cases(package, dataset, ids))
    return {region.region: region.dice_mean for region in summary.regions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--masks", type=Path, required=True, help="KiTS23 masks (case_XXXXX/segmentation.nii.gz)")
    parser.add_argument("--original", type=Path, required=True, help="the original synthetic dataset")
    parser.add_argument("--replay", type=Path, help="preprocessed original training data to mix in")
    parser.add_argument("--model", default="kits-demo@1.0.0")
    parser.add_argument("--shifted-cases", type=int, default=10)
    parser.add_argument("--original-cases", type=int, default=10)
    # The defaults of `kidneytumorseg-train finetune` (docs/training.md says where they come from).
    parser.add_argument("--epochs", type=int, default=defaults.EPOCHS)
    parser.add_argument("--iterations", type=int, default=defaults.ITERATIONS)
    parser.add_argument("--lr", type=float, default=defaults.LEARNING_RATE)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default=defaults.OPTIMIZER)
    parser.add_argument("--replay-ratio", type=float, default=defaults.REPLAY_RATIO)
    parser.add_argument("--sample-dice", action="store_true", help="Dice per patch (default: over the batch)")
    parser.add_argument("--hard-case-class", type=int, choices=(1, 2, 3), default=defaults.HARD_CASE_CLASS,
                        help="oversample patches centred on this label (3 = cyst, the bundled members' recipe)")
    parser.add_argument("--hard-case-fraction", type=float, default=defaults.HARD_CASE_FRACTION)
    parser.add_argument("--anchor-strength", type=float, default=defaults.ANCHOR_STRENGTH,
                        help="L2-SP pull toward the parent's weights (0 = off)")
    parser.add_argument("--distill-weight", type=float,
                        help=f"distillation from the parent on the replayed patches (default "
                             f"{defaults.DISTILL_WEIGHT:g} with --replay; 0 = off)")
    parser.add_argument("--shift", choices=sorted(SHIFTS), default="acquisition", help="the shifted domain")
    parser.add_argument("--work", type=Path, help="default work_runs/finetune_shifted (acquisition) or "
                        "work_runs/finetune_shifted_SHIFT")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the fine-tune's training autocast (auto: bf16 on a CPU with native bfloat16, else fp32)")
    parser.add_argument("--seed", type=int, default=0,
                        help="fine-tuning seed: the held-out half of the corrections, the replayed cases, the patches")
    args = parser.parse_args()
    args.distill_weight = defaults.distill_weight_for(args.distill_weight, args.replay is not None)
    if args.work is None:
        suffix = "" if args.shift == "acquisition" else f"_{args.shift}"
        args.work = Path(f"work_runs/finetune_shifted{suffix}")
    if args.threads:
        torch.set_num_threads(args.threads)
    # The bundled models, and the new version in a store of its own under --work: the user's store is not touched.
    store = ModelStore(default_bundled_dir(), args.work / "store")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ids = held_out_ids(args.masks)
    shifted, original = ids[: args.shifted_cases], ids[args.shifted_cases: args.shifted_cases + args.original_cases]
    corrections = args.work / "corrections"
    build_corrections(args.masks, shifted, corrections, args.model, args.shift)
    started = time.perf_counter()
    result = finetune(args.model, corrections, replay=args.replay, holdout=0.5, epochs=args.epochs,
                      iterations=args.iterations, learning_rate=args.lr, work_dir=args.work / "finetune",
                      optimizer=args.optimizer, replay_ratio=args.replay_ratio, batch_dice=not args.sample_dice,
                      hard_case_class=args.hard_case_class, hard_case_fraction=args.hard_case_fraction,
                      anchor_strength=args.anchor_strength,
                      distill_weight=args.distill_weight, seed=args.seed, threads=args.threads,
                      precision=args.precision, store=store)
    seconds = time.perf_counter() - started
    new_model = f"{args.model.split('@')[0]}@{result.version}"
    original_before = evaluate(store.resolve(args.model), args.original, original)
    original_after = evaluate(store.resolve(new_model), args.original, original)
    # finetune() trains on the CPU unless told otherwise.
    print(f"# training precision {resolve_training_precision(args.precision, torch.device('cpu'))} "
          f"(--precision {args.precision}) on {cpu_description()}")
    print(f"# shift {args.shift}: scanner {SHIFTS[args.shift][0]}, tissue HU {SHIFTS[args.shift][1]}")
    print(f"# fine-tuning {args.model} -> {new_model} on {len(result.train_ids)} shifted-domain corrections "
          f"({args.epochs} epochs x {args.iterations} steps, {args.optimizer} lr {args.lr}, "
          f"{'per-patch' if args.sample_dice else 'batch'} Dice, replay {args.replay} x{args.replay_ratio}, "
          f"hard-case class {args.hard_case_class} at {args.hard_case_fraction:g}, "
          f"anchor {args.anchor_strength:g}, distillation {args.distill_weight:g}, seed {args.seed}), "
          f"{seconds:.0f} s")
    print(f"shifted held-out: {result.holdout_ids}; original held-out: {original}")
    print("| domain | region | Dice before | Dice after | change |")
    print("|---|---|---|---|---|")
    for region in REGIONS:
        b, a = result.before["regions"][region]["dice"], result.after["regions"][region]["dice"]
        print(f"| shifted | {region} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")
    for region in REGIONS:
        b, a = original_before[region], original_after[region]
        print(f"| original | {region} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")


if __name__ == "__main__":
    main()
