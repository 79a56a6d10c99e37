"""Fixtures of the benchmark-logic tests: benchmarks/ on sys.path (for ``equal_budget`` and the scripts) and a
tiny KiTS-layout dataset."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from kits_case import write_case  # noqa: E402


@pytest.fixture
def kits_dataset(tmp_path: Path) -> Path:
    """``tmp_path/dataset`` with case_00000 .. case_00004."""
    root = tmp_path / "dataset"
    for index in range(5):
        write_case(root / f"case_{index:05d}", index)
    return root
