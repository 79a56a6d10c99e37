"""What a training run is: every setting needed to start it, resume it or repeat it, saved as config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.class_mapping import validate_label_map
from kidneytumorseg.denoising import check_median_size
from kidneytumorseg.stage_inputs import StageInputSpec

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
PLATEAU_METRICS: tuple[str, ...] = ("val_loss", "train_loss")
CONFIG_NAME = "config.json"
# Settings that may differ when a run is resumed (they change how, not what, is trained).
RESUMABLE_CHANGES: frozenset[str] = frozenset({"num_workers", "device", "threads", "epochs", "progress"})
DEEP_SUPERVISION_DECAY_KEYS: tuple[str, ...] = ("initial", "factor", "every_epochs")


def hard_case_problems(hard_case_class: int | None, hard_case_fraction: float) -> list[str]:
    """What is wrong with a hard-case sampling setting (sampling.py), one message per problem; [] if nothing."""
    problems = []
    if hard_case_class is not None and hard_case_class not in (1, 2, 3):
        problems.append(f"hard_case_class must be a KiTS label 1, 2 or 3 (3 = cyst), got {hard_case_class!r}")
    if isinstance(hard_case_fraction, bool) or not isinstance(hard_case_fraction, (int, float)) \
            or not 0.0 <= hard_case_fraction <= 1.0:
        problems.append(f"hard_case_fraction must be a fraction between 0 and 1, got {hard_case_fraction!r}")
    elif hard_case_fraction and hard_case_class is None:
        problems.append("hard_case_fraction is set but hard_case_class is not; name the class to oversample "
                        "(3 = cyst, as the bundled members were trained)")
    return problems


@dataclass
class TrainingConfig:
    """A training run. Defaults follow nnU-Net (SGD, Nesterov 0.99, lr 0.01, poly 0.9, Dice+CE with deep
    supervision, a third of the patches on foreground) scaled to whatever ``epochs`` x ``iterations_per_epoch``.
    """

    preprocessed: str
    train_ids: list[str]
    val_ids: list[str] = field(default_factory=list)
    epochs: int = 100
    iterations_per_epoch: int = 250
    val_iterations: int = 25
    batch_size: int | None = None  # None: the plan's
    patch_size: list[int] | None = None  # None: the plan's
    network: dict[str, Any] | None = None  # None: the plan's; a NetworkConfig dict otherwise
    optimizer: str = "sgd"
    learning_rate: float | None = None  # None: 0.01 for SGD, 3e-4 for Adam
    weight_decay: float = 3e-5
    momentum: float = 0.99
    poly_exponent: float = 0.9
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    plateau_metric: str = "val_loss"  # the loss whose plateau lowers Adam's learning rate ("train_loss" allowed)
    loss: str = "dice_ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    deep_supervision: bool = True
    augmentation: dict[str, Any] | None = None  # None: defaults; {"enabled": false}: none
    foreground_fraction: float = 1 / 3
    seed: int = 0
    num_workers: int = 1
    device: str = "auto"
    precision: str = "auto"  # auto: fp16 on CUDA, bf16 on a CPU with native bfloat16, else fp32 (trainer.py)
    threads: int | None = None
    gradient_clip: float = 12.0
    initial_weights: str | None = None  # .safetensors or checkpoint folder (fine-tuning)
    # True: load only the tensors of initial_weights whose name and shape match (warm start of a network with other
    # output classes, e.g. a refiner from its stage-1 segmenter); False: every tensor must match
    initial_weights_partial: bool = False
    # L2-SP (weight_anchor.py): strength of the pull back toward initial_weights, 0 = off (fine-tuning)
    anchor_strength: float = 0.0
    # Distillation from initial_weights on the patches of these (replayed) cases (replay_distillation.py): the loss
    # gains distill_weight x the mean KL(parent || network) over their voxels; 0 = off (fine-tuning)
    distill_weight: float = 0.0
    distill_ids: list[str] = field(default_factory=list)
    name: str = "run"
    progress: bool = True
    # Members other than plain 3D segmenters (docs/cascades.md). All off by default, so a config.json written
    # before these existed loads and resumes unchanged.
    label_map: list[int] | None = None  # class of KiTS labels 0..3, e.g. [0, 1, 1, 1]; None: the 4 labels
    context_slices: int | None = None  # 2.5D: k neighbours per side as channels; 2D network, patch [P, L]
    stage_input: dict[str, Any] | None = None  # a refiner (stage 2): kidneytumorseg.stage_inputs.StageInputSpec
    stage_perturbation: dict[str, Any] | None = None  # how the reference stage-1 region is perturbed; None: defaults
    median_filter: int = 0  # 0 or odd >= 3: median denoising of the input patch (kidneytumorseg.denoising)
    hard_case_class: int | None = None  # oversample patches centred on this label (e.g. 3, cyst)
    hard_case_fraction: float = 0.0  # fraction of all patches centred on hard_case_class
    deep_supervision_decay: dict[str, Any] | None = None  # {"initial": 0.33, "factor": 0.8, "every_epochs": 15}

    def __post_init__(self) -> None:
        self._check_member_settings()
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if self.plateau_metric not in PLATEAU_METRICS:
            raise ValueError(f"plateau_metric must be one of {PLATEAU_METRICS}, got {self.plateau_metric!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        for name in ("epochs", "iterations_per_epoch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.train_ids:
            raise ValueError("train_ids is empty: a run needs at least one training case.")
        overlap = sorted(set(self.train_ids) & set(self.val_ids))
        if overlap:
            raise ValueError(f"Cases {overlap[:5]} are in both the training and the validation set; a validation "
                             f"score on training cases would be meaningless.")

    def _check_distillation(self) -> None:
        from kidneytumorseg_training.replay_distillation import check_weight

        self.distill_weight = check_weight(self.distill_weight)
        self.distill_ids = [str(i) for i in self.distill_ids]
        if not self.distill_weight:
            return
        if not self.initial_weights:
            raise ValueError("distill_weight distils from initial_weights (the parent), but initial_weights is not "
                             "set; give the starting weights or set distill_weight to 0.")
        unknown = sorted(set(self.distill_ids) - set(self.train_ids))
        if not self.distill_ids or unknown:
            raise ValueError(f"distill_ids must name training cases (the replayed ones) when distill_weight is set; "
                             f"{'none given' if not self.distill_ids else f'not training cases: {unknown[:5]}'}.")

    def _check_member_settings(self) -> None:
        if self.label_map is not None:
            self.label_map = list(validate_label_map(self.label_map))
        context = self.context_slices
        if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context < 0):
            raise ValueError(f"context_slices must be null (3D) or a whole number >= 0, got {context!r}.")
        if self.stage_input is not None:
            self.stage_input = StageInputSpec.from_dict(self.stage_input).to_dict()
        if self.stage_perturbation is not None:
            from kidneytumorseg_training.stage_perturbation import StagePerturbation

            self.stage_perturbation = StagePerturbation.from_dict(self.stage_perturbation).to_dict()
        self.median_filter = check_median_size(self.median_filter)
        problems = hard_case_problems(self.hard_case_class, self.hard_case_fraction)
        if problems:
            raise ValueError("; ".join(problems) + ".")
        from kidneytumorseg_training.weight_anchor import check_strength

        self.anchor_strength = check_strength(self.anchor_strength)
        if self.anchor_strength and not self.initial_weights:
            raise ValueError("anchor_strength pulls the weights toward initial_weights, but initial_weights is not "
                             "set; give the starting weights or set anchor_strength to 0.")
        self._check_distillation()
        decay = self.deep_supervision_decay
        if decay is not None:
            if not isinstance(decay, dict) or set(decay) != set(DEEP_SUPERVISION_DECAY_KEYS):
                raise ValueError(f"deep_supervision_decay must be {{'initial': w, 'factor': f, 'every_epochs': n}}, "
                                 f"got {decay!r}.")
            if not (decay["initial"] >= 0 and 0 < decay["factor"] <= 1 and int(decay["every_epochs"]) >= 1):
                raise ValueError(f"deep_supervision_decay needs initial >= 0, 0 < factor <= 1 and every_epochs >= 1, "
                                 f"got {decay}.")

    @property
    def is_refiner(self) -> bool:
        """A second-stage member (its input is built from the image and the stage-1 region)."""
        return self.stage_input is not None

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 0.01 if self.optimizer == "sgd" else 3e-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown training settings {unknown}; known: {sorted(known)}.")
        return cls(**data)

    def save(self, run_dir: str | Path) -> Path:
        return write_text_atomic(Path(run_dir) / CONFIG_NAME, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: str | Path) -> TrainingConfig:
        path = Path(run_dir) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run folder.")
        return cls.from_dict(json.loads(path.read_text()))

    def differences(self, other: TrainingConfig) -> list[str]:
        """Settings that differ from ``other`` and would change what is trained."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k])
