"""A stage-2 refiner run (tumor and cyst inside the kidney region) set up from an existing stage-1 run.

The refiner reuses the stage-1 run's preprocessed data, split, schedule and optimiser, with the refiner settings
of docs/cascades.md: ``label_map`` [0, 0, 1, 2], the image masked to the dilated kidney region, every patch
centred on kidney, tumor or cyst. ``kidneytumorseg-train train --resume NEW_RUN`` starts it (and resumes it after
a stop); ``export`` with the stage-1 run(s) and this run writes one two-stage package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from kidneytumorseg.errors import KidneyTumorSegError
from kidneytumorseg_training.training_config import CONFIG_NAME, TrainingConfig

STAGE_INPUT = {"mask_image": True, "mask_dilation_mm": 5.0, "fill": 0.0, "probability_channels": [],
               "crop_margin_mm": 20.0}
__all__ = ["STAGE_INPUT", "refiner_config", "write_refiner_run"]


def refiner_config(stage_one: TrainingConfig, name: str, patch_size: Sequence[int] | None = None,
                   epochs: int | None = None) -> TrainingConfig:
    """``stage_one``'s run made a refiner: its topology from the plan (input channels and classes follow the
    stage input and label map), ``patch_size`` (None: the plan's) and ``epochs`` (None: stage 1's)."""
    return replace(stage_one, label_map=[0, 0, 1, 2], stage_input=dict(STAGE_INPUT), foreground_fraction=1.0,
                   network=None, patch_size=list(patch_size) if patch_size is not None else None,
                   epochs=epochs or stage_one.epochs, initial_weights=None, name=name)


def write_refiner_run(stage_one_run: Path, output: Path, patch_size: Sequence[int] | None = None,
                      epochs: int | None = None) -> Path:
    """Write ``output/config.json`` for a refiner of ``stage_one_run``; refuses a folder that holds a run."""
    if (output / CONFIG_NAME).exists():
        raise KidneyTumorSegError(f"{output} already holds a run; resume it with "
                                  f"`kidneytumorseg-train train --resume {output}` or choose a new folder.")
    if not (stage_one_run / CONFIG_NAME).is_file():
        raise KidneyTumorSegError(f"{stage_one_run} holds no {CONFIG_NAME}: give the folder of a training run.")
    config = refiner_config(TrainingConfig.load(stage_one_run), output.name, patch_size, epochs)
    output.mkdir(parents=True, exist_ok=True)
    config.save(output)
    return output / CONFIG_NAME
