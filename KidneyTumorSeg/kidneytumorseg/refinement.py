"""Two-stage models: the segmenters (stage 1) find the kidney region, then "refiner" members (stage 2) find
tumor and cyst inside it (KiTS19 two-stage, seed 002; TuNet's W-Net -> T-Net, seed 003).

Stage 1 runs as a one-stage model does (:func:`kidneytumorseg.predictor_core.stage_one_probabilities`, with
the localizer's cascade when there is one) and gives KiTS probabilities ``p`` on the input grid. Then:

1. Region ``R``: voxels whose stage-1 argmax is not background (kidney_and_mass), keeping only its
   ``max_kidney_components`` largest 26-connected components (the package's post-processing setting).
2. The refiners run inside the boxes around ``R``'s components (plus ``stage_input.crop_margin_mm``, plus the
   2.5D context), on the input :func:`kidneytumorseg.stage_inputs.build_stage_input` builds from the crop
   (normalised as the whole volume, resampled to the refiners' spacing) and the stage-1 region/probabilities
   resampled onto the same grid. Their mean softmax, mapped onto the KiTS labels, is ``q`` (outside the boxes
   ``q`` is background, i.e. "no mass").
3. Labels: 0 outside ``R``; inside ``R`` the largest of ``q0 + q1`` (kidney, 1), ``q2`` (tumor, 2) and ``q3``
   (cyst, 3), ties going to kidney. So the kidney region is stage 1's, tumor and cyst are stage 2's and lie
   inside it. With the refiners' ``inference.stage_one_weight`` ``w`` > 0, ``q`` is first averaged with stage
   1's own split of the region, ``s = [0, p1, p2, p3] / (1 - p0)``: ``q <- (1 - w) q + w s`` (``w`` = 0: the
   refiner alone; 1: stage 1 alone). An ensemble of two differently trained stages, as in seed 001's fold
   averaging. ``w`` may also be given per class, ``(w_kidney, w_tumor, w_cyst)``: then kidney ``q0 + q1``,
   tumor ``q2`` and cyst ``q3`` are each averaged with their own weight and the three renormalised to sum to 1
   (e.g. ``(0, 0, 1)``: tumor from the refiner, cyst from stage 1). One number ``w`` is ``(w, w, w)``.
4. Probabilities (for the hysteresis / adaptive-threshold post-processing and for callers):
   ``[p0, (1 - p0)(q0 + q1), (1 - p0) q2, (1 - p0) q3]``, i.e. P(mass) = P(kidney region) x P(mass | region).
5. The package's post-processing rules then apply to these labels and probabilities as for any model.

If stage 1 finds no kidney the refiners do not run and every voxel is background.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from kidneytumorseg.geometry import resample_to_shape
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
from kidneytumorseg.normalization import resolve_normalization
from kidneytumorseg.postprocessing import PostprocessingSettings, keep_largest_components, postprocess
from kidneytumorseg.predictor_core import CascadeSettings, Prediction, boxes_from_mask, stage_one_probabilities
from kidneytumorseg.sliding_window import CancelEvent, ProgressCallback
from kidneytumorseg.stage_inputs import StageInputSpec, build_stage_input, priors_from_probabilities

logger = logging.getLogger(__name__)
MAX_REGION_BOXES = 8


@dataclass(frozen=True)
class RefinementSettings:
    """How the refiners run: their predictor settings, their stage input, and how many components of the
    stage-1 region are kept (None or 0: all)."""

    predictor: PredictorSettings
    stage_input: StageInputSpec
    max_kidney_components: int | None = 2
    stage_one_weight: float | Sequence[float] = 0.0


def stage_one_region(kits_probabilities: np.ndarray, max_components: int | None) -> np.ndarray:
    """The stage-1 kidney region: argmax not background, its ``max_components`` largest components kept."""
    if kits_probabilities.shape[0] != 4:
        raise ValueError(f"stage-1 probabilities must have the 4 KiTS classes, got {kits_probabilities.shape[0]}; "
                         f"give the stage-1 members 'output_labels' in model.json.")
    region = np.argmax(kits_probabilities, axis=0) > 0
    if max_components:
        region = keep_largest_components(region, max_components)
    return region


def class_weights(weight: float | Sequence[float]) -> tuple[float, float, float]:
    """``stage_one_weight`` as ``(kidney, tumor, cyst)`` weights: one number applies to all three."""
    if isinstance(weight, numbers.Real):
        return (float(weight),) * 3
    values = tuple(float(value) for value in weight)
    if len(values) != 3:
        raise ValueError(f"stage_one_weight per class needs 3 numbers (kidney, tumor, cyst), got {list(weight)}")
    return values  # type: ignore[return-value]


def blend_with_stage_one(stage_one: np.ndarray, conditional: np.ndarray, weight: float | Sequence[float]
                         ) -> np.ndarray:
    """``(1 - w) q + w s`` per class, ``s`` being stage 1's split of its region, renormalised (rule 3 of the
    module docstring). The result's channel 1 holds kidney ``q0 + q1`` (channel 0 is 0)."""
    kidney_w, tumor_w, cyst_w = class_weights(weight)
    if kidney_w <= 0.0 and tumor_w <= 0.0 and cyst_w <= 0.0:
        return conditional
    foreground = np.maximum(1.0 - stage_one[0], np.float32(1e-6))
    kidney = (1.0 - kidney_w) * (conditional[0] + conditional[1]) + kidney_w * stage_one[1] / foreground
    tumor = (1.0 - tumor_w) * conditional[2] + tumor_w * stage_one[2] / foreground
    cyst = (1.0 - cyst_w) * conditional[3] + cyst_w * stage_one[3] / foreground
    total = np.maximum(kidney + tumor + cyst, np.float32(1e-6))
    return np.stack([np.zeros_like(kidney), kidney / total, tumor / total, cyst / total]).astype(np.float32)


def combine_stages(stage_one: np.ndarray, conditional: np.ndarray, region: np.ndarray,
                   stage_one_weight: float | Sequence[float] = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the two stages (rules 3 and 4 of the module docstring)."""
    conditional = blend_with_stage_one(stage_one, conditional, stage_one_weight)
    foreground = 1.0 - stage_one[0]
    rest = conditional[0] + conditional[1]
    probabilities = np.stack([stage_one[0], foreground * rest, foreground * conditional[2],
                              foreground * conditional[3]]).astype(np.float32)
    choice = (np.argmax(np.stack([rest, conditional[2], conditional[3]]), axis=0) + 1).astype(np.uint8)
    labels = np.where(region, choice, np.uint8(0)).astype(np.uint8)
    return labels, probabilities


def _region_boxes(region: np.ndarray, spacing: Sequence[float], settings: RefinementSettings) -> list:
    context = settings.predictor.context_slices or 0
    margin = settings.stage_input.crop_margin_mm + context * settings.predictor.target_spacing[0]
    return boxes_from_mask(region, spacing, region.shape, spacing, margin, MAX_REGION_BOXES)


def refine_probabilities(
    volume: np.ndarray, spacing: Sequence[float], stage_one: np.ndarray, region: np.ndarray,
    refiners: Sequence[torch.nn.Module], settings: RefinementSettings, report: Report, cancel: CancelEvent | None,
) -> np.ndarray:
    """The refiners' KiTS probabilities ``q`` on the input grid (background outside the region's boxes)."""
    conditional = np.zeros((4, *volume.shape), dtype=np.float32)
    conditional[0] = 1.0
    boxes = _region_boxes(region, spacing, settings)
    predictor = settings.predictor
    crop_settings = replace(predictor, normalization=resolve_normalization(volume, predictor.normalization))
    runner = Runner(predictor)
    for index, box in enumerate(boxes):
        check_cancel(cancel)
        part = span(report, index / len(boxes), (index + 1) / len(boxes))
        part("refining", 0.0)
        crop = np.ascontiguousarray(volume[box])
        image = prepare_input(crop, spacing, crop_settings)
        target = crop_settings.target_spacing
        region_low = resample_to_shape(region[box].astype(np.float32), spacing, image.shape, target, "linear") >= 0.5
        priors = priors_from_probabilities(stage_one[(slice(None), *box)], settings.stage_input)
        if priors:
            priors = list(resample_to_shape(np.stack(priors), spacing, image.shape, target, "linear"))
        network_input = build_stage_input(image, region_low, priors, settings.stage_input, target)
        low_res = run_members(network_input, refiners, crop_settings, span(part, 0.05, 0.95), cancel, runner)
        conditional[(slice(None), *box)] = resample_to_shape(low_res, target, crop.shape, spacing, "linear")
        part("refining", 1.0)
    return conditional


def predict_two_stage(
    volume_lps: np.ndarray,
    spacing_lps: Sequence[float],
    members: Sequence[torch.nn.Module],
    settings: PredictorSettings,
    refiners: Sequence[torch.nn.Module],
    refinement: RefinementSettings,
    postprocessing: PostprocessingSettings | None = None,
    localizer: torch.nn.Module | None = None,
    cascade: CascadeSettings | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelEvent | None = None,
) -> Prediction:
    """Segment with stage 1 (``members``, optional cascade) and stage 2 (``refiners``); see the module docstring."""
    if not refiners:
        raise ValueError("predict_two_stage needs at least one refiner network.")
    report = Progress(progress)
    stage_one, boxes = stage_one_probabilities(volume_lps, spacing_lps, members, settings, localizer, cascade,
                                               span(report, 0.0, 0.6), cancel)
    region = stage_one_region(stage_one, refinement.max_kidney_components)
    if region.any():
        conditional = refine_probabilities(volume_lps, spacing_lps, stage_one, region, refiners, refinement,
                                           span(report, 0.6, 0.95), cancel)
    else:
        logger.warning("Stage 1 found no kidney; the refiners did not run and the labels are all background.")
        conditional = np.zeros((4, *volume_lps.shape), dtype=np.float32)
        conditional[0] = 1.0
    check_cancel(cancel)
    report("post-processing", 0.95)
    labels, probabilities = combine_stages(stage_one, conditional, region, refinement.stage_one_weight)
    if postprocessing is not None:
        labels = postprocess(labels, spacing_lps, postprocessing, probabilities)
    report("done", 1.0)
    return Prediction(labels=labels, probabilities=probabilities, boxes=boxes)
