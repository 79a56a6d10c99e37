"""The predictor on arrays: normalise, resample to the model's spacing, sliding-window every ensemble member,
average their softmax, resample back onto the exact input grid, then argmax and post-processing.

Inputs are LPS arrays ``(S, P, L)`` with spacing ``(si, ap, lr)`` (see :mod:`kidneytumorseg.geometry` for
re-orienting an image). Members are ready ``torch.nn.Module`` objects mapping ``(B, 1, S, P, L)`` to logits
``(B, num_classes, S, P, L)``.

Coarse-to-fine cascade: :func:`localize` runs a localizer at its coarse spacing and returns up to two boxes
around the kidneys (plus a margin); the segmenters then run inside the boxes only, everything outside is
background with probability 1. Per-case normalisation is resolved on the whole volume first, so a crop is
normalised exactly as the whole volume would be.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from kidneytumorseg.device import ExecutionPlan, run_with_oom_fallback, select_device
from kidneytumorseg.errors import Cancelled
from kidneytumorseg.geometry import INTERPOLATORS, resample_array, resample_to_shape
from kidneytumorseg.labels import BACKGROUND
from kidneytumorseg.normalization import normalize, resolve_normalization, validate_normalization
from kidneytumorseg.postprocessing import CONNECTIVITY_26, PostprocessingSettings, postprocess
from kidneytumorseg.sliding_window import CancelEvent, ProgressCallback, sliding_window_predict

logger = logging.getLogger(__name__)

Box = tuple[slice, slice, slice]
Report = Callable[[str, float], None]


def _triple(values: Sequence[Any], name: str, kind: type) -> tuple[Any, Any, Any]:
    items = tuple(values)
    if len(items) != 3 or not all(kind(v) > 0 for v in items):
        raise ValueError(f"{name} must be three positive numbers in (S, P, L) order, got {list(items)}.")
    return tuple(kind(v) for v in items)  # type: ignore[return-value]


@dataclass(frozen=True)
class PredictorSettings:
    """How one model (its members share these) is run."""

    target_spacing: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    normalization: Mapping[str, Any]
    tile_overlap: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    gaussian_sigma_scale: float = 0.125
    batch_size: int = 1
    device: str = "auto"
    half_precision: bool = False
    accumulate_on_device: bool = True  # False: keep the sliding-window sums in CPU memory
    image_interpolation: str = "linear"  # "linear" (as training resamples) or "bspline"

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_spacing", _triple(self.target_spacing, "target_spacing", float))
        object.__setattr__(self, "patch_size", _triple(self.patch_size, "patch_size", int))
        object.__setattr__(self, "normalization", validate_normalization(self.normalization))
        object.__setattr__(self, "mirror_axes", tuple(int(a) for a in self.mirror_axes))
        if not 0.0 <= self.tile_overlap < 1.0:
            raise ValueError(f"tile_overlap must be in [0, 1), got {self.tile_overlap}; 0.5 is usual.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.image_interpolation not in INTERPOLATORS:
            raise ValueError(f"image_interpolation must be one of {sorted(INTERPOLATORS)}, "
                             f"got {self.image_interpolation!r}.")


@dataclass(frozen=True)
class CascadeSettings:
    """The localizer's settings and how its foreground becomes boxes for the segmenters."""

    localizer: PredictorSettings
    margin_mm: float = 15.0
    threshold: float = 0.5
    max_boxes: int = 2


@dataclass
class Prediction:
    """Labels (uint8, input grid), probabilities ``(num_classes, S, P, L)`` and the cascade boxes used."""

    labels: np.ndarray
    probabilities: np.ndarray
    boxes: list[Box] = field(default_factory=list)


class _Progress:
    """Forwards ``(stage, fraction)`` to the user's callback, never letting the fraction go down."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback, self.last = callback, 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        self.last = min(1.0, max(self.last, float(fraction)))
        if self.callback is not None:
            self.callback(stage, self.last)


def _span(report: Report, start: float, end: float) -> Report:
    return lambda stage, fraction: report(stage, start + (end - start) * fraction)


def _check_cancel(cancel: CancelEvent | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Prediction cancelled; nothing was written.")


def _check_inputs(volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module]) -> None:
    if volume.ndim != 3:
        raise ValueError(f"The volume must be a 3D LPS array (S, P, L), got shape {volume.shape}.")
    if len(spacing) != 3:
        raise ValueError(f"The spacing must be (si, ap, lr) in mm, got {list(spacing)}.")
    if not members:
        raise ValueError("No network members given; a model needs at least one segmenter.")


class _Runner:
    """Runs members with the out-of-memory fallback, remembering the plan that worked."""

    def __init__(self, settings: PredictorSettings) -> None:
        device = select_device(settings.device)
        accumulation = device if settings.accumulate_on_device else torch.device("cpu")
        self.plan = ExecutionPlan(device, settings.batch_size, accumulation, settings.half_precision)

    def __call__(self, member: torch.nn.Module, volume: np.ndarray, settings: PredictorSettings,
                 report: Report, cancel: CancelEvent | None, stage: str) -> np.ndarray:
        if hasattr(member, "deep_supervision"):
            member.deep_supervision = False

        def predict(plan: ExecutionPlan) -> np.ndarray:
            probabilities = sliding_window_predict(
                member, volume, settings.patch_size, settings.tile_overlap, settings.mirror_axes,
                settings.gaussian_sigma_scale, plan.batch_size, plan.device, plan.accumulation,
                plan.half_precision, report, cancel, stage,
            )
            return probabilities.cpu().numpy()

        result, self.plan = run_with_oom_fallback(predict, self.plan)
        return result


def _low_res_probabilities(
    volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module],
    settings: PredictorSettings, report: Report, cancel: CancelEvent | None, runner: _Runner,
) -> np.ndarray:
    """Mean softmax of the members on the normalised volume at the target spacing."""
    report("preprocessing", 0.0)
    low_res = resample_array(normalize(volume, settings.normalization), spacing, settings.target_spacing,
                             settings.image_interpolation)
    report("preprocessing", 0.1)
    total: np.ndarray | None = None
    for index, member in enumerate(members):
        _check_cancel(cancel)
        stage = f"member {index + 1}/{len(members)}"
        start = 0.1 + 0.9 * index / len(members)
        probabilities = runner(member, low_res, settings, _span(report, start, start + 0.9 / len(members)),
                               cancel, stage)
        if total is not None and probabilities.shape != total.shape:
            raise ValueError(f"Member {index + 1} predicts {probabilities.shape[0]} classes but member 1 "
                             f"predicts {total.shape[0]}; the members of a model must agree.")
        total = probabilities if total is None else total + probabilities
    total /= len(members)
    return total


def _probabilities(
    volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module],
    settings: PredictorSettings, report: Report, cancel: CancelEvent | None, runner: _Runner,
) -> np.ndarray:
    low_res = _low_res_probabilities(volume, spacing, members, settings, _span(report, 0.0, 0.9), cancel, runner)
    _check_cancel(cancel)
    report("resampling", 0.9)
    result = resample_to_shape(low_res, settings.target_spacing, volume.shape, spacing, "linear")
    report("resampling", 1.0)
    return result


def predict_probabilities(
    volume_lps: np.ndarray,
    spacing_lps: Sequence[float],
    members: Sequence[torch.nn.Module],
    settings: PredictorSettings,
    progress: ProgressCallback | None = None,
    cancel: CancelEvent | None = None,
) -> np.ndarray:
    """Softmax probabilities ``(num_classes, S, P, L)`` float32 on the input grid, averaged over ``members``."""
    _check_inputs(volume_lps, spacing_lps, members)
    report = _Progress(progress)
    result = _probabilities(volume_lps, spacing_lps, members, settings, report, cancel, _Runner(settings))
    report("done", 1.0)
    return result


def _boxes_from_mask(
    mask: np.ndarray, mask_spacing: Sequence[float], shape: Sequence[int], spacing: Sequence[float],
    margin_mm: float, max_boxes: int,
) -> list[Box]:
    """Boxes on the full grid around the largest components of a coarse mask (same first-voxel corner)."""
    components, found = ndimage.label(mask, structure=CONNECTIVITY_26)
    if found == 0:
        return []
    sizes = np.bincount(components.ravel())[1:]
    largest = np.argsort(-sizes, kind="stable")[:max_boxes]
    objects = ndimage.find_objects(components)
    boxes = []
    for index in largest:
        box = []
        for coarse, t, s, n in zip(objects[index], mask_spacing, spacing, shape, strict=True):
            start = math.floor((coarse.start * t - margin_mm) / s)
            stop = math.ceil((coarse.stop * t + margin_mm) / s)
            box.append(slice(max(0, start), min(int(n), stop)))
        boxes.append(tuple(box))
    return merge_boxes(boxes)  # type: ignore[arg-type]


def _overlap(a: Box, b: Box) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b, strict=True))


def merge_boxes(boxes: Sequence[Box]) -> list[Box]:
    """Boxes with every overlapping pair replaced by their bounding box, until none overlap."""
    merged = list(boxes)
    pair = next(((i, j) for i in range(len(merged)) for j in range(i + 1, len(merged))
                 if _overlap(merged[i], merged[j])), None)
    while pair is not None:
        a, b = merged[pair[0]], merged.pop(pair[1])
        merged[pair[0]] = tuple(slice(min(x.start, y.start), max(x.stop, y.stop))  # type: ignore[assignment]
                                for x, y in zip(a, b, strict=True))
        pair = next(((i, j) for i in range(len(merged)) for j in range(i + 1, len(merged))
                     if _overlap(merged[i], merged[j])), None)
    return sorted(merged, key=lambda box: tuple(s.start for s in box))


def _localize(volume: np.ndarray, spacing: Sequence[float], localizer: torch.nn.Module, cascade: CascadeSettings,
              report: Report, cancel: CancelEvent | None) -> list[Box]:
    settings = cascade.localizer
    low_res = _low_res_probabilities(volume, spacing, [localizer], settings, report, cancel, _Runner(settings))
    foreground = (1.0 - low_res[BACKGROUND]) >= cascade.threshold
    boxes = _boxes_from_mask(foreground, settings.target_spacing, volume.shape, spacing, cascade.margin_mm,
                             cascade.max_boxes)
    logger.info("Localizer found %d box(es): %s", len(boxes),
                [[(s.start, s.stop) for s in box] for box in boxes])
    report("localizing", 1.0)
    return boxes


def localize(
    volume_lps: np.ndarray,
    spacing_lps: Sequence[float],
    localizer_member: torch.nn.Module,
    localizer_settings: PredictorSettings,
    margin_mm: float = 15.0,
    threshold: float = 0.5,
    max_boxes: int = 2,
    progress: ProgressCallback | None = None,
    cancel: CancelEvent | None = None,
) -> list[Box]:
    """Boxes (slices on the input grid) around the up-to-``max_boxes`` largest foreground components."""
    _check_inputs(volume_lps, spacing_lps, [localizer_member])
    cascade = CascadeSettings(localizer_settings, margin_mm, threshold, max_boxes)
    report = _Progress(progress)
    boxes = _localize(volume_lps, spacing_lps, localizer_member, cascade, report, cancel)
    report("done", 1.0)
    return boxes


def _probabilities_in_boxes(
    volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module], settings: PredictorSettings,
    boxes: Sequence[Box], report: Report, cancel: CancelEvent | None,
) -> np.ndarray:
    crop_settings = replace(settings, normalization=resolve_normalization(volume, settings.normalization))
    runner = _Runner(settings)
    result: np.ndarray | None = None
    for index, box in enumerate(boxes):
        start, end = index / len(boxes), (index + 1) / len(boxes)
        crop = np.ascontiguousarray(volume[box])
        probabilities = _probabilities(crop, spacing, members, crop_settings, _span(report, start, end), cancel,
                                       runner)
        if result is None:
            result = np.zeros((probabilities.shape[0], *volume.shape), dtype=np.float32)
            result[BACKGROUND] = 1.0
        result[(slice(None), *box)] = probabilities
    return result  # type: ignore[return-value]


def predict(
    volume_lps: np.ndarray,
    spacing_lps: Sequence[float],
    members: Sequence[torch.nn.Module],
    settings: PredictorSettings,
    postprocessing: PostprocessingSettings | None = None,
    localizer: torch.nn.Module | None = None,
    cascade: CascadeSettings | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelEvent | None = None,
) -> Prediction:
    """Probabilities, argmax labels after ``postprocessing`` (None: none), and the boxes when cascaded.

    With a ``localizer`` (and its ``cascade`` settings) the members run inside the localizer's boxes only;
    if it finds nothing the whole volume is segmented (logged as a warning).
    """
    _check_inputs(volume_lps, spacing_lps, members)
    if (localizer is None) != (cascade is None):
        raise ValueError("A cascade needs both the localizer network and its CascadeSettings; pass both or neither.")
    report = _Progress(progress)
    boxes: list[Box] = []
    segment_from = 0.0
    if localizer is not None and cascade is not None:
        boxes = _localize(volume_lps, spacing_lps, localizer, cascade, _span(report, 0.0, 0.2), cancel)
        segment_from = 0.2
        if not boxes:
            logger.warning("The localizer found no kidney; segmenting the whole volume instead.")
    segment = _span(report, segment_from, 0.95)
    if boxes:
        probabilities = _probabilities_in_boxes(volume_lps, spacing_lps, members, settings, boxes, segment, cancel)
    else:
        probabilities = _probabilities(volume_lps, spacing_lps, members, settings, segment, cancel,
                                       _Runner(settings))
    _check_cancel(cancel)
    report("post-processing", 0.95)
    labels = np.argmax(probabilities, axis=0).astype(np.uint8)
    if postprocessing is not None:
        labels = postprocess(labels, spacing_lps, postprocessing, probabilities)
    report("done", 1.0)
    return Prediction(labels=labels, probabilities=probabilities, boxes=boxes)
