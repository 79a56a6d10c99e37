"""Build a KiTS-format synthetic dataset (``case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz``)
from a folder of KiTS masks: in parallel, resumable, with a preview PNG per case."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kidneytumorseg.atomic import write_text_atomic
from kidneytumorseg.case_layout import IMAGE_NAME, LABEL_NAME
from kidneytumorseg.errors import KidneyTumorSegError, MissingInputError
from kidneytumorseg.image_io import read_label_map, write_image_atomic
from kidneytumorseg_training.synthetic.generator import generate_ct
from kidneytumorseg_training.synthetic.preview import save_preview
from kidneytumorseg_training.synthetic.resample import resample_to_spacing

logger = logging.getLogger(__name__)

MASK_NAME = LABEL_NAME  # the KiTS expert mask the CT is generated from
RECORD_NAME = "synthetic.json"  # written last: its presence marks a finished case
PREVIEW_NAME = "preview.png"
GENERATOR_VERSION = 1

KITS_NOTICE = """\
# Synthetic CT from KiTS23 masks

`segmentation.nii.gz` files are (possibly resampled) expert segmentations from the KiTS23 challenge
training set; `imaging.nii.gz` files are synthetic CT generated from them by KidneyTumorSeg
(`kidneytumorseg-train build-dataset`), not patient images.

Licence: CC BY-NC-SA 4.0 (KiTS23 data, Heller et al.). Cite: Heller N. et al., "The KiTS21 Challenge:
Automatic segmentation of kidneys, renal tumors, and renal cysts in corticomedullary-phase CT",
arXiv:2307.01984; and the KiTS23 challenge (https://kits-challenge.org/kits23/).
"""


@dataclass
class BuildReport:
    """What a dataset build did."""

    built: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def case_seed(base_seed: int, case_id: str) -> int:
    """A stable per-case seed: the same base seed and case id give the same case on any machine."""
    state = np.random.SeedSequence([base_seed, zlib.crc32(case_id.encode())]).generate_state(1)
    return int(state[0])


def find_cases(source: str | os.PathLike[str], cases: Sequence[str] | None = None) -> list[Path]:
    """The ``case_*`` folders of a KiTS-layout folder (or the named ones), each checked to hold a mask."""
    source = Path(source)
    if not source.is_dir():
        raise MissingInputError(f"{source}: no such folder. Give the folder that holds the case_XXXXX folders.")
    if cases:
        folders = [source / name for name in cases]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise MissingInputError(f"case folder(s) not found: {', '.join(missing)}. Check the case names.")
    else:
        folders = sorted(p for p in source.iterdir() if p.is_dir() and p.name.startswith("case_"))
        if not folders:
            raise MissingInputError(
                f"{source} holds no case_XXXXX folders. Expected the KiTS layout "
                f"case_XXXXX/{MASK_NAME} (e.g. ../shared/data/kits23-masks)."
            )
    without_mask = [str(f / MASK_NAME) for f in folders if not (f / MASK_NAME).is_file()]
    if without_mask:
        raise MissingInputError(f"mask file(s) missing: {', '.join(without_mask[:5])}. Each case needs {MASK_NAME}.")
    return folders


def is_complete(case_dir: Path) -> bool:
    return all((case_dir / name).is_file() for name in (IMAGE_NAME, MASK_NAME, RECORD_NAME))


def build_case(
    mask_path: Path, output_dir: Path, seed: int, spacing: tuple[float, float, float] | None, preview: bool
) -> Path:
    """Generate one case into ``output_dir`` (created), atomically; on failure nothing is left behind."""
    created = not output_dir.exists()
    started = time.perf_counter()
    try:
        mask = read_label_map(mask_path)
        if spacing is not None:
            mask = resample_to_spacing(mask, spacing, is_label=True)
        synthetic = generate_ct(mask, seed)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_image_atomic(synthetic.image, output_dir / IMAGE_NAME)
        write_image_atomic(mask, output_dir / MASK_NAME)
        if preview:
            title = f"{output_dir.name} {synthetic.phase.value}"
            save_preview(synthetic.image, mask, output_dir / PREVIEW_NAME, title=title)
        record = synthetic.description() | {
            "source_mask": str(mask_path), "spacing_lr_ap_si_mm": spacing, "generator_version": GENERATOR_VERSION,
            "size": list(mask.GetSize()), "seconds": round(time.perf_counter() - started, 2),
        }
        write_text_atomic(output_dir / RECORD_NAME, json.dumps(record, indent=2))
    except BaseException:
        if created and output_dir.exists():
            shutil.rmtree(output_dir, ignore_errors=True)
        else:
            for name in (IMAGE_NAME, MASK_NAME, PREVIEW_NAME):
                (output_dir / name).unlink(missing_ok=True)
        raise
    return output_dir


def build_dataset(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    spacing: tuple[float, float, float] | None = None,
    jobs: int = 1,
    base_seed: int = 0,
    cases: Sequence[str] | None = None,
    limit: int | None = None,
    preview: bool = True,
    progress: Callable[[float], None] | None = None,
) -> BuildReport:
    """Build (or complete) a synthetic dataset. Finished cases already in ``destination`` are kept."""
    folders = find_cases(source, cases)
    if limit is not None:
        folders = folders[:limit]
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    write_text_atomic(destination / "NOTICE.md", KITS_NOTICE)
    write_text_atomic(destination / "dataset.json", json.dumps({
        "name": "KidneyTumorSeg synthetic CT from KiTS23 masks", "source": str(Path(source).resolve()),
        "spacing_lr_ap_si_mm": spacing, "base_seed": base_seed, "generator_version": GENERATOR_VERSION,
        "labels": {"0": "background", "1": "kidney", "2": "tumor", "3": "cyst"},
    }, indent=2))
    report = BuildReport()
    todo = []
    for folder in folders:
        if is_complete(destination / folder.name):
            report.kept.append(folder.name)
        else:
            todo.append(folder)
    if report.kept:
        logger.info("keeping %d finished case(s) already in %s", len(report.kept), destination)
    bar = tqdm(total=len(todo), desc="building cases", unit="case", disable=None)
    done = 0

    def finished(name: str, error: BaseException | None) -> None:
        nonlocal done
        done += 1
        if error is None:
            report.built.append(name)
        else:
            report.failed[name] = str(error) if isinstance(error, KidneyTumorSegError) else repr(error)
            logger.error("%s failed: %s", name, report.failed[name])
        bar.update(1)
        if progress is not None:
            progress(done / max(len(todo), 1))

    arguments = [
        (folder / MASK_NAME, destination / folder.name, case_seed(base_seed, folder.name), spacing, preview)
        for folder in todo
    ]
    try:
        if jobs <= 1:
            for args in arguments:
                try:
                    build_case(*args)
                    finished(args[1].name, None)
                except (KidneyTumorSegError, ValueError, RuntimeError, OSError) as error:
                    finished(args[1].name, error)
        else:
            # Fresh interpreters, not forks: forking a process whose torch or BLAS threads are running can
            # deadlock, and the training package runs inside such processes.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                futures = {pool.submit(build_case, *args): args[1].name for args in arguments}
                for future in as_completed(futures):
                    finished(futures[future], future.exception())
    finally:
        bar.close()
    report.built.sort()
    return report
