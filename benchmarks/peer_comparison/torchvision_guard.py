"""``import torchvision`` refused in this process: its compiled ops do not load against the CPU torch build."""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any


class _NoTorchvision(importlib.abc.MetaPathFinder):
    """Refuses ``import torchvision``: its compiled ops do not load against this project's CPU torch build.

    MONAI asks for it through ``optional_import`` (which reads an ImportError as "not installed"); nnunetv2
    depends on it through timm, which nothing run here imports.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            raise ImportError(f"{fullname} is blocked in this project (its compiled ops do not load against the "
                              f"CPU torch build); nothing here needs it.")
        return None


def block_torchvision() -> None:
    """Make ``import torchvision`` fail with ImportError in this process (idempotent)."""
    if not any(isinstance(finder, _NoTorchvision) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoTorchvision())
