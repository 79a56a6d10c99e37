"""nnU-Net v2's predictor set up by hand for one network, and its Gaussian and float16 buffers swapped for ours.

nnunetv2 is imported inside the functions: the peers extra is optional (``pip install -e ".[peers]"``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from kidneytumorseg.sliding_window import gaussian_importance_map
from peer_comparison.torchvision_guard import block_torchvision
from peer_comparison.variants import SIGMA_SCALE, SlidingWindowConfig

logger = logging.getLogger(__name__)


class _TorchHalfIsFloat32:
    """``torch`` as seen by nnU-Net's predictor module with ``torch.half`` meaning float32.

    Its two float16 buffers (the summed weighted outputs and the summed weights) are the only ``torch.half`` in
    that module, so they become float32; everything else is torch itself.
    """

    half = torch.float32

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def nnunet_predictor(network: torch.nn.Module, config: SlidingWindowConfig) -> Any:
    """An ``nnUNetPredictor`` set up by hand (no trained model folder) to run ``network`` on the CPU."""
    block_torchvision()
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = {
        "dataset_name": "Dataset000_KidneyTumorSegBenchmark",
        "plans_name": "benchmarkPlans",
        "label_manager": "LabelManager",
        "configurations": {"3d_fullres": {
            "patch_size": list(config.patch_size),
            # Read only when nnU-Net builds the network itself, which it does not here.
            "architecture": {"network_class_name": "kidneytumorseg.networks.UNet", "arch_kwargs": {},
                             "_kw_requires_import": []},
        }},
    }
    dataset_json = {"labels": {"background": 0, **{f"class_{i}": i for i in range(1, config.num_classes)}},
                    "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
    plans_manager = PlansManager(plans)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # nnU-Net prints notes; stdout is for our table
        predictor = nnUNetPredictor(tile_step_size=1.0 - config.overlap, use_gaussian=True,
                                    use_mirroring=bool(config.mirror_axes), perform_everything_on_device=False,
                                    device=torch.device("cpu"), verbose=False, allow_tqdm=False)
        predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration("3d_fullres"),
                                        None, dataset_json, "nnUNetTrainer",
                                        tuple(config.mirror_axes) if config.mirror_axes else None)
    if printed.getvalue().strip():
        logger.debug("nnU-Net printed: %s", printed.getvalue().strip())
    if predictor.label_manager.num_segmentation_heads != config.num_classes:
        raise RuntimeError(f"nnU-Net expects {predictor.label_manager.num_segmentation_heads} outputs, the network "
                           f"has {config.num_classes}.")
    return predictor


@contextlib.contextmanager
def nnunet_changed(patch_size: Sequence[int], weights: str, precision: str) -> Iterator[None]:
    """While inside, nnU-Net blends with our Gaussian (``weights="shared"``) and/or sums in float32."""
    if (weights, precision) == ("own", "fp16"):
        yield
        return
    import nnunetv2.inference.predict_from_raw_data as nnunet_module

    original_gaussian, original_torch = nnunet_module.compute_gaussian, nnunet_module.torch
    dtype = torch.float16 if precision == "fp16" else torch.float32
    ours = gaussian_importance_map(patch_size, SIGMA_SCALE).astype(np.float64)

    def gaussian(tile_size: Sequence[int], sigma_scale: float = SIGMA_SCALE, value_scaling_factor: float = 1.0,
                 device: torch.device | None = None, **_: Any) -> torch.Tensor:
        if weights == "own":
            return original_gaussian(tuple(tile_size), sigma_scale=sigma_scale,
                                     value_scaling_factor=value_scaling_factor, dtype=dtype, device=device)
        if tuple(tile_size) != ours.shape or not math.isclose(sigma_scale, SIGMA_SCALE):
            raise ValueError(f"nnU-Net asked for a Gaussian over {tuple(tile_size)} with sigma scale {sigma_scale}; "
                             f"the shared map is {ours.shape} with {SIGMA_SCALE}.")
        # Scaled, typed and zero-guarded as nnU-Net treats its own map.
        result = torch.from_numpy(ours / ours.max() * value_scaling_factor).to(device=device, dtype=dtype)
        result[result == 0] = torch.min(result[result != 0])
        return result

    nnunet_module.compute_gaussian = gaussian
    if precision == "fp32":
        nnunet_module.torch = _TorchHalfIsFloat32()
    try:
        yield
    finally:
        nnunet_module.compute_gaussian, nnunet_module.torch = original_gaussian, original_torch
