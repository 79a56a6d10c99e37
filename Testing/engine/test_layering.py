"""The layering of DESIGN.md: the engine imports neither slicer nor Qt; the training package is importable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "KidneyTumorSeg" / "kidneytumorseg"
FORBIDDEN = ("slicer", "qt", "ctk", "vtk", "PythonQt", "KidneyTumorSegLib", "kidneytumorseg_training")


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_engine_source_never_imports_slicer_qt_or_upper_layers():
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported_roots(path) & set(FORBIDDEN))
        for path in ENGINE.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"engine files import upper layers or Slicer/Qt: {offenders}"


def test_engine_and_training_import_in_a_clean_interpreter_without_slicer():
    # MONAI tries an optional ``import torchvision.models`` when its metrics load; where torchvision is
    # installed (the ``peers`` extra) that import fails against the CPU torch and MONAI carries on, leaving
    # some torchvision submodules half-imported. What must never happen is torchvision being imported.
    code = (
        "import sys, kidneytumorseg, kidneytumorseg.image_io, kidneytumorseg.metrics, kidneytumorseg.evaluation, "
        "kidneytumorseg_training, kidneytumorseg_training.synthetic.generator; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('slicer', 'qt', 'ctk', 'PythonQt')]; "
        "bad += ['torchvision'] if 'torchvision' in sys.modules else []; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
