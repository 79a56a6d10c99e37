"""How large are a member's loss gradients, and how far does a fine-tune move its weights? (to choose --anchor-strength)

    .venv/bin/python benchmarks/finetune_weight_scale.py --run work_runs/ft140_hc_lr1e-4/finetune/runs/fold0 \\
        --parent KidneyTumorSeg/Resources/Models/kits-demo/1.4.0/fold0.safetensors \\
        [--tuned work_runs/ft140_lr1e-4/store/kits-demo/1.4.1/fold0.safetensors ...] [--batches 6]

Loads the parent's weights into the network of a fine-tuning run (``--run``: its config.json gives the data, the
sampling and the loss), draws ``--batches`` training batches as that run does and prints the loss and the RMS and
median absolute value of the loss gradient over all weights, at the parent. For each ``--tuned`` weights file it
prints the distance from the parent (total and RMS per weight). L2-SP adds ``S * (w - w_parent)`` to the gradient:
S times the RMS move, set against the gradient's RMS and median, says which weights an anchor of strength S holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from kidneytumorseg_training.trainer import BatchIndices, Trainer
from kidneytumorseg_training.training_config import TrainingConfig


def gradient_scale(run: Path, parent: Path, batches: int) -> list[tuple[float, float, float]]:
    """(loss, gradient RMS, median |gradient|) at the parent's weights, one per batch."""
    settings = json.loads((run / "config.json").read_text())
    settings.update(initial_weights=str(parent), num_workers=0, progress=False)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(TrainingConfig.from_dict(settings), Path(scratch))
        loader = torch.utils.data.DataLoader(trainer.train_data, batch_sampler=BatchIndices(0, batches,
                                                                                            trainer.batch_size))
        trainer.model.train()
        rows = []
        for batch in loader:
            trainer.optimizer.zero_grad(set_to_none=True)
            outputs = trainer.trained(batch["image"])
            outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
            loss = trainer.loss(outputs, batch["label"])
            loss.backward()
            gradient = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
            rows.append((float(loss.detach()), float(gradient.pow(2).mean().sqrt()), float(gradient.abs().median())))
    return rows


def weight_move(parent: Path, tuned: Path) -> tuple[float, float]:
    """(distance, RMS per weight) between two weight files of one network."""
    a, b = load_file(str(parent)), load_file(str(tuned))
    squared = sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in a)
    count = sum(v.numel() for v in a.values())
    return math.sqrt(squared), math.sqrt(squared / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a fine-tuning run folder (its config.json)")
    parser.add_argument("--parent", type=Path, required=True, help="the parent member's .safetensors")
    parser.add_argument("--tuned", type=Path, nargs="*", default=[], help="fine-tuned .safetensors of that member")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"# gradient of the loss at {args.parent}, batches drawn as in {args.run}")
    print("| batch | loss | gradient RMS | median abs gradient |")
    print("|---|---|---|---|")
    rows = gradient_scale(args.run, args.parent, args.batches)
    for index, (loss, rms, median) in enumerate(rows):
        print(f"| {index} | {loss:.3f} | {rms:.2e} | {median:.2e} |")
    loss, rms, median = (statistics.median(column) for column in zip(*rows, strict=True))
    print(f"| median | {loss:.3f} | {rms:.2e} | {median:.2e} |")
    if args.tuned:
        print("\n| fine-tuned weights | distance from the parent | RMS move per weight |")
        print("|---|---|---|")
        for tuned in args.tuned:
            distance, rms = weight_move(args.parent, tuned)
            print(f"| {tuned} | {distance:.3f} | {rms:.2e} |")


if __name__ == "__main__":
    main()
