"""The predictor on arrays: normalise, resample to the model's spacing, sliding-window every ensemble member,
average their softmax, resample back onto the exact input grid, then argmax and post-processing.

Inputs are LPS arrays ``(S, P, L)`` with spacing ``(si, ap, lr)`` (see :mod:`kidneytumorseg.geometry` for
re-orienting an image). Members are ready ``torch.nn.Module`` objects mapping ``(B, 1, S, P, L)`` to logits
``(B, num_classes, S, P, L)``.

Coarse-to-fine cascade: :func:`localize` runs a localizer at its coarse spacing and returns up to two boxes
around the kidneys (plus a margin); the segmenters then run inside the boxes only, everything outside is
background with probability 1. Per-case normalisation is resolved on the whole volume first, so a crop is
normalised exactly as the whole volume would be, and each box is segmented on a window of the whole volume's
model grid (:mod:`kidneytumorseg.model_window`, at least one tile), so it is resampled exactly as the whole
volume would be. What still differs from the whole-volume run is only where the tiles fall: the whole volume
averages every tile over a voxel, the cascade the few tiles of its window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy import ndimage

from kidneytumorseg.denoising import median_denoise
from kidneytumorseg.geometry import resample_to_shape
from kidneytumorseg.labels import BACKGROUND
from kidneytumorseg.member_runner import (
    PredictorSettings,
    Progress,
    Report,
    Runner,
    check_cancel,
    prepare_input,
    run_members,
    span,
)
from kidneytumorseg.model_window import grow_about_centre, model_window, resample_from_window, resample_into_window
from kidneytumorseg.normalization import normalize, resolve_normalization
from kidneytumorseg.postprocessing import CONNECTIVITY_26, PostprocessingSettings, postprocess
from kidneytumorseg.sliding_window import CancelEvent, ProgressCallback

logger = logging.getLogger(__name__)

Box = tuple[slice, slice, slice]
__all__ = ["Box", "CascadeSettings", "Prediction", "PredictorSettings", "localize", "merge_boxes", "predict",
           "predict_probabilities", "stage_one_probabilities", "boxes_from_mask"]


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


def _check_inputs(volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module]) -> None:
    if volume.ndim != 3:
        raise ValueError(f"The volume must be a 3D LPS array (S, P, L), got shape {volume.shape}.")
    if len(spacing) != 3:
        raise ValueError(f"The spacing must be (si, ap, lr) in mm, got {list(spacing)}.")
    if not members:
        raise ValueError("No network members given; a model needs at least one segmenter.")


def _low_res_probabilities(
    volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module],
    settings: PredictorSettings, report: Report, cancel: CancelEvent | None, runner: Runner,
) -> np.ndarray:
    """Mean softmax of the members on the prepared volume at the target spacing (KiTS labels when the
    members declare ``output_labels``)."""
    report("preprocessing", 0.0)
    low_res = prepare_input(volume, spacing, settings)
    report("preprocessing", 0.1)
    return run_members(low_res, members, settings, span(report, 0.1, 1.0), cancel, runner)


def _probabilities(
    volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module],
    settings: PredictorSettings, report: Report, cancel: CancelEvent | None, runner: Runner,
) -> np.ndarray:
    low_res = _low_res_probabilities(volume, spacing, members, settings, span(report, 0.0, 0.9), cancel, runner)
    check_cancel(cancel)
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
    report = Progress(progress)
    result = _probabilities(volume_lps, spacing_lps, members, settings, report, cancel, Runner(settings))
    report("done", 1.0)
    return result


def boxes_from_mask(
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
    low_res = _low_res_probabilities(volume, spacing, [localizer], settings, report, cancel, Runner(settings))
    foreground = (1.0 - low_res[BACKGROUND]) >= cascade.threshold
    boxes = boxes_from_mask(foreground, settings.target_spacing, volume.shape, spacing, cascade.margin_mm,
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
    report = Progress(progress)
    boxes = _localize(volume_lps, spacing_lps, localizer_member, cascade, report, cancel)
    report("done", 1.0)
    return boxes


def grow_to_tile(box: Box, tile_mm: Sequence[float], spacing: Sequence[float], shape: Sequence[int]) -> Box:
    """``box`` grown about its centre to at least one tile (``tile_mm`` per axis, as far as the volume allows).

    A box smaller than the segmenter's tile would be padded with a constant around it: the network would see
    an image it never saw in training (no body around the kidney) and label it worse than the whole-volume run
    does; grown, the tile holds the real surroundings."""
    return tuple(grow_about_centre(cut, math.ceil(size_mm / step), int(length))  # type: ignore[return-value]
                 for cut, size_mm, step, length in zip(box, tile_mm, spacing, shape, strict=True))


def _window_probabilities(
    volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module], settings: PredictorSettings,
    box: Box, report: Report, cancel: CancelEvent | None, runner: Runner,
) -> np.ndarray:
    """The members' probabilities on ``box``'s input voxels, from a window of the whole volume's model grid
    (see :mod:`kidneytumorseg.model_window`): the numbers the whole-volume run resamples there, not a crop's
    own, slightly shifted grid. The window is at least one tile, so the box is segmented with its surroundings
    (see :func:`grow_to_tile`)."""
    target = settings.target_spacing
    window = model_window(box, volume.shape, spacing, target, minimum=settings.patch_size)
    report("preprocessing", 0.0)
    crop = normalize(np.ascontiguousarray(volume[window.source]), settings.normalization)
    image = median_denoise(resample_into_window(crop, window, volume.shape, spacing, target), settings.median_filter)
    report("preprocessing", 0.1)
    low_res = run_members(image, members, settings, span(report, 0.1, 0.9), cancel, runner)
    check_cancel(cancel)
    report("resampling", 0.9)
    result = resample_from_window(low_res, window, box, volume.shape, spacing, target)
    report("resampling", 1.0)
    return result


def _probabilities_in_boxes(
    volume: np.ndarray, spacing: Sequence[float], members: Sequence[torch.nn.Module], settings: PredictorSettings,
    boxes: Sequence[Box], report: Report, cancel: CancelEvent | None,
) -> np.ndarray:
    crop_settings = replace(settings, normalization=resolve_normalization(volume, settings.normalization))
    runner = Runner(settings)
    result: np.ndarray | None = None
    for index, box in enumerate(boxes):
        part = span(report, index / len(boxes), (index + 1) / len(boxes))
        if settings.image_interpolation == "linear":
            probabilities = _window_probabilities(volume, spacing, members, crop_settings, box, part, cancel, runner)
        else:  # B-spline resampling is not local: the crop is resampled on its own grid
            tile_mm = [p * t for p, t in zip(settings.patch_size, settings.target_spacing, strict=True)]
            grown = grow_to_tile(box, tile_mm, spacing, volume.shape)  # segmented with its surroundings
            crop = np.ascontiguousarray(volume[grown])
            inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, grown, strict=True))
            probabilities = _probabilities(crop, spacing, members, crop_settings, part, cancel,
                                           runner)[(slice(None), *inner)]
        if result is None:
            result = np.zeros((probabilities.shape[0], *volume.shape), dtype=np.float32)
            result[BACKGROUND] = 1.0
        result[(slice(None), *box)] = probabilities
    return result  # type: ignore[return-value]


def stage_one_probabilities(
    volume_lps: np.ndarray, spacing_lps: Sequence[float], members: Sequence[torch.nn.Module],
    settings: PredictorSettings, localizer: torch.nn.Module | None, cascade: CascadeSettings | None,
    report: Report, cancel: CancelEvent | None,
) -> tuple[np.ndarray, list[Box]]:
    """The segmenters' mean probabilities on the input grid (inside the localizer's boxes when cascaded, with
    progress 0..1 on ``report``) and the boxes used."""
    _check_inputs(volume_lps, spacing_lps, members)
    if (localizer is None) != (cascade is None):
        raise ValueError("A cascade needs both the localizer network and its CascadeSettings; pass both or neither.")
    boxes: list[Box] = []
    segment_from = 0.0
    if localizer is not None and cascade is not None:
        boxes = _localize(volume_lps, spacing_lps, localizer, cascade, span(report, 0.0, 0.2), cancel)
        segment_from = 0.2
        if not boxes:
            logger.warning("The localizer found no kidney; segmenting the whole volume instead.")
    segment = span(report, segment_from, 1.0)
    if boxes:
        probabilities = _probabilities_in_boxes(volume_lps, spacing_lps, members, settings, boxes, segment, cancel)
    else:
        probabilities = _probabilities(volume_lps, spacing_lps, members, settings, segment, cancel,
                                       Runner(settings))
    return probabilities, boxes


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
    if it finds nothing the whole volume is segmented (logged as a warning). Two-stage models (refiners) run
    through :func:`kidneytumorseg.refinement.predict_two_stage`.
    """
    report = Progress(progress)
    probabilities, boxes = stage_one_probabilities(volume_lps, spacing_lps, members, settings, localizer, cascade,
                                                   span(report, 0.0, 0.95), cancel)
    check_cancel(cancel)
    report("post-processing", 0.95)
    labels = np.argmax(probabilities, axis=0).astype(np.uint8)
    if postprocessing is not None:
        labels = postprocess(labels, spacing_lps, postprocessing, probabilities)
    report("done", 1.0)
    return Prediction(labels=labels, probabilities=probabilities, boxes=boxes)
