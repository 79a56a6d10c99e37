"""How fine-tuning scores the old and the new members on held-out cases: as the engine's default quality
segments (the package's localizer for the coarse-to-fine mode, no mirroring, float32) and, for a two-stage
package, through its refiners too (:mod:`kidneytumorseg.refinement`), which fine-tuning keeps as they are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from kidneytumorseg.model_package import MemberSpec, ModelPackage
from kidneytumorseg.postprocessing import PostprocessingSettings
from kidneytumorseg.predictor import PredictionOptions, Predictor, cascade_settings, settings_for
from kidneytumorseg.refinement import RefinementSettings
from kidneytumorseg_training.datasets import TrainingCase
from kidneytumorseg_training.finetune_report import summarize_metrics
from kidneytumorseg_training.validation import validate_cases, write_validation_report


def stage_two(package: ModelPackage, device: str) -> tuple[list[torch.nn.Module], RefinementSettings | None]:
    """The package's refiners (all of them, as the default quality runs them) and their settings; ``([], None)``
    for a one-stage package."""
    if not package.refiners:
        return [], None
    predictor = Predictor(package, PredictionOptions(device=device, precision="fp32", cascade=False))
    return predictor.refiners, predictor.refinement


def evaluate_members(networks: Sequence[torch.nn.Module], member: MemberSpec, package: ModelPackage,
                     cases: Sequence[TrainingCase], device: str, folder: Path,
                     localizer: torch.nn.Module | None = None, refiners: Sequence[torch.nn.Module] = (),
                     refinement: RefinementSettings | None = None) -> dict[str, Any]:
    """Held-out metrics of the segmenters ``networks`` (settings of ``member``), with the package's ``localizer``
    (built once by the caller) and its ``refiners`` when given; the per-case report is written to ``folder``."""
    cascade = cascade_settings(package.localizer, device) if localizer is not None else None
    result = validate_cases(networks, settings_for(member, device=device, mirror_axes=()),
                            [(c.case_id, c.image, c.label) for c in cases],
                            postprocessing=PostprocessingSettings.from_dict(package.postprocessing), progress=False,
                            localizer=localizer, cascade=cascade, refiners=refiners, refinement=refinement)
    write_validation_report(result, folder)
    return summarize_metrics(result)
