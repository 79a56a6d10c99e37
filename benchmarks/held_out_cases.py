"""What the held-out-case benchmarks share: the dataset, case-list and model arguments, and reading them.

Used by benchmarks/evaluate_model.py, precision_agreement.py and cascade_vs_full.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from equal_budget.cases import read_case_ids

from kidneytumorseg.model_package import ModelPackage
from kidneytumorseg.model_store import ModelStore


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """``dataset``, ``--cases-file``, ``--limit``, ``--model``, ``--quality`` and ``--threads``."""
    parser.add_argument("dataset", type=Path, help="KiTS layout: case_XXXXX/imaging.nii.gz + segmentation.nii.gz")
    parser.add_argument("--cases-file", type=Path, help="case ids, comma- or line-separated (default: every case)")
    parser.add_argument("--limit", type=int, help="only the first N of those cases")
    parser.add_argument("--model", default="kits-demo", help="NAME[@VERSION] in the store, or a package folder")
    parser.add_argument("--quality", default="default", choices=["fast", "default", "best"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")


def read_cases(dataset: Path, cases_file: Path | None, limit: int | None) -> list[str]:
    """The case ids of ``cases_file`` (default: every case folder with an image), the first ``limit`` of them."""
    if cases_file:
        return read_case_ids(cases_file, limit)
    cases = sorted(p.name for p in dataset.glob("case_*") if (p / "imaging.nii.gz").is_file())
    return cases[:limit] if limit else cases


def load_package(model: str) -> ModelPackage:
    """A package folder, or NAME[@VERSION] from the default store."""
    return ModelPackage.load(model) if Path(model).is_dir() else ModelStore.default().resolve(model)
