"""Running the members of one model stage on a volume: their shared settings, the input they see (normalised,
resampled to their spacing, optionally median-filtered), the sliding window (3D, or slice by slice for 2.5D
members) with the out-of-memory fallback, and the average of their softmax mapped onto the KiTS labels.

:mod:`kidneytumorseg.predictor_core` (stage 1, the cascade) and :mod:`kidneytumorseg.refinement` (stage 2)
are built on these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kidneytumorseg.class_mapping import to_kits_probabilities, validate_output_labels
from kidneytumorseg.denoising import check_median_size, median_denoise
from kidneytumorseg.device import ExecutionPlan, run_with_oom_fallback, select_device
from kidneytumorseg.errors import Cancelled
from kidneytumorseg.geometry import INTERPOLATORS, resample_array
from kidneytumorseg.normalization import normalize, validate_normalization
from kidneytumorseg.slices import predict_slices
from kidneytumorseg.sliding_window import CancelEvent, ProgressCallback, sliding_window_predict

logger = logging.getLogger(__name__)

Report = Callable[[str, float], None]


def _triple(values: Sequence[Any], name: str, kind: type) -> tuple[Any, Any, Any]:
    items = tuple(values)
    if len(items) != 3 or not all(kind(v) > 0 for v in items):
        raise ValueError(f"{name} must be three positive numbers in (S, P, L) order, got {list(items)}.")
    return tuple(kind(v) for v in items)  # type: ignore[return-value]


@dataclass(frozen=True)
class PredictorSettings:
    """How one model stage (its members share these) is run.

    ``context_slices``: None for 3D members; ``k`` for 2.5D members (2D networks, ``2k + 1`` slices as
    channels), whose ``patch_size`` may then be given in-plane ``(P, L)`` (stored as ``(1, P, L)``).
    ``median_filter``: width of the median applied to the resampled input (0: none). ``output_labels``: the
    KiTS label of each network output channel (None: the outputs are the 4 KiTS labels).
    """

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
    context_slices: int | None = None
    median_filter: int = 0
    output_labels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.context_slices is not None:
            if isinstance(self.context_slices, bool) or not isinstance(self.context_slices, int) \
                    or self.context_slices < 0:
                raise ValueError(f"context_slices must be None (3D) or an integer >= 0, got {self.context_slices!r}.")
            if len(tuple(self.patch_size)) == 2:
                object.__setattr__(self, "patch_size", (1, *tuple(self.patch_size)))
            if int(tuple(self.patch_size)[0]) != 1:
                raise ValueError(f"a 2.5D member's patch_size is in-plane (P, L), got {list(self.patch_size)}.")
        object.__setattr__(self, "target_spacing", _triple(self.target_spacing, "target_spacing", float))
        object.__setattr__(self, "patch_size", _triple(self.patch_size, "patch_size", int))
        object.__setattr__(self, "normalization", validate_normalization(self.normalization))
        object.__setattr__(self, "mirror_axes", tuple(int(a) for a in self.mirror_axes))
        object.__setattr__(self, "median_filter", check_median_size(self.median_filter))
        if self.output_labels is not None:
            object.__setattr__(self, "output_labels", validate_output_labels(self.output_labels))
        if not 0.0 <= self.tile_overlap < 1.0:
            raise ValueError(f"tile_overlap must be in [0, 1), got {self.tile_overlap}; 0.5 is usual.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.image_interpolation not in INTERPOLATORS:
            raise ValueError(f"image_interpolation must be one of {sorted(INTERPOLATORS)}, "
                             f"got {self.image_interpolation!r}.")


class Progress:
    """Forwards ``(stage, fraction)`` to the user's callback, never letting the fraction go down."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback, self.last = callback, 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        self.last = min(1.0, max(self.last, float(fraction)))
        if self.callback is not None:
            self.callback(stage, self.last)


def span(report: Report, start: float, end: float) -> Report:
    """``report`` with fractions 0..1 mapped onto ``start..end``."""
    return lambda stage, fraction: report(stage, start + (end - start) * fraction)


def check_cancel(cancel: CancelEvent | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Prediction cancelled; nothing was written.")


class Runner:
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
            if settings.context_slices is not None:
                probabilities = predict_slices(
                    member, volume, settings.context_slices, settings.patch_size, settings.tile_overlap,
                    settings.mirror_axes, settings.gaussian_sigma_scale, plan.batch_size, plan.device,
                    plan.accumulation, plan.half_precision, report, cancel, stage)
            else:
                probabilities = sliding_window_predict(
                    member, volume, settings.patch_size, settings.tile_overlap, settings.mirror_axes,
                    settings.gaussian_sigma_scale, plan.batch_size, plan.device, plan.accumulation,
                    plan.half_precision, report, cancel, stage,
                )
            return probabilities.cpu().numpy()

        result, self.plan = run_with_oom_fallback(predict, self.plan)
        return result


def prepare_input(volume: np.ndarray, spacing: Sequence[float], settings: PredictorSettings) -> np.ndarray:
    """The image as the members see it: normalised, resampled to their spacing, median-filtered if asked."""
    low_res = resample_array(normalize(volume, settings.normalization), spacing, settings.target_spacing,
                             settings.image_interpolation)
    return median_denoise(low_res, settings.median_filter)


def run_members(network_input: np.ndarray, members: Sequence[torch.nn.Module], settings: PredictorSettings,
                report: Report, cancel: CancelEvent | None, runner: Runner) -> np.ndarray:
    """Mean softmax of ``members`` on a prepared input (``(S, P, L)`` or ``(C, S, P, L)``), mapped onto the
    KiTS labels when ``settings.output_labels`` says so; progress 0..1 on ``report``."""
    total: np.ndarray | None = None
    for index, member in enumerate(members):
        check_cancel(cancel)
        stage = f"member {index + 1}/{len(members)}"
        start = index / len(members)
        probabilities = runner(member, network_input, settings, span(report, start, start + 1 / len(members)),
                               cancel, stage)
        if total is not None and probabilities.shape != total.shape:
            raise ValueError(f"Member {index + 1} predicts {probabilities.shape[0]} classes but member 1 "
                             f"predicts {total.shape[0]}; the members of a model must agree.")
        total = probabilities if total is None else total + probabilities
    if total is None:
        raise ValueError("No network members given; a model needs at least one segmenter.")
    total /= len(members)
    return to_kits_probabilities(total, settings.output_labels)
