"""Training patches from a preprocessed dataset, with foreground oversampling.

Every patch is a pure function of ``(seed, rank, sample index)``: which case, whether it is centred on a
foreground class, which class, which voxel and the augmentation seed are all drawn from a generator keyed
by those numbers. The data loader's worker count and the moment a run is resumed therefore change nothing,
which is what makes CPU runs reproducible.

Oversampling: in every batch of ``B`` patches the first ``ceil(B * foreground_fraction)`` are centred on a
foreground voxel (the rest anywhere). The class is drawn uniformly among the classes the case contains, not
by voxel count, so small tumors and cysts are sampled as often as kidneys (nnU-Net draws classes the same
way).

Hard-case resampling (KiTS19 two-stage, seed 002, "resampling the difficult samples", there cysts that look
like tumors): with ``hard_case_class`` c and ``hard_case_fraction`` f, each sample is, with probability f (drawn
from its own generator, so the other samples stay exactly as without it), centred on a voxel of class c of
a case chosen among the cases that contain c.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.planning import PLANS_NAME
from kidneytumorseg_training.preprocessing import case_files, is_case_complete

LOGGER = logging.getLogger(__name__)
FOREGROUND_CLASSES: tuple[int, ...] = (1, 2, 3)
_HARD_CASE_STREAM = 104729  # a fourth seed word: the hard-case draw has a generator of its own


@dataclass(frozen=True)
class PreprocessedCase:
    """One case of a preprocessed folder: file stems and the per-class voxel locations."""

    case_id: str
    folder: Path
    locations: Mapping[int, np.ndarray]

    def image(self) -> np.ndarray:
        return np.load(case_files(self.folder, self.case_id)["image"], mmap_mode="r", allow_pickle=False)

    def label(self) -> np.ndarray:
        return np.load(case_files(self.folder, self.case_id)["label"], mmap_mode="r", allow_pickle=False)

    @property
    def classes(self) -> tuple[int, ...]:
        return tuple(c for c in FOREGROUND_CLASSES if len(self.locations.get(c, ())) > 0)


def complete_case_ids(folder: str | Path) -> list[str]:
    """Ids of the finished cases in a preprocessed folder (all their files there; the JSON is written last)."""
    ids = (p.name[: -len(".json")] for p in Path(folder).glob("*.json") if p.name != PLANS_NAME)
    return sorted(case_id for case_id in ids if is_case_complete(folder, case_id))


def load_case(folder: str | Path, case_id: str) -> PreprocessedCase:
    """Open one preprocessed case; a missing or half-written case raises with the case named."""
    folder = Path(folder)
    files = case_files(folder, case_id)
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise KidneyTumorSegError(
            f"Preprocessed case {case_id!r} in {folder} is incomplete (missing {missing}); run "
            f"`kidneytumorseg-train preprocess` again, it redoes unfinished cases.")
    with np.load(files["locations"], allow_pickle=False) as data:
        locations = {c: np.asarray(data[f"class_{c}"], dtype=np.int64).reshape(-1, 3)
                     for c in FOREGROUND_CLASSES if f"class_{c}" in data.files}
    return PreprocessedCase(case_id, folder, locations)


def _patch_box(shape: Sequence[int], patch_size: Sequence[int], centre: Sequence[int]) -> list[int]:
    """Start index per axis of a patch centred on ``centre``; may be negative or run past the end (padded)."""
    return [int(c) - p // 2 for c, p in zip(centre, patch_size, strict=True)]


def crop_with_padding(array: np.ndarray, starts: Sequence[int], patch_size: Sequence[int],
                      fill: float) -> np.ndarray:
    """``array[starts : starts + patch_size]`` with ``fill`` where the box leaves the array."""
    out = np.full(tuple(patch_size), fill, dtype=array.dtype)
    source, target = [], []
    for start, size, extent in zip(starts, patch_size, array.shape, strict=True):
        lo, hi = max(start, 0), min(start + size, extent)
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[tuple(target)] = array[tuple(source)]
    return out


@dataclass(frozen=True)
class PatchChoice:
    """What one sample is: the case, the patch's start voxel and the augmentation seed."""

    case_id: str
    starts: tuple[int, int, int]
    foreground_class: int | None
    augmentation_seed: int


class PatchDataset(torch.utils.data.Dataset):
    """Map-style dataset: item ``i`` is sample ``i`` of the run (sample index = step * batch + position).

    ``augment``: ``callable(image (1,S,P,L), label (S,P,L), seed) -> (image, label)`` or None.
    """

    def __init__(self, folder: str | Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int,
                 *, seed: int = 0, rank: int = 0, foreground_fraction: float = 1 / 3,
                 augment: Any = None, length: int = 10**9, hard_case_class: int | None = None,
                 hard_case_fraction: float = 0.0) -> None:
        if not case_ids:
            raise KidneyTumorSegError(f"No training cases to sample from in {folder}; preprocess a dataset first.")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}.")
        self.folder = Path(folder)
        self.cases = [load_case(self.folder, case_id) for case_id in case_ids]
        self.patch_size = tuple(int(p) for p in patch_size)
        self.batch_size = int(batch_size)
        self.seed, self.rank = int(seed), int(rank)
        self.foreground_per_batch = math.ceil(self.batch_size * foreground_fraction)
        self.augment = augment
        self.length = int(length)
        self._shapes = {case.case_id: json.loads(case_files(self.folder, case.case_id)["record"].read_text())["shape"]
                        for case in self.cases}
        self._fills: dict[str, float] = {}
        if not 0.0 <= hard_case_fraction <= 1.0:
            raise ValueError(f"hard_case_fraction must be in [0, 1], got {hard_case_fraction}.")
        self.hard_case_class, self.hard_case_fraction = hard_case_class, float(hard_case_fraction)
        self._hard_cases = [case for case in self.cases if hard_case_class in case.classes] \
            if hard_case_class is not None and hard_case_fraction > 0 else []
        if hard_case_class is not None and hard_case_fraction > 0 and not self._hard_cases:
            LOGGER.warning("No case in %s holds class %s: hard-case resampling does nothing.", folder, hard_case_class)

    def __len__(self) -> int:
        return self.length

    def _is_hard(self, index: int) -> bool:
        if not self._hard_cases:
            return False
        return bool(np.random.default_rng([self.seed, self.rank, int(index), _HARD_CASE_STREAM]).random()
                    < self.hard_case_fraction)

    def choose(self, index: int) -> PatchChoice:
        """The deterministic choice of sample ``index``."""
        rng = np.random.default_rng([self.seed, self.rank, int(index)])
        hard = self._is_hard(index)
        pool = self._hard_cases if hard else self.cases
        case = pool[int(rng.integers(len(pool)))]
        shape = self._shapes[case.case_id]
        foreground = (index % self.batch_size) < self.foreground_per_batch and case.classes
        chosen_class = None
        if hard:
            chosen_class = int(self.hard_case_class)  # type: ignore[arg-type]
            voxels = case.locations[chosen_class]
            centre = voxels[int(rng.integers(len(voxels)))]
        elif foreground:
            chosen_class = int(case.classes[int(rng.integers(len(case.classes)))])
            voxels = case.locations[chosen_class]
            centre = voxels[int(rng.integers(len(voxels)))]
        else:
            centre = [int(rng.integers(0, max(n, 1))) for n in shape]
        starts = _patch_box(shape, self.patch_size, centre)
        # Keep the patch inside the volume where the volume is larger than the patch (no needless padding).
        starts = [min(max(s, 0), max(n - p, 0)) if n >= p else (n - p) // 2
                  for s, n, p in zip(starts, shape, self.patch_size, strict=True)]
        return PatchChoice(case.case_id, tuple(starts), chosen_class, int(rng.integers(2**31 - 1)))

    def _fill(self, case: PreprocessedCase, image: np.ndarray) -> float:
        """Padding value: the case's minimum (air after normalisation), measured once per case."""
        if case.case_id not in self._fills:
            self._fills[case.case_id] = float(np.min(image))
        return self._fills[case.case_id]

    def __getitem__(self, index: int) -> dict[str, Any]:
        choice = self.choose(index)
        case = next(c for c in self.cases if c.case_id == choice.case_id)
        image_volume = case.image()
        image = crop_with_padding(image_volume, choice.starts, self.patch_size, self._fill(case, image_volume))
        label = crop_with_padding(case.label(), choice.starts, self.patch_size, 0)
        image = image[None].astype(np.float32, copy=False)
        if self.augment is not None:
            image, label = self.augment(image, label, choice.augmentation_seed)
        return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)),
                "foreground_class": -1 if choice.foreground_class is None else choice.foreground_class,
                "case_id": choice.case_id}


class BatchIndices(torch.utils.data.Sampler):
    """Batches of consecutive sample indices for steps ``first_step .. first_step + steps - 1``."""

    def __init__(self, first_step: int, steps: int, batch_size: int) -> None:
        self.first_step, self.steps, self.batch_size = int(first_step), int(steps), int(batch_size)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for step in range(self.first_step, self.first_step + self.steps):
            yield list(range(step * self.batch_size, (step + 1) * self.batch_size))
