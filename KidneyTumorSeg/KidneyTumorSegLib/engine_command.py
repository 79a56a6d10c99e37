"""How to launch the engine: which Python, which module, which environment.

Inside Slicer the engine runs with ``PythonSlicer`` (Slicer's own Python, where the PyTorch extension
installed torch); elsewhere with the current interpreter. The module folder goes first on ``PYTHONPATH`` so
that the bundled ``kidneytumorseg`` package is the one that runs, and the model store folder is passed
through ``KIDNEYTUMORSEG_MODELS_DIR`` so that the worker sees exactly the caller's store.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1]  # KidneyTumorSeg/ (holds kidneytumorseg/ and the module)
# A source checkout keeps the training package beside the module; an installed extension ships it inside.
TRAINING_DIRS = (MODULE_DIR, MODULE_DIR.parent / "training")
MODELS_DIR_ENV = "KIDNEYTUMORSEG_MODELS_DIR"


def default_python() -> str:
    """``PythonSlicer`` next to a running Slicer, else the interpreter running this code."""
    executable = Path(sys.executable)
    if executable.stem.lower().startswith("slicer"):  # Slicer's GUI executable: use its Python launcher
        candidate = shutil.which("PythonSlicer", path=str(executable.parent))
        if candidate:
            return candidate
    return sys.executable


@dataclass
class EngineCommand:
    """Builds the argument lists and environment of engine runs (no shell strings, ever)."""

    python: str = field(default_factory=default_python)
    models_dir: Path | None = None  # the user model store folder; None: the engine's default
    extra_env: Mapping[str, str] = field(default_factory=dict)
    threads: int | None = None  # torch threads of the worker; None: all cores

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        paths = [str(d) for d in TRAINING_DIRS if d.is_dir()] + inherited
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env["PYTHONUNBUFFERED"] = "1"
        if self.models_dir is not None:
            env[MODELS_DIR_ENV] = str(self.models_dir)
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.threads)
        env.update(self.extra_env)
        return env

    def predict(self, image: Path, output: Path, model: str, device: str = "auto",
                quality: str = "default", extra: Sequence[str] = ()) -> list[str]:
        """``kidneytumorseg predict`` of one CT file to one label map, speaking JSON lines."""
        return [self.python, "-m", "kidneytumorseg.cli.main", "predict", "-i", str(image), "-o", str(output),
                "--model", model, "--device", device, "--quality", quality, "--progress", "json", *extra]

    def finetune(self, model: str, corrections: Path, work_dir: Path, device: str = "auto",
                 extra: Sequence[str] = ()) -> list[str]:
        """``kidneytumorseg-train finetune`` of a package on a corrections folder, speaking JSON lines."""
        argv = [self.python, "-m", "kidneytumorseg_training.cli.main", "finetune", "--model", model,
                "--corrections", str(corrections), "--work-dir", str(work_dir), "--device", device,
                "--progress", "json"]
        if self.models_dir is not None:
            argv += ["--store-dir", str(self.models_dir)]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        return argv + list(extra)
