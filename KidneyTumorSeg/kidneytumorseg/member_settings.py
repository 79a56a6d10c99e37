"""The optional settings of a model-package member that say how its network input is built and what its
outputs mean, read and checked together with its network and patch size.

In a member's (or the package's default) ``preprocessing``:

- ``context_slices`` (int >= 0, 2D networks only; default 0): the member is 2.5D, run slice by slice with
  ``k`` neighbouring slices on each side as channels (:mod:`kidneytumorseg.slices`); its ``patch_size`` is
  in-plane ``[P, L]``.
- ``median_filter`` (0 or odd >= 3; default 0): median denoising of the input (:mod:`kidneytumorseg.denoising`).
- ``stage_input`` (object; refiners only, required there): how the refiner's input is built from the image and
  stage 1 (:mod:`kidneytumorseg.stage_inputs`).

In its ``inference``:

- ``output_labels`` (list of KiTS labels, one per output channel): see :mod:`kidneytumorseg.class_mapping`.
- ``stage_one_weight`` (number in [0, 1], or an object ``{"kidney": w, "tumor": w, "cyst": w}`` of such numbers,
  missing classes 0; refiners only; default 0): how much of stage 1's own kidney / tumor / cyst split is averaged
  into the refiner's inside the kidney region (:mod:`kidneytumorseg.refinement`, rule 3).

The network's ``in_channels`` must be ``channels x (2k + 1)``, ``channels`` being 1 for segmenters and
localizers and ``1 + len(stage_input.probability_channels)`` for refiners.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kidneytumorseg.class_mapping import validate_output_labels
from kidneytumorseg.denoising import check_median_size
from kidneytumorseg.stage_inputs import StageInputSpec

REFINER = "refiner"


@dataclass(frozen=True)
class MemberInputs:
    """What :func:`member_inputs` reads: ``context_slices`` None for 3D members."""

    context_slices: int | None
    median_filter: int
    stage_input: StageInputSpec | None
    output_labels: tuple[int, ...] | None
    stage_one_weight: tuple[float, float, float] = (0.0, 0.0, 0.0)  # kidney, tumor, cyst

    @property
    def channels(self) -> int:
        """Input channels of the network: (stage-input channels) x (slices per 2.5D input)."""
        per_slice = self.stage_input.channels if self.stage_input is not None else 1
        return per_slice * (2 * (self.context_slices or 0) + 1)


def member_inputs(role: str, network: Mapping[str, Any], patch_size: Sequence[int], preprocessing: Mapping[str, Any],
                  inference: Mapping[str, Any]) -> MemberInputs:
    """The member's input settings, checked against its network; ValueError naming the key to fix."""
    dimension = network.get("dimension", 3)
    context = preprocessing.get("context_slices")
    if dimension == 2:
        context = 0 if context is None else context
        if isinstance(context, bool) or not isinstance(context, int) or context < 0:
            raise ValueError(f"'preprocessing.context_slices' must be a whole number >= 0, got {context!r}")
        if len(patch_size) != 2:
            raise ValueError(f"a 2D (2.5D) network needs an in-plane 'patch_size' [P, L], got {list(patch_size)}")
    else:
        if context is not None:
            raise ValueError("'preprocessing.context_slices' is only for 2D networks (2.5D members); remove it or "
                             "give the member a network of dimension 2")
        if len(patch_size) != 3:
            raise ValueError(f"a 3D network needs a 'patch_size' [S, P, L], got {list(patch_size)}")
    median = check_median_size(preprocessing.get("median_filter", 0))
    stage = preprocessing.get("stage_input")
    if role == REFINER:
        if stage is None:
            raise ValueError("a refiner needs 'preprocessing.stage_input' (how its input is built from stage 1)")
        stage = StageInputSpec.from_dict(stage)
    elif stage is not None:
        raise ValueError(f"'preprocessing.stage_input' is only for refiners, not for a {role}")
    weight = _stage_one_weight(role, inference)
    labels = inference.get("output_labels")
    num_classes = network.get("num_classes")
    if labels is not None:
        labels = validate_output_labels(labels, num_classes if isinstance(num_classes, int) else None)
    inputs = MemberInputs(context, median, stage, labels, weight)
    in_channels = network.get("in_channels")
    if isinstance(in_channels, int) and in_channels != inputs.channels:
        raise ValueError(f"the network has in_channels {in_channels} but its input has {inputs.channels} channels "
                         f"((image + stage-1 channels) x (2 x context_slices + 1))")
    return inputs


_WEIGHT_CLASSES = ("kidney", "tumor", "cyst")


def _stage_one_weight(role: str, inference: Mapping[str, Any]) -> tuple[float, float, float]:
    weight = inference.get("stage_one_weight")
    if weight is None:
        return (0.0, 0.0, 0.0)
    if role != REFINER:
        raise ValueError(f"'inference.stage_one_weight' is only for refiners, not for a {role}")
    if isinstance(weight, Mapping):
        unknown = sorted(set(weight) - set(_WEIGHT_CLASSES))
        if unknown:
            raise ValueError(f"'inference.stage_one_weight' has unknown classes {unknown}; use "
                             f"{list(_WEIGHT_CLASSES)}")
        return tuple(_weight_value(weight.get(name, 0.0), f".{name}") for name in _WEIGHT_CLASSES)  # type: ignore
    value = _weight_value(weight, "")
    return (value, value, value)


def _weight_value(weight: Any, key: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"'inference.stage_one_weight{key}' must be a number from 0 (the refiner alone) to 1 "
                         f"(stage 1 alone), got {weight!r}")
    return float(weight)
