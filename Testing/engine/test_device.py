"""Device selection and the out-of-memory fallback (batch 1, then CPU accumulation, then CPU)."""

from __future__ import annotations

import logging

import pytest
import torch

from kidneytumorseg import device as device_module
from kidneytumorseg.device import (
    DeviceUnavailableError,
    ExecutionPlan,
    is_out_of_memory,
    run_with_oom_fallback,
    select_device,
)
from kidneytumorseg.errors import Cancelled

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture()
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, no_accelerator):
    assert select_device("auto") == CPU
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert select_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("AUTO") == CUDA


def test_cpu_is_always_available(no_accelerator):
    assert select_device("cpu") == CPU


@pytest.mark.parametrize(("requested", "message"), [
    ("cuda", "CUDA is not available.*Use device 'auto' or 'cpu'"),
    ("mps", "MPS is not available.*Use device 'auto' or 'cpu'"),
    ("banana", "Unknown device 'banana'"),
])
def test_unavailable_devices_are_refused_with_advice(no_accelerator, requested, message):
    with pytest.raises(DeviceUnavailableError, match=message):
        select_device(requested)


def test_missing_cuda_index_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert select_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceUnavailableError, match="has 1 CUDA device"):
        select_device("cuda:3")


class _FailingPredict:
    """Raises CUDA out-of-memory the first ``failures`` times, then returns the plan it got."""

    def __init__(self, failures: int) -> None:
        self.failures, self.plans = failures, []

    def __call__(self, plan: ExecutionPlan) -> str:
        self.plans.append(plan)
        if len(self.plans) <= self.failures:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "result"


def test_no_failure_runs_once():
    predict = _FailingPredict(0)
    plan = ExecutionPlan(CUDA, batch_size=4)
    assert run_with_oom_fallback(predict, plan) == ("result", plan)
    assert len(predict.plans) == 1


@pytest.mark.parametrize(("failures", "expected"), [
    (1, ExecutionPlan(CUDA, 1, None, True)),
    (2, ExecutionPlan(CUDA, 1, CPU, True)),
    (3, ExecutionPlan(CPU, 1, CPU, False)),
])
def test_each_failure_steps_down_and_is_logged(caplog, failures, expected):
    predict = _FailingPredict(failures)
    with caplog.at_level(logging.WARNING, logger="kidneytumorseg.device"):
        result, plan = run_with_oom_fallback(predict, ExecutionPlan(CUDA, batch_size=4, half_precision=True))
    assert result == "result" and plan == expected
    assert len(predict.plans) == failures + 1
    assert len([r for r in caplog.records if "Out of memory" in r.getMessage()]) == failures


def test_batch_one_goes_straight_to_cpu_accumulation():
    predict = _FailingPredict(1)
    _, plan = run_with_oom_fallback(predict, ExecutionPlan(CUDA, batch_size=1))
    assert plan.accumulation == CPU and plan.device == CUDA


def test_out_of_memory_on_cpu_is_raised():
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_with_oom_fallback(_FailingPredict(4), ExecutionPlan(CUDA, batch_size=2))


def test_other_errors_pass_through_untouched():
    def broken(plan: ExecutionPlan) -> None:
        raise RuntimeError("shape mismatch")

    def cancelled(plan: ExecutionPlan) -> None:
        raise Cancelled("cancelled")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_with_oom_fallback(broken, ExecutionPlan(CUDA, batch_size=2))
    with pytest.raises(Cancelled):
        run_with_oom_fallback(cancelled, ExecutionPlan(CUDA, batch_size=2))


def test_mps_out_of_memory_is_recognised():
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("out of range"))
