"""Choosing float32 or half precision: the CPU's bfloat16 flags, the ``auto`` rule per device, bad names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kidneytumorseg.precision import (
    PrecisionError,
    autocast_context,
    check_precision,
    cpu_flags,
    half_dtype,
    use_half_precision,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")
MPS = torch.device("mps")


def test_cpu_flags_are_read_from_the_first_flags_line(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu\n", encoding="utf-8")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(("requested", "device", "native_bf16", "expected"), [
    ("auto", CPU, True, True),
    ("auto", CPU, False, False),
    ("auto", CUDA, False, True),
    ("auto", MPS, True, False),
    ("fp32", CPU, True, False),
    ("fp32", CUDA, True, False),
    ("half", CPU, False, True),   # asked for explicitly: bfloat16 even where it is emulated
    ("half", CUDA, False, True),
    ("half", MPS, True, False),   # no half-precision autocast there: float32
])
def test_auto_uses_half_precision_only_where_the_hardware_has_it(requested, device, native_bf16, expected):
    assert use_half_precision(requested, device, native_bf16=native_bf16) is expected


def test_an_unknown_precision_names_the_choices():
    assert check_precision(" FP32 ") == "fp32"
    with pytest.raises(PrecisionError, match="auto, fp32, half"):
        check_precision("double")


def test_half_precision_is_float16_on_cuda_and_bfloat16_on_cpu():
    assert half_dtype(CUDA) == torch.float16
    assert half_dtype(CPU) == torch.bfloat16
    assert half_dtype(MPS) is None
    conv = torch.nn.Conv3d(1, 2, 3)
    with autocast_context(CPU, True):
        assert conv(torch.ones(1, 1, 4, 4, 4)).dtype == torch.bfloat16
    with autocast_context(CPU, False):
        assert conv(torch.ones(1, 1, 4, 4, 4)).dtype == torch.float32
