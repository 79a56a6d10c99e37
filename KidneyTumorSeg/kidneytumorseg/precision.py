"""Which arithmetic the networks run in: float32, or half precision where the hardware does it natively.

``half`` means float16 autocast on CUDA and bfloat16 autocast on a CPU. Softmax, blending and the sums of the
sliding window stay float32 either way; only the network's convolutions and norms run in half precision.

``auto`` (the default of the predictor and the ``predict`` command) picks half precision where it is fast and
fp32 elsewhere:

- CUDA: float16 (as nnU-Net's predictor does);
- a CPU with native bfloat16 instructions (``avx512_bf16`` or ``amx_bf16`` in Linux's /proc/cpuinfo: AMD Zen 4
  and later, Intel Cooper Lake / Sapphire Rapids and later): bfloat16, about 1.6x faster than float32 (with
  float32's channels-last oneDNN fast path, :mod:`kidneytumorseg.cpu_inference`) for a 30.8 M-parameter U-Net
  on this project's 2-core build machine (benchmarks/predictor_vs_peers.py, "half" row);
- any other CPU, and Apple MPS: float32 (bfloat16 without native instructions is emulated, and slower).

``fp32`` always computes in float32: the reference, and what the peer comparisons at identical settings use.
The agreement of the two on trained members is measured by benchmarks/precision_agreement.py.
"""

from __future__ import annotations

import functools
import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PRECISION_CHOICES: tuple[str, ...] = ("auto", "fp32", "half")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


class PrecisionError(ValueError):
    """An unknown precision was asked for."""


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo does not exist or cannot be read)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (so bfloat16 autocast is faster than float32)."""
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def check_precision(requested: str) -> str:
    """``requested`` normalised, or a PrecisionError naming the choices."""
    name = str(requested).strip().lower()
    if name not in PRECISION_CHOICES:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {requested!r} "
                             f"(auto: half precision where the hardware has it, fp32 elsewhere).")
    return name


def use_half_precision(requested: str, device: torch.device, native_bf16: bool | None = None) -> bool:
    """Whether to run the networks in half precision on ``device`` for the ``requested`` precision.

    ``half`` on a device without a half-precision autocast (MPS) falls back to float32 with a warning.
    ``native_bf16``: whether the CPU has native bfloat16 (default: :func:`cpu_has_native_bf16`).
    """
    name = check_precision(requested)
    if name == "fp32":
        return False
    if device.type not in ("cuda", "cpu"):
        if name == "half":
            logger.warning("Half precision is not used on %s; computing in float32.", device)
        return False
    if name == "half" or device.type == "cuda":
        return True
    return cpu_has_native_bf16() if native_bf16 is None else bool(native_bf16)


def half_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of half precision on ``device``: float16 on CUDA, bfloat16 on CPU, None elsewhere."""
    return {"cuda": torch.float16, "cpu": torch.bfloat16}.get(device.type)


def autocast_context(device: torch.device, half_precision: bool) -> AbstractContextManager:
    """An autocast context for a forward pass on ``device``: half precision when asked and possible."""
    dtype = half_dtype(device) if half_precision else None
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
