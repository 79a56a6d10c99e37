"""The training loop: one network, one run folder, checkpoint every epoch, resume after a kill, DDP.

Launch on one process with :func:`train`, or on several with ``torchrun --nproc_per_node N -m
kidneytumorseg_training.cli.main train ...`` (gloo on CPUs, NCCL on GPUs). Every rank draws its own patches
(the rank is part of each patch's random key), DistributedDataParallel averages the gradients, so the ranks
train one model; rank 0 writes the checkpoints and the history.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.class_mapping import output_labels_from_label_map
from kidneytumorseg.device import select_device
from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg.labels import LABEL_NAMES
from kidneytumorseg.networks import build_network, count_parameters
from kidneytumorseg.precision import cpu_has_native_bf16, use_half_precision
from kidneytumorseg_training import distributed
from kidneytumorseg_training.checkpoint import find_checkpoint, load_checkpoint, load_initial_weights, save_checkpoint
from kidneytumorseg_training.member_patches import member_network, member_patch_size, patch_dataset
from kidneytumorseg_training.planning import load_plans
from kidneytumorseg_training.replay_distillation import ReplayDistillation
from kidneytumorseg_training.sampling import BatchIndices
from kidneytumorseg_training.training_config import TrainingConfig
from kidneytumorseg_training.weight_anchor import WeightAnchor

LOGGER = logging.getLogger(__name__)
LATEST, BEST = "checkpoint_latest", "checkpoint_best"
HISTORY_NAME = "history.json"
_EMA = 0.9  # smoothing of the validation Dice used to pick the best checkpoint (nnU-Net's choice)


@dataclass
class TrainingResult:
    run_dir: Path
    epochs_done: int
    history: list[dict[str, Any]]
    parameters: int


def network_config(config: TrainingConfig, plans: dict[str, Any]) -> dict[str, Any]:
    """The network the run trains: the config's override, else the plan's, with deep supervision set and the
    input channels and classes the member's settings imply (2.5D, stage input, label map)."""
    network = member_network(config, config.network or plans["network"])
    network["deep_supervision"] = bool(config.deep_supervision)
    return network


def resolve_training_precision(requested: str, device: torch.device, native_bf16: bool | None = None) -> str:
    """The autocast a run uses: ``requested`` unless it is ``auto``, which trains in half precision where the
    engine's ``--precision auto`` predicts in it (:func:`kidneytumorseg.precision.use_half_precision`: CUDA, and
    a CPU with native bfloat16) - float16 with a gradient scaler on CUDA, bfloat16 on the CPU - and in float32
    elsewhere (MPS, other CPUs: emulated bfloat16 would be slower than float32)."""
    if requested != "auto":
        if requested == "bf16" and device.type == "cpu" and \
                not (cpu_has_native_bf16() if native_bf16 is None else native_bf16):
            LOGGER.warning("This CPU has no native bfloat16 (avx512_bf16 / amx_bf16): bfloat16 training is emulated "
                           "and far slower than float32. Use --precision auto or fp32 unless you mean to compare them.")
        return requested
    if not use_half_precision("auto", device, native_bf16=native_bf16):
        return "fp32"
    return "fp16" if device.type == "cuda" else "bf16"


def _autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _make_optimizer(config: TrainingConfig, parameters) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)


def poly_lr(initial: float, epoch: int, epochs: int, exponent: float) -> float:
    """nnU-Net's polynomial decay: ``initial * (1 - epoch / epochs) ** exponent``."""
    return initial * (1.0 - epoch / epochs) ** exponent


class Plateau:
    """Reduce-on-plateau of a loss (``plateau_metric``: the validation or the training loss; JSON-safe state,
    unlike torch's scheduler pickle)."""

    def __init__(self, lr: float, patience: int, factor: float, state: dict[str, Any] | None = None) -> None:
        self.patience, self.factor = patience, factor
        self.state = state or {"lr": lr, "best": math.inf, "bad_epochs": 0}

    def step(self, loss: float) -> float:
        if loss < self.state["best"] - 1e-4:
            self.state.update(best=loss, bad_epochs=0)
        else:
            self.state["bad_epochs"] += 1
            if self.state["bad_epochs"] > self.patience:
                self.state.update(lr=self.state["lr"] * self.factor, bad_epochs=0)
        return self.state["lr"]


def _loss_function(config: TrainingConfig, num_outputs: int) -> Callable:
    from kidneytumorseg_training.losses import DecayingDeepSupervisionLoss, DeepSupervisionLoss, build_loss

    base = build_loss(config.loss, **config.loss_options)
    if num_outputs > 1 and config.deep_supervision_decay is not None:
        return DecayingDeepSupervisionLoss(base, num_outputs, **config.deep_supervision_decay)
    return DeepSupervisionLoss(base, num_outputs) if num_outputs > 1 else base


def _augmenter(config: TrainingConfig, anisotropic: bool) -> Callable | None:
    from kidneytumorseg_training.augmentation import AugmentationConfig, augment

    settings = dict(config.augmentation or {})
    if settings.get("enabled", True) is False:
        return None
    settings.setdefault("anisotropic", anisotropic)
    return partial(_augment, config=AugmentationConfig.from_dict(settings), function=augment)


def _augment(image: np.ndarray, label: np.ndarray, seed: int, *, config: Any, function: Callable):
    return function(image, label, config, seed)


def _val_foreground_fraction(config: TrainingConfig) -> float:
    """Half the validation patches are centred on foreground; a refiner's all are, as its inference crops hold the
    stage-1 region (a patch outside it is blank and says nothing of the refiner)."""
    return 1.0 if config.stage_input is not None else 0.5


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def _confusion(logits: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes-1, 3) true positives, false positives, false negatives per foreground class."""
    prediction = logits.argmax(1)
    rows = []
    for c in range(1, classes):
        p, t = prediction == c, target == c
        rows.append(torch.stack([(p & t).sum(), (p & ~t).sum(), (~p & t).sum()]))
    return torch.stack(rows).double()


class Trainer:
    """Holds the network, optimizer and data of one run; :meth:`fit` runs the remaining epochs."""

    def __init__(self, config: TrainingConfig, run_dir: str | Path) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.context = distributed.init_from_environment(config.device)
        self.device = self.context.device if self.context.active else select_device(config.device)
        threads = config.threads or max(1, (os.cpu_count() or 1) // self.context.world_size)
        torch.set_num_threads(threads)
        self.plans = load_plans(config.preprocessed)
        self.patch_size = member_patch_size(config, self.plans)
        self.batch_size = int(config.batch_size or self.plans.get("batch_size", 2))
        self.precision = resolve_training_precision(config.precision, self.device)
        torch.manual_seed(config.seed)
        self.network_config = network_config(config, self.plans)
        self.model = build_network(self.network_config).to(self.device)
        self.classes = int(self.network_config["num_classes"])
        if config.initial_weights:
            load_initial_weights(self.model, config.initial_weights, partial=config.initial_weights_partial)
        # L2-SP: the anchor is the starting weights, taken before a resume loads later ones
        self.anchor = WeightAnchor(self.model, config.anchor_strength) if config.anchor_strength else None
        # distillation: the parent is a frozen copy of the starting weights, likewise taken before a resume
        self.distillation = ReplayDistillation(self.model, config.distill_weight, config.distill_ids) \
            if config.distill_weight else None
        self.optimizer = _make_optimizer(config, self.model.parameters())
        self.plateau = Plateau(config.lr, config.plateau_patience, config.plateau_factor)
        self.history: list[dict[str, Any]] = []
        self.best_ema: float | None = None
        self.ema: float | None = None
        self.start_epoch = 0
        self._resume_if_possible()
        self.trained = self.context.wrap(self.model)
        self.loss = _loss_function(config, self._num_outputs())
        spacing = self.plans["target_spacing"]
        anisotropic = max(spacing) / min(spacing) > 3.0 or self.patch_size[0] * 2 < max(self.patch_size) \
            or config.context_slices is not None  # 2.5D slabs are thin: in-plane rotation and scaling only
        self.train_data = patch_dataset(config, self.plans, config.train_ids, self.patch_size, self.batch_size,
                                        seed=config.seed, rank=self.context.rank,
                                        foreground_fraction=config.foreground_fraction,
                                        augment=_augmenter(config, anisotropic))
        self.val_data = None
        if config.val_ids:
            self.val_data = patch_dataset(config, self.plans, config.val_ids, self.patch_size, self.batch_size,
                                          seed=config.seed + 1, rank=self.context.rank,
                                          foreground_fraction=_val_foreground_fraction(config), hard_case_fraction=0.0)
        self.class_labels = output_labels_from_label_map(config.label_map) if config.label_map else \
            tuple(range(self.classes))
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16" and self.device.type == "cuda")

    # -- state ---------------------------------------------------------------------------------------------
    def _num_outputs(self) -> int:
        if not self.network_config.get("deep_supervision"):
            return 1
        with torch.no_grad():
            probe = torch.zeros(1, self.network_config["in_channels"], *self.patch_size, device=self.device)
            self.model.eval()
            outputs = self.model(probe)
            self.model.train()
        return len(outputs) if isinstance(outputs, (list, tuple)) else 1

    def _resume_if_possible(self) -> None:
        if find_checkpoint(self.run_dir / LATEST) is None:
            return
        state = load_checkpoint(self.run_dir / LATEST, self.model, self.optimizer)
        self.start_epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        self.best_ema = state.get("best_ema")
        self.ema = state.get("ema")
        if state.get("plateau"):
            self.plateau.state = dict(state["plateau"])
        LOGGER.info("Resuming %s after epoch %d", self.run_dir, self.start_epoch)

    def _state(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "history": self.history, "best_ema": self.best_ema, "ema": self.ema,
                "plateau": self.plateau.state, "network": self.network_config, "patch_size": self.patch_size}

    def _set_lr(self, epoch: int) -> float:
        if self.config.optimizer == "sgd":
            lr = poly_lr(self.config.lr, epoch, self.config.epochs, self.config.poly_exponent)
        else:
            lr = self.plateau.state["lr"]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    # -- steps ---------------------------------------------------------------------------------------------
    def _train_step(self, batch: dict[str, torch.Tensor]) -> float:
        image = batch["image"].to(self.device, non_blocking=True)
        label = batch["label"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.precision, self.device):
            outputs = self.trained(image)
        outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
        loss = self.loss(outputs, label)
        if self.distillation is not None:
            with _autocast(self.precision, self.device):
                loss = loss + self.distillation.loss(image, batch["case_id"], outputs)
        if not torch.isfinite(loss):
            raise KidneyTumorSegError(f"The training loss became {loss.item()} (diverged). Lower the learning "
                                      f"rate or use --precision fp32, then resume from the last checkpoint.")
        self.grad_scaler.scale(loss).backward()
        self.grad_scaler.unscale_(self.optimizer)
        if self.anchor is not None:
            self.anchor.pull(self.model)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.gradient_clip)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        return float(loss.detach())

    @torch.no_grad()
    def _validate(self) -> tuple[float, dict[str, float | None]]:
        if self.val_data is None:
            return math.nan, {}
        self.model.eval()
        losses, confusion = [], torch.zeros(self.classes - 1, 3, dtype=torch.float64)
        for step in range(self.config.val_iterations):
            items = [self.val_data[i] for i in range(step * self.batch_size, (step + 1) * self.batch_size)]
            image = torch.stack([it["image"] for it in items]).to(self.device)
            label = torch.stack([it["label"] for it in items]).to(self.device)
            with _autocast(self.precision, self.device):
                outputs = self.model(image)
            outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
            losses.append(float(self.loss(outputs, label)))
            full = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
            confusion += _confusion(full, label, self.classes).cpu()
        self.model.train()
        totals = self.context.all_reduce(torch.tensor([sum(losses), len(losses)], dtype=torch.float64))
        confusion = self.context.all_reduce(confusion)
        dice: dict[str, float | None] = {}
        for index, (tp, fp, fn) in enumerate(confusion.tolist()):
            name = LABEL_NAMES.get(self.class_labels[index + 1], f"class_{index + 1}")
            dice[name] = None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
        return float(totals[0] / max(totals[1], 1)), dice

    # -- loop ----------------------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> TrainingResult:
        """Train the remaining epochs (or only ``stop_after`` of them); checkpoint after each."""
        config = self.config
        last = config.epochs if stop_after is None else min(config.epochs, self.start_epoch + stop_after)
        steps = (last - self.start_epoch) * config.iterations_per_epoch
        loader = torch.utils.data.DataLoader(
            self.train_data, batch_sampler=BatchIndices(self.start_epoch * config.iterations_per_epoch, steps,
                                                        self.batch_size),
            num_workers=config.num_workers, worker_init_fn=_worker_init if config.num_workers else None,
            persistent_workers=False, prefetch_factor=4 if config.num_workers else None,
            pin_memory=self.device.type == "cuda")
        batches = iter(loader)
        self.model.train()
        for epoch in range(self.start_epoch, last):
            lr = self._set_lr(epoch)
            if hasattr(self.loss, "set_epoch"):
                self.loss.set_epoch(epoch)
            started, waited, losses = time.perf_counter(), 0.0, []
            for _ in range(config.iterations_per_epoch):
                before = time.perf_counter()
                batch = next(batches)
                waited += time.perf_counter() - before
                losses.append(self._train_step(batch))
            train_seconds = time.perf_counter() - started
            val_loss, val_dice = self._validate()
            train_loss = float(np.mean(losses))
            watched = train_loss if config.plateau_metric == "train_loss" else val_loss
            if config.optimizer == "adam" and math.isfinite(watched):
                self.plateau.step(watched)
            entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                     "val_dice": val_dice, "lr": lr, "seconds": time.perf_counter() - started,
                     "data_wait_fraction": waited / max(train_seconds, 1e-9),
                     "patches_per_second": config.iterations_per_epoch * self.batch_size
                     * self.context.world_size / max(train_seconds, 1e-9)}
            self.history.append(entry)
            self._save(epoch + 1, val_dice)
            level = logging.INFO if self.context.is_main else logging.DEBUG
            validation = (f"val loss {val_loss:.4f}  val Dice "
                          f"{ {k: (None if v is None else round(v, 3)) for k, v in val_dice.items()} }"
                          if self.val_data is not None else "no validation cases")
            LOGGER.log(level, "epoch %d/%d  train loss %.4f  %s  lr %.2e  %.0f s  data wait %.0f%%", epoch + 1,
                       config.epochs, entry["train_loss"], validation, lr, entry["seconds"],
                       100 * entry["data_wait_fraction"])
        if self.context.active:
            if not self.context.parameters_agree(self.model):
                raise KidneyTumorSegError("The DDP ranks ended with different parameters; check that every rank "
                                          "runs the same code and settings.")
            if self.context.is_main:
                LOGGER.info("DDP: the %d ranks hold identical parameters", self.context.world_size)
        return TrainingResult(self.run_dir, last, self.history, count_parameters(self.model))

    def _save(self, epoch: int, val_dice: dict[str, float | None]) -> None:
        scores = [v for v in val_dice.values() if v is not None]
        is_best = not scores  # without validation the latest checkpoint is the best one known
        if scores:
            score = float(np.mean(scores))
            self.ema = score if self.ema is None else _EMA * self.ema + (1 - _EMA) * score
            is_best = self.best_ema is None or self.ema > self.best_ema
            if is_best:
                self.best_ema = self.ema
        if self.context.is_main:
            save_checkpoint(self.run_dir / LATEST, self.model, self.optimizer, self._state(epoch))
            if is_best:
                save_checkpoint(self.run_dir / BEST, self.model, None, self._state(epoch))
            write_text_atomic(self.run_dir / HISTORY_NAME, json.dumps(self.history, indent=1) + "\n")
        self.context.barrier()

    def close(self, synchronize: bool = True) -> None:
        """Leave the process group cleanly: free the DDP wrapper (it holds the group) before destroying it.

        Left to interpreter shutdown, gloo's threads may still own tensors then and the process aborts
        ("terminate called without an active exception"). ``synchronize`` waits for every rank first; it is
        off after an error, when the other ranks may never arrive.
        """
        self.trained = self.model = self.optimizer = None
        self.train_data = self.val_data = None
        gc.collect()
        if synchronize:
            self.context.barrier()
        self.context.shutdown()


def train(config: TrainingConfig, run_dir: str | Path, stop_after: int | None = None) -> TrainingResult:
    """Start or resume the run in ``run_dir`` (a different config there is refused, not overwritten)."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file():
        previous = TrainingConfig.load(run_dir)
        changed = config.differences(previous)
        if changed:
            raise KidneyTumorSegError(f"{run_dir} holds a run with other settings ({changed}); resume it with "
                                      f"`kidneytumorseg-train train --resume {run_dir}` or choose a new folder.")
    trainer = Trainer(config, run_dir)
    if trainer.context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir)
        meta = {"parameters": count_parameters(trainer.model), "network": trainer.network_config,
                "patch_size": trainer.patch_size, "batch_size": trainer.batch_size, "precision": trainer.precision,
                "world_size": trainer.context.world_size, "device": str(trainer.device)}
        write_text_atomic(run_dir / "run.json", json.dumps(meta, indent=1) + "\n")
    trainer.context.barrier()
    finished = False
    try:
        result = trainer.fit(stop_after)
        finished = True
        return result
    finally:
        trainer.close(synchronize=finished)
