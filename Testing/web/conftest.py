"""The web front-end's tests: its package from the checkout (``web/``) when it is not installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("kidneytumorseg_web") is None:
    sys.path.insert(0, str(REPO_ROOT / "web"))
