"""One function per variant that runs its sliding window (ours, nnU-Net v2's, MONAI's) over a volume."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from unittest import mock

import numpy as np
import torch

from kidneytumorseg.cpu_inference import ENVIRONMENT_SWITCH
from kidneytumorseg.sliding_window import gaussian_importance_map, sliding_window_predict
from peer_comparison.nnunet_peer import nnunet_changed, nnunet_predictor
from peer_comparison.torchvision_guard import block_torchvision
from peer_comparison.variants import SIGMA_SCALE, SlidingWindowConfig, Variant, flip_sets


class PeerNetwork(torch.nn.Module):
    """The shared network as a peer's sliding window sees it.

    ``softmax=True`` returns its softmax instead of its logits (the peer then averages probabilities, as ours
    does); ``mirror_axes`` (for MONAI, which has no mirroring of its own) averages the outputs of every mirrored
    copy, flipped back, as ours and nnU-Net do.
    """

    def __init__(self, network: torch.nn.Module, softmax: bool, mirror_axes: Sequence[int] = ()) -> None:
        super().__init__()
        self.network = network
        self.softmax = softmax
        self.flip_sets = flip_sets(mirror_axes)

    def _once(self, x: torch.Tensor) -> torch.Tensor:
        output = self.network(x)
        if isinstance(output, (list, tuple)):
            output = output[0]
        return torch.softmax(output.float(), dim=1) if self.softmax else output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self._once(x)
        for flip in self.flip_sets[1:]:
            dims = [2 + axis for axis in flip]
            total = total + torch.flip(self._once(torch.flip(x, dims)), dims)
        return total / len(self.flip_sets)


def peer_runner(variant: Variant, network: torch.nn.Module,
                config: SlidingWindowConfig) -> Callable[[np.ndarray], torch.Tensor]:
    """A function running ``variant``'s sliding window over a normalised ``(S, P, L)`` volume.

    It returns what the peer returns, ``(C, S, P, L)`` on the CPU: probabilities for ours; for the others the
    average of what their network returns (logits as shipped, or softmax).
    """
    network.eval()
    if hasattr(network, "deep_supervision"):
        network.deep_supervision = False
    if variant.peer == "ours":
        switch = {ENVIRONMENT_SWITCH: "0"} if variant.precision == "eager" else {}

        def run_ours(volume: np.ndarray) -> torch.Tensor:
            with mock.patch.dict(os.environ, switch):
                return sliding_window_predict(network, volume, config.patch_size, config.overlap,
                                              config.mirror_axes, SIGMA_SCALE, batch_size=1, device="cpu",
                                              half_precision=variant.precision == "half")
        return run_ours
    softmax = variant.accumulate == "softmax"
    if variant.peer == "nnunet":
        predictor = nnunet_predictor(PeerNetwork(network, softmax) if softmax else network, config)

        def run_nnunet(volume: np.ndarray) -> torch.Tensor:
            with nnunet_changed(config.patch_size, variant.weights, variant.precision):
                return predictor.predict_sliding_window_return_logits(torch.from_numpy(volume)[None])
        return run_nnunet
    block_torchvision()
    from monai.inferers import sliding_window_inference

    wrapped = PeerNetwork(network, softmax, config.mirror_axes).eval()
    weight_map = (torch.from_numpy(gaussian_importance_map(config.patch_size, SIGMA_SCALE))
                  if variant.weights == "shared" else None)

    def run_monai(volume: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            output = sliding_window_inference(
                torch.from_numpy(volume)[None, None], roi_size=config.patch_size, sw_batch_size=1, predictor=wrapped,
                overlap=config.overlap, mode="gaussian", sigma_scale=SIGMA_SCALE, padding_mode="constant", cval=0.0,
                roi_weight_map=weight_map)
        return output[0]
    return run_monai


def as_probabilities(variant: Variant, output: torch.Tensor) -> np.ndarray:
    """A peer's output as float32 probabilities (a softmax over the classes of averaged logits)."""
    output = output.detach().float()
    if variant.accumulate == "logits":
        output = torch.softmax(output, dim=0)
    return output.cpu().numpy()


def predict_probabilities(variant: Variant, network: torch.nn.Module, volume: np.ndarray,
                          config: SlidingWindowConfig) -> np.ndarray:
    """Probabilities ``(C, S, P, L)`` of ``variant`` on ``volume`` (for tests and one-off checks)."""
    return as_probabilities(variant, peer_runner(variant, network, config)(volume))
