"""Which fine-tuning settings fix a domain shift without forgetting? The tiny phantom version, in minutes on a CPU.

    .venv/bin/python benchmarks/finetune_phantom_settings.py [--threads 1] [--work work_runs/finetune_phantoms]

A tiny random package (6 mm, 8 base features) is trained on 10 phantoms of the "original" domain, then
fine-tuned from that same model with each setting below on 8 corrected phantoms of the "shifted" domain
(kidneytumorseg_training.synthetic.domain_phantoms: the tumor enhances more than the kidney instead of less),
4 of them held out, the original cases replayed. Printed per setting: the held-out shifted tumor Dice before and
after (from the fine-tuning report) and the mean Dice on 6 unseen original-domain phantoms, old and new version.
Testing/training/test_finetune_domain_shift.py asserts the direction for the defaults (the last row).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from kidneytumorseg.metrics import compute_case_metrics
from kidneytumorseg.model_package import write_package
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.networks import build_network, plan_network
from kidneytumorseg.predictor import PredictionOptions, Predictor
from kidneytumorseg_training.finetune import finetune
from kidneytumorseg_training.synthetic.domain_phantoms import SPACING, phantom, write_cases

SETTINGS = [  # optimizer, learning rate, epochs x 20 steps, replay ratio
    ("sgd", 1e-3, 5, 1.0),
    ("adam", 1e-3, 10, 1.0),
    ("adam", 1e-3, 10, 2.0),
    ("adam", 1e-3, 20, 2.0),
]
REGIONS = ("kidney_and_mass", "mass", "tumor")
NORMALIZATION = {"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9}
PATCH = (16, 32, 32)


def random_store(root: Path) -> ModelStore:
    """A store whose user folder holds phantom@1.0.0: one random segmenter at the phantoms' spacing."""
    import torch

    torch.manual_seed(0)
    network = plan_network(PATCH, (SPACING,) * 3, base_features=8, deep_supervision=False).to_dict()
    write_package(root / "user" / "phantom" / "1.0.0", name="phantom", version="1.0.0", description="random",
                  preprocessing={"target_spacing": [SPACING] * 3, "normalization": NORMALIZATION},
                  network=network, patch_size=list(PATCH), inference={"tile_overlap": 0.25, "mirror_axes": []},
                  postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                                  "min_component_ml": 0.0, "hysteresis": None},
                  members=[({"name": "fold0"}, build_network(network).state_dict())],
                  provenance={"recipe": "random weights (benchmarks/finetune_phantom_settings.py)"})
    return ModelStore(root / "bundled", root / "user")


def original_dice(store: ModelStore, spec: str) -> dict[str, float]:
    predictor = Predictor.from_store(spec, PredictionOptions(device="cpu"), store=store)
    metrics = [compute_case_metrics(predictor.segment(ct).labels, mask)
               for ct, mask in (phantom(seed, "original") for seed in range(200, 206))]
    return {region: float(np.mean([m.dice[region] for m in metrics])) for region in REGIONS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("work_runs/finetune_phantoms"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shutil.rmtree(args.work, ignore_errors=True)
    store = random_store(args.work)
    original = write_cases(args.work / "original", range(10), "original")
    corrections = write_cases(args.work / "corrections", range(100, 108), "shifted")
    trained = finetune("phantom@1.0.0", original, holdout=0.2, epochs=15, iterations=20, learning_rate=1e-2,
                       optimizer="adam", store=store, work_dir=args.work / "train", seed=0, threads=args.threads)
    old = original_dice(store, f"phantom@{trained.version}")
    print(f"# starting model phantom@{trained.version}: trained on the original domain; "
          f"original tumor Dice {old['tumor']:.3f}")
    print("| optimizer | lr | steps | replay | shifted tumor before | after | original mean Dice old | new | "
          "original tumor old | new | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for number, (optimizer, lr, epochs, ratio) in enumerate(SETTINGS, start=2):
        started = time.perf_counter()
        tuned = finetune(f"phantom@{trained.version}", corrections, replay=original, holdout=0.5, epochs=epochs,
                         iterations=20, learning_rate=lr, optimizer=optimizer, replay_ratio=ratio, store=store,
                         version=f"1.0.{number}", work_dir=args.work / f"finetune_{number}", seed=0,
                         threads=args.threads)
        seconds = time.perf_counter() - started
        new = original_dice(store, f"phantom@{tuned.version}")
        print(f"| {optimizer} | {lr:g} | {epochs} x 20 | {ratio:g}:1 | {tuned.before['regions']['tumor']['dice']:.3f} "
              f"| {tuned.after['regions']['tumor']['dice']:.3f} | {np.mean(list(old.values())):.3f} "
              f"| {np.mean(list(new.values())):.3f} | {old['tumor']:.3f} | {new['tumor']:.3f} | {seconds:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
