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
from kidneytumorseg_training.planning import PLANS_NAME
from kidneytumorseg_training.preprocessing import is_case_complete
from kidneytumorseg_training.training_config import CONFIG_NAME, TrainingConfig

STAGE_INPUT = {"mask_image": True, "mask_dilation_mm": 5.0, "fill": 0.0, "probability_channels": [],
               "crop_margin_mm": 20.0}
__all__ = ["STAGE_INPUT", "refiner_config", "write_refiner_run"]


def refiner_config(stage_one: TrainingConfig, name: str, patch_size: Sequence[int] | None = None,
                   epochs: int | None = None, warm_start: str | Path | None = None,
                   preprocessed: str | Path | None = None) -> TrainingConfig:
    """``stage_one``'s run made a refiner: ``patch_size`` (None: the plan's), ``epochs`` (None: stage 1's),
    ``preprocessed`` (None: stage 1's data; else a folder of the same cases at the refiner's own spacing, e.g.
    finer than stage 1's: the engine resamples each member's input to its own spacing).

    Without ``warm_start`` the topology is the plan's and the weights random. With it (stage 1's weights: a
    ``.safetensors`` file, e.g. a package member's, or a checkpoint folder) the refiner keeps stage 1's topology
    and starts from those weights wherever name and shape match; only the output heads (other classes) start
    random. Input channels and classes follow the stage input and label map either way."""
    return replace(stage_one, label_map=[0, 0, 1, 2], stage_input=dict(STAGE_INPUT), foreground_fraction=1.0,
                   network=stage_one.network if warm_start else None,
                   patch_size=list(patch_size) if patch_size is not None else None,
                   epochs=epochs or stage_one.epochs, initial_weights=str(warm_start) if warm_start else None,
                   initial_weights_partial=bool(warm_start), name=name,
                   preprocessed=str(preprocessed) if preprocessed is not None else stage_one.preprocessed)


def write_refiner_run(stage_one_run: Path, output: Path, patch_size: Sequence[int] | None = None,
                      epochs: int | None = None, warm_start: str | Path | None = None,
                      preprocessed: Path | None = None) -> Path:
    """Write ``output/config.json`` for a refiner of ``stage_one_run`` (see :func:`refiner_config`); refuses a
    folder that holds a run, and ``preprocessed`` data that lack a case of stage 1's split."""
    if (output / CONFIG_NAME).exists():
        raise KidneyTumorSegError(f"{output} already holds a run; resume it with "
                                  f"`kidneytumorseg-train train --resume {output}` or choose a new folder.")
    if not (stage_one_run / CONFIG_NAME).is_file():
        raise KidneyTumorSegError(f"{stage_one_run} holds no {CONFIG_NAME}: give the folder of a training run.")
    if warm_start is not None and not Path(warm_start).exists():
        raise KidneyTumorSegError(f"Warm-start weights {warm_start} do not exist; give stage 1's .safetensors file "
                                  f"or checkpoint folder.")
    stage_one = TrainingConfig.load(stage_one_run)
    if preprocessed is not None:
        _check_cases(Path(preprocessed), list(stage_one.train_ids) + list(stage_one.val_ids))
    config = refiner_config(stage_one, output.name, patch_size, epochs, warm_start, preprocessed)
    output.mkdir(parents=True, exist_ok=True)
    config.save(output)
    return output / CONFIG_NAME


def _check_cases(preprocessed: Path, case_ids: Sequence[str]) -> None:
    if not (preprocessed / PLANS_NAME).is_file():
        raise KidneyTumorSegError(f"{preprocessed} holds no {PLANS_NAME}: give a folder written by "
                                  f"`kidneytumorseg-train preprocess`.")
    missing = [case for case in case_ids if not is_case_complete(preprocessed, case)]
    if missing:
        raise KidneyTumorSegError(f"{preprocessed} lacks {len(missing)} case(s) of stage 1's split (e.g. "
                                  f"{missing[:3]}); preprocess them there with `kidneytumorseg-train preprocess "
                                  f"... --cases` or give stage 1's data.")
