"""Fixtures shared by every part of the suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one torch thread: tiny networks and convolutions run far slower with two
    threads on a busy 2-core machine (and leave the other core to whatever else runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
