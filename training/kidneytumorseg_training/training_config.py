"""What a training run is: every setting needed to start it, resume it or repeat it, saved as config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kidneytumorseg.atomic import write_text_atomic

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
CONFIG_NAME = "config.json"
# Settings that may differ when a run is resumed (they change how, not what, is trained).
RESUMABLE_CHANGES: frozenset[str] = frozenset({"num_workers", "device", "threads", "epochs", "progress"})


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
    loss: str = "dice_ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    deep_supervision: bool = True
    augmentation: dict[str, Any] | None = None  # None: defaults; {"enabled": false}: none
    foreground_fraction: float = 1 / 3
    seed: int = 0
    num_workers: int = 1
    device: str = "auto"
    precision: str = "auto"  # auto: fp16 autocast on CUDA, fp32 elsewhere
    threads: int | None = None
    gradient_clip: float = 12.0
    initial_weights: str | None = None  # .safetensors or checkpoint folder (fine-tuning)
    name: str = "run"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
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
