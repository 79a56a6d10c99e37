"""Training patches for members other than plain 3D segmenters, built with the engine's own functions so that
what a member is trained on is what it is run on:

- ``median_filter``: the image patch (cut with a margin) is median-filtered (:mod:`kidneytumorseg.denoising`);
- ``stage_input`` (a refiner): after augmentation, the stage-1 region and probability channels come from the
  patch's reference labels, randomly perturbed (:mod:`kidneytumorseg_training.stage_perturbation`), and the
  network input is :func:`kidneytumorseg.stage_inputs.build_stage_input` of them;
- ``context_slices`` k (2.5D): patches of ``2k + 1`` slices are sampled, augmented as thin 3D slabs (in-plane
  rotation and scaling only), then turned into channels by :func:`kidneytumorseg.slices.centre_slab`; the
  label is the centre slice's;
- ``label_map``: the KiTS labels become the member's classes (:mod:`kidneytumorseg.class_mapping`).

:func:`patch_dataset` returns the plain :class:`~kidneytumorseg_training.sampling.PatchDataset` when none of
these is on, so such runs are exactly as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kidneytumorseg.class_mapping import apply_label_map
from kidneytumorseg.denoising import median_denoise
from kidneytumorseg.slices import centre_slab
from kidneytumorseg.stage_inputs import StageInputSpec, build_stage_input
from kidneytumorseg_training.sampling import PatchDataset, crop_with_padding
from kidneytumorseg_training.stage_perturbation import StagePerturbation, stage_one_from_labels
from kidneytumorseg_training.training_config import TrainingConfig

LOGGER = logging.getLogger(__name__)
_PERTURBATION_STREAM = 7919


def uses_member_patches(config: TrainingConfig) -> bool:
    """Whether the run needs :class:`MemberPatchDataset` (any member setting on)."""
    return bool(config.label_map is not None or config.context_slices is not None or config.stage_input is not None
                or config.median_filter)


def member_patch_size(config: TrainingConfig, plans: Mapping[str, Any]) -> list[int]:
    """The network's patch: the config's or the plan's; in-plane ``[P, L]`` for 2.5D members."""
    patch = list(config.patch_size or plans["patch_size"])
    if config.context_slices is not None:
        patch = patch[-2:]
    return [int(p) for p in patch]


def sampling_patch_size(config: TrainingConfig, patch_size: Sequence[int]) -> list[int]:
    """The 3D patch cut from a case: ``[2k + 1, P, L]`` for 2.5D members, else the network's patch."""
    if config.context_slices is not None:
        return [2 * config.context_slices + 1, *patch_size[-2:]]
    return list(patch_size)


def member_network(config: TrainingConfig, network: Mapping[str, Any]) -> dict[str, Any]:
    """``network`` with the input channels and classes the member's settings imply (a 2D network for 2.5D)."""
    network = dict(network)
    context = config.context_slices
    if context is not None and network.get("dimension") != 2:
        raise ValueError("A 2.5D run (context_slices set) needs a 2D network in TrainingConfig.network, e.g. "
                         "kidneytumorseg.networks.plan_network(patch_PL, spacing_PL, dimension=2).to_dict().")
    if context is None and network.get("dimension", 3) != 3:
        raise ValueError("A 2D network trains only as a 2.5D member: set context_slices (0 for plain 2D).")
    per_slice = StageInputSpec.from_dict(config.stage_input).channels if config.stage_input is not None else 1
    channels = per_slice * (2 * (context or 0) + 1)
    classes = max(config.label_map) + 1 if config.label_map is not None else network.get("num_classes", 4)
    for key, value in (("in_channels", channels), ("num_classes", classes)):
        if network.get(key) != value:
            LOGGER.info("network %s set to %d for this member's input and classes", key, value)
            network[key] = value
    return network


class MemberPatchDataset(PatchDataset):
    """:class:`PatchDataset` whose items are built as the module docstring says. ``patch_size`` is the 3D patch
    cut from a case (``[2k + 1, P, L]`` for 2.5D); ``spacing`` the preprocessed spacing (for mm settings)."""

    def __init__(self, folder: str | Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int,
                 *, spacing: Sequence[float], context_slices: int | None = None,
                 stage_input: Mapping[str, Any] | None = None, perturbation: Mapping[str, Any] | None = None,
                 median_filter: int = 0, label_map: Sequence[int] | None = None, **options: Any) -> None:
        super().__init__(folder, case_ids, patch_size, batch_size, **options)
        self.spacing = [float(s) for s in spacing]
        self.context_slices = context_slices
        if context_slices is not None and self.patch_size[0] != 2 * context_slices + 1:
            raise ValueError(f"a 2.5D patch with context {context_slices} has {2 * context_slices + 1} slices, "
                             f"got patch {list(self.patch_size)}.")
        self.stage_input = StageInputSpec.from_dict(stage_input) if stage_input is not None else None
        self.perturbation = StagePerturbation.from_dict(perturbation)
        self.median_filter = int(median_filter)
        self.label_map = list(label_map) if label_map is not None else None

    def _image(self, volume: np.ndarray, starts: Sequence[int], fill: float) -> np.ndarray:
        margin = self.median_filter // 2
        if not margin:
            return crop_with_padding(volume, starts, self.patch_size, fill)
        wide = crop_with_padding(volume, [s - margin for s in starts], [p + 2 * margin for p in self.patch_size],
                                 fill)
        inner = tuple(slice(margin, margin + p) for p in self.patch_size)
        return median_denoise(wide, self.median_filter)[inner]

    def __getitem__(self, index: int) -> dict[str, Any]:
        choice = self.choose(index)
        case = next(c for c in self.cases if c.case_id == choice.case_id)
        volume = case.image()
        image = self._image(volume, choice.starts, self._fill(case, volume))[None].astype(np.float32, copy=False)
        label = crop_with_padding(case.label(), choice.starts, self.patch_size, 0)
        if self.augment is not None:
            image, label = self.augment(image, label, choice.augmentation_seed)
        if self.stage_input is not None:
            rng = np.random.default_rng([choice.augmentation_seed, _PERTURBATION_STREAM])
            region, priors = stage_one_from_labels(label, self.stage_input, self.perturbation, self.spacing, rng)
            image = build_stage_input(image[0], region, priors, self.stage_input, self.spacing)
        if self.context_slices is not None:
            image = centre_slab(image, self.context_slices)
            label = label[self.context_slices]
        label = apply_label_map(np.asarray(label), self.label_map)
        return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)),
                "foreground_class": -1 if choice.foreground_class is None else choice.foreground_class,
                "case_id": choice.case_id}


def patch_dataset(config: TrainingConfig, plans: Mapping[str, Any], case_ids: Sequence[str],
                  patch_size: Sequence[int], batch_size: int, **options: Any) -> PatchDataset:
    """The training or validation dataset of a run (``options`` as :class:`PatchDataset` takes them)."""
    if config.hard_case_fraction:
        options.setdefault("hard_case_class", config.hard_case_class)
        options.setdefault("hard_case_fraction", config.hard_case_fraction)
    sampled = sampling_patch_size(config, patch_size)
    if not uses_member_patches(config):
        return PatchDataset(config.preprocessed, case_ids, sampled, batch_size, **options)
    return MemberPatchDataset(config.preprocessed, case_ids, sampled, batch_size, spacing=plans["target_spacing"],
                              context_slices=config.context_slices, stage_input=config.stage_input,
                              perturbation=config.stage_perturbation, median_filter=config.median_filter,
                              label_map=config.label_map, **options)
