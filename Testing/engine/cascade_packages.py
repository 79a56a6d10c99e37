"""Random-weight two-stage model packages for the engine tests: a KiTS19 two-stage one (3D residual kidney-region
network, then a 2.5D refiner with SE blocks, attention gates, hybrid dilations and image injection on the
kidney-masked image) and a TuNet one (localizer, W-Net kidney-region network, T-Net refiner with the W-Net
probability as a second input channel, median denoising, adaptive-threshold post-processing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from kidneytumorseg.model_package import write_package
from kidneytumorseg.networks import build_network, plan_network

HU = {"scheme": "clip_zscore", "clip": [-79, 304], "mean": 101.0, "std": 76.9}
INFERENCE = {"tile_overlap": 0.25, "mirror_axes": [0, 1, 2]}
POSTPROCESSING = {"max_kidney_components": 2, "remove_masses_not_touching_kidney": True, "min_component_ml": 0.0,
                  "hysteresis": None}


def _weights(network: dict, seed: int, foreground_bias: float = 0.0) -> dict[str, torch.Tensor]:
    """Random weights; ``foreground_bias`` shifts the full-resolution head towards class 1 (a stage-1 region
    that is neither empty nor everything)."""
    torch.manual_seed(seed)
    state = build_network(network).state_dict()
    if foreground_bias:
        state["heads.0.bias"][1] += foreground_bias
    return state


def two_stage_package(folder: Path, *, version: str = "1.0.0", stage_one_bias: float = 0.0,
                      context: int = 1) -> Path:
    """KiTS19 two-stage: 3D residual kidney-region segmenter (6 mm), 2.5D refiner (4 x 6 x 6 mm, ``2k + 1``
    slices) on the masked image, classes no-mass / tumor / cyst, largest tumor component kept."""
    stage_one = plan_network((16, 32, 32), (6.0, 6.0, 6.0), num_classes=2, base_features=4, max_features=16,
                             block="residual").to_dict()
    refiner = plan_network((32, 32), (6.0, 6.0), dimension=2, in_channels=2 * context + 1, num_classes=3,
                           base_features=4, max_features=16, squeeze_excitation=True, attention_gates=True,
                           bottleneck_dilations=[2, 3, 5], inject_input=True).to_dict()
    members = [
        ({"name": "kidney", "inference": {**INFERENCE, "output_labels": [0, 1]}},
         _weights(stage_one, 0, stage_one_bias)),
        ({"name": "tumor", "role": "refiner", "network": refiner, "patch_size": [32, 32],
          "preprocessing": {"target_spacing": [4.0, 6.0, 6.0], "normalization": HU, "context_slices": context,
                            "stage_input": {"mask_image": True, "mask_dilation_mm": 6.0, "crop_margin_mm": 12.0}},
          "inference": {**INFERENCE, "output_labels": [0, 2, 3]}}, _weights(refiner, 1)),
    ]
    return write_package(folder, name="two-stage-test", version=version, description="random weights, for tests",
                         preprocessing={"target_spacing": [6.0, 6.0, 6.0], "normalization": HU}, network=stage_one,
                         patch_size=[16, 32, 32], inference=INFERENCE,
                         postprocessing={**POSTPROCESSING, "max_tumor_components": 1}, members=members)


def tunet_package(folder: Path, *, version: str = "1.0.0", stage_one_bias: float = 0.0,
                  spacing: Sequence[float] = (6.0, 6.0, 6.0)) -> Path:
    """TuNet: localizer (12 mm), W-Net (kidney region, image injection, SE, median 3) and T-Net (image +
    W-Net probability, tumor only), Algorithm 1 post-processing."""
    preprocessing = {"target_spacing": list(spacing), "normalization": HU, "median_filter": 3}
    w_net = plan_network((16, 32, 32), spacing, num_classes=2, base_features=4, max_features=16,
                         squeeze_excitation=True, inject_input=True).to_dict()
    t_net = plan_network((16, 32, 32), spacing, in_channels=2, num_classes=2, base_features=4, max_features=16,
                         squeeze_excitation=True, inject_input=True).to_dict()
    localizer = plan_network((16, 16, 16), (12.0, 12.0, 12.0), base_features=4, max_features=8).to_dict()
    members = [
        ({"name": "w-net", "inference": {**INFERENCE, "output_labels": [0, 1]}}, _weights(w_net, 2, stage_one_bias)),
        ({"name": "t-net", "role": "refiner", "network": t_net,
          "preprocessing": {**preprocessing, "stage_input": {"mask_image": False,
                                                             "probability_channels": ["kidney_and_mass"]}},
          "inference": {**INFERENCE, "output_labels": [0, 2]}}, _weights(t_net, 3)),
        ({"name": "l-net", "role": "localizer", "network": localizer, "patch_size": [16, 16, 16],
          "preprocessing": {"target_spacing": [12.0, 12.0, 12.0], "normalization": HU}}, _weights(localizer, 4)),
    ]
    return write_package(folder, name="tunet-test", version=version, description="random weights, for tests",
                         preprocessing=preprocessing, network=w_net, patch_size=[16, 32, 32], inference=INFERENCE,
                         postprocessing={**POSTPROCESSING, "adaptive_threshold": True}, members=members)
