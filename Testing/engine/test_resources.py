"""Memory checks made before large work starts."""

from __future__ import annotations

import pytest

from kidneytumorseg.errors import InsufficientMemoryError
from kidneytumorseg.resources import GIB, available_memory_bytes, require_memory


def test_available_memory_is_read_on_this_machine():
    available = available_memory_bytes()
    assert available is not None and 64 * 2**20 < available < 2**50


def test_too_much_is_refused_with_the_amounts_and_the_fix():
    with pytest.raises(InsufficientMemoryError) as error:
        require_memory(10 * GIB, "doing X", "Do Y instead.", available=2 * GIB)
    message = str(error.value)
    assert "10.0 GiB" in message and "2.0 GiB" in message and "Do Y instead." in message


def test_enough_passes():
    require_memory(GIB, "doing X", "", available=2 * GIB)
