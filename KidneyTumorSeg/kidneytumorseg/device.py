"""Which device to compute on, and running a prediction so that running out of GPU memory degrades
gracefully instead of failing.

On a CUDA out-of-memory error :func:`run_with_oom_fallback` retries, logging each step, with
1. one tile per batch, then 2. the accumulation buffers on the CPU, then 3. everything on the CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import torch

from kidneytumorseg.errors import KidneyTumorSegError

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cuda", "mps", "cpu")


class DeviceUnavailableError(KidneyTumorSegError, ValueError):
    """The requested compute device does not exist on this machine."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(requested: str = "auto") -> torch.device:
    """The device to compute on: ``auto`` picks CUDA, then Apple MPS, then CPU; others must exist."""
    name = str(requested).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceUnavailableError(
            f"Unknown device {requested!r}; use one of {list(DEVICE_CHOICES)} (or e.g. 'cuda:1')."
        ) from error
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"Device {requested!r} was requested but CUDA is not available (no NVIDIA GPU, no driver, or a "
                f"CPU-only PyTorch). Use device 'auto' or 'cpu', or install a CUDA build of PyTorch."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"Device {requested!r} was requested but this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), numbered from 0. Pick an existing one or use 'cuda'."
            )
        return device
    if device.type == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(
                f"Device {requested!r} was requested but Apple MPS is not available (it needs an Apple-silicon "
                f"Mac and a recent PyTorch). Use device 'auto' or 'cpu'."
            )
        return device
    raise DeviceUnavailableError(f"Device {requested!r} is not supported; use one of {list(DEVICE_CHOICES)}.")


@dataclass(frozen=True)
class ExecutionPlan:
    """Where and how a prediction runs."""

    device: torch.device
    batch_size: int = 1
    accumulation_device: torch.device | None = None  # None: the compute device
    half_precision: bool = False

    @property
    def accumulation(self) -> torch.device:
        """The device holding the accumulation buffers."""
        return self.device if self.accumulation_device is None else self.accumulation_device


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an accelerator running out of memory (CUDA, or MPS's RuntimeError)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower() and "mps" in str(error).lower()


def next_plan(plan: ExecutionPlan) -> ExecutionPlan | None:
    """The next, less memory-hungry plan after an out-of-memory error, or None when on the CPU already."""
    if plan.batch_size > 1:
        return replace(plan, batch_size=1)
    if plan.accumulation.type != "cpu":
        return replace(plan, accumulation_device=torch.device("cpu"))
    if plan.device.type != "cpu":
        return replace(plan, device=torch.device("cpu"), accumulation_device=torch.device("cpu"),
                       half_precision=False)
    return None


def _release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if _mps_available() and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def run_with_oom_fallback(predict: Callable[[ExecutionPlan], T], plan: ExecutionPlan) -> tuple[T, ExecutionPlan]:
    """Run ``predict(plan)``; on an out-of-memory error retry with :func:`next_plan` until it fits.

    Returns the result and the plan that worked (reuse it for the next members of an ensemble).
    """
    while True:
        try:
            return predict(plan), plan
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            fallback = next_plan(plan)
            if fallback is None:
                raise
            logger.warning(
                "Out of memory on %s (batch %d, accumulating on %s); retrying with batch %d, accumulating on "
                "%s, computing on %s.", plan.device, plan.batch_size, plan.accumulation, fallback.batch_size,
                fallback.accumulation, fallback.device,
            )
            _release_cached_memory()
            plan = fallback
