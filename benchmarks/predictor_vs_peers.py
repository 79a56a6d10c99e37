"""Benchmark: our sliding-window predictor against nnU-Net v2's and MONAI's, same network, weights and volume.

    .venv/bin/python benchmarks/predictor_vs_peers.py                    # defaults: about 8 minutes on 2 cores
    .venv/bin/python benchmarks/predictor_vs_peers.py --mirror --repeats 5
    .venv/bin/python benchmarks/predictor_vs_peers.py --spacing 3 1.5 1.5 --patch 64 128 128 --features 32

Needs the ``peers`` extra (``.venv/bin/pip install -e ".[peers]" -c constraints.txt``: nnunetv2, which pulls in
torchvision; torchvision must never be imported here, and this script refuses to import it).

What runs, on the same preprocessed volume (float32 ``(S, P, L)``, normalised, already at the model spacing):

- ``ours``: :func:`kidneytumorseg.sliding_window.sliding_window_predict`, batch 1, CPU.
- ``nnU-Net v2``: ``nnUNetPredictor.predict_sliding_window_return_logits`` of nnunetv2 from PyPI, set up with
  ``manual_initialization`` from a minimal plans dict (the patch size) and a dataset.json with as many labels
  as the network has outputs; nothing trained, nothing read from disk.
- ``MONAI``: ``monai.inferers.sliding_window_inference(..., mode="gaussian", sigma_scale=0.125)``; it has no
  test-time mirroring, so with ``--mirror`` the function it calls averages the mirrored copies itself.

All three get the same network (``build_network(plan_network(patch, spacing, base_features, max_features))``,
random weights from ``torch.manual_seed(0)``, eval mode, no deep supervision; each process loads the same saved
weights) and the same parameters: tile ``--patch``; our ``tile_overlap`` = 1 - nnU-Net's ``tile_step_size`` =
MONAI's ``overlap``; Gaussian sigma = 1/8 of the tile per axis (nnU-Net's fixed value); the same mirrored axes
(none by default, for speed; ``--mirror``: all three, 8 forward passes per tile); a volume shorter than the
tile padded with 0, centred, by all three.

What still differs at those parameters (read in the sources of nnunetv2 2.x and MONAI 1.x):

1. What is averaged: ours averages the *softmax* of the tiles and mirrored copies; nnU-Net and MONAI average
   what the network returns, *logits*, and the softmax comes afterwards.
2. The Gaussian: ours and MONAI sample exp(-d^2 / 2 sigma^2) about the tile centre (n - 1) / 2, nnU-Net
   filters a delta at n // 2 (half a voxel off on even tiles); MONAI raises every weight below 1e-3 to 1e-3.
3. Precision: nnU-Net sums the weighted outputs and the weights in float16 (``torch.half``, also on the CPU),
   with its Gaussian scaled to a peak of 10 and stored as float16 (the tails below 6e-8 underflow to its
   smallest weight), and returns float16; ours and MONAI use float32.
4. Tile placement: nnU-Net and ours spread the tiles evenly, MONAI steps by ``int(tile * (1 - overlap))`` and
   moves only the last tile back. They coincide when each axis longer than the tile is ``tile + k * step``
   voxels, so by default the volume is zero-padded (0 = the normalised mean) to such a size first
   (``--no-align`` keeps its size).

Rows of the table:

- timed, median of ``--repeats`` (interleaved, rotated order): ``ours``; nnU-Net and MONAI *as shipped* (bare
  network, their own Gaussian and precision), the baseline the goal refers to; ``network forward alone``, the
  same network over the same tiles and mirrored copies with nothing blended (the floor all three share, to
  show what dominates); our coarse-to-fine mode and the localizer network.
- once each (n=1, ``--no-agreement-rows`` skips them), to take differences 1-3 apart: nnU-Net and MONAI with
  the network wrapped to return its softmax (so they average probabilities, as ours) and blending with our
  Gaussian map (MONAI through its ``roi_weight_map`` argument, nnU-Net by replacing its ``compute_gaussian``
  during the call); nnU-Net once more with its float16 buffers and Gaussian made float32 (its module's
  ``torch.half`` replaced by float32 during the call). Those last rows are the identical-settings comparison.
  ``--all-variants`` adds the softmax-averaging peers with their own Gaussian.
- ``--profile``: one more run of ours under cProfile, its most expensive functions listed below the table.

Compared with ours: the largest absolute difference over all voxels and classes between a row's probabilities
and ours (repeat-1 outputs; softmax applied to the logits of the as-shipped peers), its 99.9th percentile over
voxels, and the share of voxels whose argmax label equals ours.

Coarse-to-fine (``ours, coarse-to-fine``): :func:`kidneytumorseg.predictor_core.predict` with a localizer and
:class:`CascadeSettings` (margin ``--margin-mm``, at most 2 boxes, no post-processing). Random localizer weights
would draw meaningless boxes, so that localizer is a fixed module holding the case's reference mask
(``segmentation.nii.gz`` > 0) on the localizer's coarse grid as a buffer and returning it as logits: the boxes
a perfect localizer would give. Because that forward costs nothing, a real-sized localizer (the U-Net planned
for ``--localizer-patch`` at ``--localizer-spacing``, random weights, through
:func:`kidneytumorseg.predictor_core.localize`, its boxes unused) is timed as its own row and added in the
``total`` row. The labels from the boxes are compared with the full run's (argmax) on every box voxel and on
the reference kidney-and-mass voxels.

How it is measured: after one discarded warm-up run, each measurement is a fresh process (this script with
``--only``) that loads the volume and the weights, times the one sliding-window call with ``time.perf_counter``
(no warm-up call inside it: every row pays the same first-call costs; for the as-shipped peers the final
softmax is outside the timing) and reports its peak resident memory (``ru_maxrss``, imported libraries
included) and the resident memory just before the call; ``+MB in call`` is the difference.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.abc
import importlib.metadata
import io
import itertools
import json
import logging
import math
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from safetensors.torch import load_file, save_file

from kidneytumorseg.geometry import resample_array, resample_to_shape, resampled_shape, to_lps
from kidneytumorseg.networks import build_network, count_parameters, plan_network
from kidneytumorseg.normalization import normalize
from kidneytumorseg.predictor_core import CascadeSettings, PredictorSettings, localize, predict
from kidneytumorseg.sliding_window import gaussian_importance_map, sliding_window_predict, tile_slices

logger = logging.getLogger("predictor_vs_peers")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CASE = REPO / "Testing" / "fixtures" / "synthetic" / "case_00112"
# The model package defaults (docs/engine-contracts.md): CT clipped to [-79, 304] HU, then z-scored.
CT_NORMALIZATION = {"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9}
# The volume is normalised once; the predictor core then gets a normalisation that leaves it as it is.
IDENTITY_NORMALIZATION = {"scheme": "clip_zscore", "clip": [-1.0e6, 1.0e6], "mean": 0.0, "std": 1.0}
SIGMA_SCALE = 0.125  # nnU-Net's fixed Gaussian: sigma = tile / 8
PEERS = ("ours", "nnunet", "monai")
PEER_NAMES = {"ours": "ours", "nnunet": "nnU-Net v2", "monai": "MONAI"}
ACCUMULATIONS = ("logits", "softmax")
WEIGHTINGS = ("own", "shared")
PRECISIONS = ("fp16", "fp32", "half")  # "half": ours with --precision half (bfloat16 autocast on a CPU)
TASKS = ("cascade", "localizer", "forward", "profile")


class _NoTorchvision(importlib.abc.MetaPathFinder):
    """Refuses ``import torchvision``: its compiled ops do not load against this project's CPU torch build.

    MONAI asks for it through ``optional_import`` (which reads an ImportError as "not installed"); nnunetv2
    depends on it through timm, which nothing run here imports.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            raise ImportError(f"{fullname} is blocked in this project (its compiled ops do not load against the "
                              f"CPU torch build); nothing here needs it.")
        return None


def block_torchvision() -> None:
    """Make ``import torchvision`` fail with ImportError in this process (idempotent)."""
    if not any(isinstance(finder, _NoTorchvision) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoTorchvision())


# --- the peers ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlidingWindowConfig:
    """The parameters all peers share."""

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    mirror_axes: tuple[int, ...] = ()
    num_classes: int = 4

    def __post_init__(self) -> None:
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive integers (S, P, L), got {self.patch_size}.")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}.")
        if any(axis not in (0, 1, 2) for axis in self.mirror_axes):
            raise ValueError(f"mirror_axes must be spatial axes 0, 1, 2, got {self.mirror_axes}.")


@dataclass(frozen=True)
class Variant:
    """How a peer runs: what it averages, whose Gaussian it blends with, nnU-Net's buffer precision.

    ``Variant("nnunet")`` and ``Variant("monai")`` are the peers as shipped; ours always averages softmax with
    its own Gaussian in float32.
    """

    peer: str
    accumulate: str = "logits"  # "logits": the bare network (as shipped); "softmax": wrapped, as ours averages
    weights: str = "own"  # "own" Gaussian or "shared" (ours)
    precision: str = "fp16"  # nnU-Net's sums: "fp16" as shipped or "fp32"; the others are float32 anyway

    def __post_init__(self) -> None:
        for name, value, allowed in (("peer", self.peer, PEERS), ("accumulate", self.accumulate, ACCUMULATIONS),
                                     ("weights", self.weights, WEIGHTINGS), ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        if self.peer == "ours" and (self.accumulate, self.weights) != ("softmax", "own"):
            raise ValueError("Ours averages softmax with its own Gaussian; use Variant('ours', 'softmax').")
        if self.precision == "half" and self.peer != "ours":
            raise ValueError("precision 'half' is our predictor's --precision half; the peers run float32 networks.")
        if self.peer != "nnunet" and self.precision == "fp16":
            object.__setattr__(self, "precision", "fp32")

    @property
    def key(self) -> str:
        return "-".join((self.peer, self.accumulate, self.weights, self.precision))

    @classmethod
    def from_key(cls, key: str) -> Variant:
        parts = key.split("-")
        if len(parts) != 4:
            raise ValueError(f"A variant key is peer-accumulate-weights-precision, got {key!r}.")
        return cls(*parts)

    @property
    def as_shipped(self) -> bool:
        return self.peer != "ours" and (self.accumulate, self.weights, self.precision) == (
            "logits", "own", "fp16" if self.peer == "nnunet" else "fp32")

    def describe(self) -> str:
        if self.peer == "ours":
            return "softmax averaged, own Gaussian, " + (
                "network in bfloat16 (--precision half)" if self.precision == "half" else "fp32")
        if self.as_shipped:
            return f"as shipped: logits averaged, own Gaussian, {self.precision}"
        return (f"{self.accumulate} averaged, {'our' if self.weights == 'shared' else 'own'} Gaussian, "
                f"{self.precision}")


OURS = Variant("ours", "softmax", "own", "fp32")
OURS_HALF = Variant("ours", "softmax", "own", "half")  # not identical settings: a row of its own, for speed
AS_SHIPPED = (Variant("nnunet"), Variant("monai"))
AGREEMENT_VARIANTS = (Variant("nnunet", "softmax", "shared", "fp16"), Variant("nnunet", "softmax", "shared", "fp32"),
                      Variant("monai", "softmax", "shared"))
EXTRA_VARIANTS = (Variant("nnunet", "softmax", "own", "fp16"), Variant("monai", "softmax", "own"))


def _flip_sets(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of mirrored axes, the unmirrored one first."""
    axes = sorted(set(mirror_axes))
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


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
        self.flip_sets = _flip_sets(mirror_axes)

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
def _nnunet_changed(patch_size: Sequence[int], weights: str, precision: str) -> Iterator[None]:
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
        def run_ours(volume: np.ndarray) -> torch.Tensor:
            return sliding_window_predict(network, volume, config.patch_size, config.overlap, config.mirror_axes,
                                          SIGMA_SCALE, batch_size=1, device="cpu",
                                          half_precision=variant.precision == "half")
        return run_ours
    softmax = variant.accumulate == "softmax"
    if variant.peer == "nnunet":
        predictor = nnunet_predictor(PeerNetwork(network, softmax) if softmax else network, config)

        def run_nnunet(volume: np.ndarray) -> torch.Tensor:
            with _nnunet_changed(config.patch_size, variant.weights, variant.precision):
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


class ReferenceMaskLocalizer(torch.nn.Module):
    """A stand-in localizer returning a fixed foreground mask (on the localizer's grid) as logits.

    It takes only a tile the size of its mask: the localizer's patch must be the whole coarse volume.
    """

    def __init__(self, foreground: np.ndarray, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"A localizer needs at least 2 classes, got {num_classes}.")
        self.register_buffer("foreground", torch.from_numpy(np.asarray(foreground, dtype=np.float32)))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != tuple(self.foreground.shape):
            raise ValueError(f"The reference-mask localizer needs the whole coarse volume "
                             f"{tuple(self.foreground.shape)} as one tile, got {tuple(x.shape[2:])}.")
        foreground = self.foreground.expand(x.shape[0], 1, *self.foreground.shape).to(x.dtype)
        others = torch.full_like(foreground, -20.0).expand(-1, self.num_classes - 2, *self.foreground.shape)
        return torch.cat([20.0 * (1.0 - 2.0 * foreground), torch.zeros_like(foreground), others], dim=1)


# --- the case and the saved networks ------------------------------------------------------------------------

@dataclass
class Setup:
    """What every measurement process needs, saved as ``setup.json`` next to the arrays and weights."""

    case: str
    spacing: tuple[float, float, float]
    original_shape: tuple[int, int, int]
    shape: tuple[int, int, int]
    padding: list[tuple[int, int]]
    patch_size: tuple[int, int, int]
    overlap: float
    mirror_axes: tuple[int, ...]
    num_classes: int
    network: dict[str, Any]
    parameters: int
    tiles: int
    margin_mm: float
    localizer_spacing: tuple[float, float, float]
    localizer_patch: tuple[int, int, int]
    localizer_network: dict[str, Any]
    coarse_shape: tuple[int, int, int]
    threads: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> SlidingWindowConfig:
        patch = tuple(int(p) for p in self.patch_size)
        return SlidingWindowConfig(patch, self.overlap, tuple(self.mirror_axes), self.num_classes)  # type: ignore[arg-type]

    @classmethod
    def load(cls, workdir: Path) -> Setup:
        return cls(**json.loads((workdir / "setup.json").read_text()))


def aligned_padding(
    shape: Sequence[int], patch: Sequence[int], overlap: float
) -> tuple[list[tuple[int, int]], list[str]]:
    """Zero padding (before, after) per axis after which MONAI's tiles start where nnU-Net's and ours do."""
    padding, notes = [], []
    for axis, (n, p) in enumerate(zip(shape, patch, strict=True)):
        step = p * (1.0 - overlap)
        if n <= p:
            padding.append((0, 0))  # one tile, padded to the patch the same way by all three
            continue
        if abs(step - round(step)) > 1e-9:
            notes.append(f"axis {axis}: the tile step {step:g} is not whole; MONAI's tiles differ from ours there")
            padding.append((0, 0))
            continue
        missing = p + math.ceil((n - p) / round(step)) * round(step) - n
        padding.append((missing // 2, missing - missing // 2))
    return padding, notes


def prepare(args: argparse.Namespace, workdir: Path) -> Setup:
    """Preprocess the case, plan and build the networks, save everything; return the setup."""
    case = Path(args.case)
    image_path, mask_path = case / "imaging.nii.gz", case / "segmentation.nii.gz"
    for path in (image_path, mask_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; --case must be a folder with imaging.nii.gz and "
                                    f"segmentation.nii.gz (e.g. {DEFAULT_CASE}).")
    ct, spacing, _ = to_lps(sitk.ReadImage(str(image_path)))
    reference, reference_spacing, _ = to_lps(sitk.ReadImage(str(mask_path)))
    if reference.shape != ct.shape or not np.allclose(reference_spacing, spacing):
        raise ValueError(f"{mask_path} is not on the grid of {image_path}.")
    target = tuple(float(s) for s in args.spacing)
    volume = resample_array(normalize(ct, CT_NORMALIZATION), spacing, target, "linear")
    kidney = resample_to_shape(reference.astype(np.float32), spacing, volume.shape, target, "nearest") > 0

    patch = tuple(int(p) for p in args.patch)
    padding, notes = aligned_padding(volume.shape, patch, args.overlap) if args.align else ([(0, 0)] * 3, [])
    if not args.align:
        notes.append("--no-align: MONAI's tiles may start elsewhere than nnU-Net's and ours")
    original_shape = tuple(int(n) for n in volume.shape)
    volume = np.ascontiguousarray(np.pad(volume, padding, constant_values=0.0), dtype=np.float32)
    kidney = np.pad(kidney, padding, constant_values=False)

    config = plan_network(patch, target, base_features=args.features, max_features=args.max_features)
    torch.manual_seed(0)
    network = build_network(config)
    save_file(network.state_dict(), str(workdir / "network.safetensors"))
    localizer_patch = tuple(int(p) for p in args.localizer_patch)
    localizer_spacing = tuple(float(s) for s in args.localizer_spacing)
    localizer_config = plan_network(localizer_patch, localizer_spacing, base_features=args.localizer_features,
                                    max_features=args.max_features)
    torch.manual_seed(1)
    save_file(build_network(localizer_config).state_dict(), str(workdir / "localizer.safetensors"))

    coarse_shape = resampled_shape(volume.shape, target, localizer_spacing)
    coarse_kidney = resample_to_shape(kidney.astype(np.float32), target, coarse_shape, localizer_spacing,
                                      "linear") >= 0.5
    np.save(workdir / "volume.npy", volume)
    np.save(workdir / "kidney.npy", kidney)
    np.save(workdir / "coarse_kidney.npy", coarse_kidney)

    padded_for_tiles = [max(n, p) for n, p in zip(volume.shape, patch, strict=True)]
    setup = Setup(
        case=str(case), spacing=target, original_shape=original_shape, shape=tuple(int(n) for n in volume.shape),
        padding=padding, patch_size=patch, overlap=float(args.overlap), mirror_axes=(0, 1, 2) if args.mirror else (),
        num_classes=config.num_classes, network=config.to_dict(), parameters=count_parameters(network),
        tiles=len(tile_slices(padded_for_tiles, patch, args.overlap)), margin_mm=float(args.margin_mm),
        localizer_spacing=localizer_spacing, localizer_patch=localizer_patch,
        localizer_network=localizer_config.to_dict(), coarse_shape=tuple(int(n) for n in coarse_shape),
        threads=args.threads, notes=notes,
    )
    (workdir / "setup.json").write_text(json.dumps(asdict(setup)))
    return setup


def _load_network(config: dict[str, Any], weights: Path) -> torch.nn.Module:
    network = build_network(config)
    network.load_state_dict(load_file(str(weights)))
    network.deep_supervision = False
    return network.eval()


# --- one measurement, in its own process --------------------------------------------------------------------

def _rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux /proc; elsewhere the peak so far)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _timed(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """``call()``'s result, its wall time and the resident memory just before it."""
    before = _rss_mb()
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start, before


def _forward_alone(network: torch.nn.Module, volume: np.ndarray, setup: Setup) -> None:
    """The network over every tile and mirrored copy of the sliding window, nothing blended."""
    missing = [max(0, p - n) for n, p in zip(volume.shape, setup.patch_size, strict=True)]
    padded = torch.from_numpy(np.pad(volume, [(m // 2, m - m // 2) for m in missing]))[None]
    with torch.no_grad():
        for tile in tile_slices(padded.shape[1:], setup.patch_size, setup.overlap):
            batch = padded[(slice(None), *tile)][None]
            for flip in _flip_sets(setup.mirror_axes):
                network(torch.flip(batch, [2 + axis for axis in flip]) if flip else batch)


def measure(task: str, workdir: Path, save_output: bool) -> dict[str, Any]:
    """Time one run of ``task`` (a variant key, or one of TASKS) on the saved case; save its output if asked."""
    setup = Setup.load(workdir)
    if setup.threads:
        torch.set_num_threads(setup.threads)
    volume = np.load(workdir / "volume.npy")
    network = _load_network(setup.network, workdir / "network.safetensors")
    extra: dict[str, Any] = {}
    if task == "cascade":
        settings = PredictorSettings(target_spacing=setup.spacing, patch_size=setup.patch_size,
                                     normalization=IDENTITY_NORMALIZATION, tile_overlap=setup.overlap,
                                     mirror_axes=setup.mirror_axes, gaussian_sigma_scale=SIGMA_SCALE, device="cpu")
        cascade = CascadeSettings(PredictorSettings(target_spacing=setup.localizer_spacing,
                                                    patch_size=setup.coarse_shape,
                                                    normalization=IDENTITY_NORMALIZATION, device="cpu"),
                                  margin_mm=setup.margin_mm, threshold=0.5, max_boxes=2)
        localizer = ReferenceMaskLocalizer(np.load(workdir / "coarse_kidney.npy"), setup.num_classes)
        prediction, seconds, before = _timed(
            lambda: predict(volume, setup.spacing, [network], settings, None, localizer, cascade))
        extra["boxes"] = [[[s.start, s.stop] for s in box] for box in prediction.boxes]
        if save_output:
            np.save(workdir / "cascade-labels.npy", prediction.labels)
            np.save(workdir / "cascade-probabilities.npy", prediction.probabilities)
    elif task == "localizer":
        localizer = _load_network(setup.localizer_network, workdir / "localizer.safetensors")
        settings = PredictorSettings(target_spacing=setup.localizer_spacing, patch_size=setup.localizer_patch,
                                     normalization=IDENTITY_NORMALIZATION, tile_overlap=setup.overlap,
                                     mirror_axes=setup.mirror_axes, gaussian_sigma_scale=SIGMA_SCALE, device="cpu")
        _, seconds, before = _timed(lambda: localize(volume, setup.spacing, localizer, settings,
                                                     margin_mm=setup.margin_mm))
    elif task == "forward":
        _, seconds, before = _timed(lambda: _forward_alone(network, volume, setup))
    elif task == "profile":
        run, profiler = peer_runner(OURS, network, setup.config), cProfile.Profile()
        _, seconds, before = _timed(lambda: profiler.runcall(run, volume))
        entries = sorted(pstats.Stats(profiler).stats.items(), key=lambda item: item[1][2], reverse=True)
        extra["profile"] = [[pstats.func_std_string(function), own] for function, (_, _, own, _, _) in entries[:8]]
    else:
        variant = Variant.from_key(task)
        run = peer_runner(variant, network, setup.config)
        output, seconds, before = _timed(lambda: run(volume))
        if save_output:
            np.save(workdir / f"{variant.key}.npy", as_probabilities(variant, output))
    return {"task": task, "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": _peak_rss_mb(),
            "threads": torch.get_num_threads(), **extra}


def run_measurement(task: str, workdir: Path, save_output: bool) -> dict[str, Any]:
    """Run :func:`measure` in a fresh process (this script with ``--only``) and return its result."""
    result_path = workdir / f"result-{time.monotonic_ns()}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--only", task, "--workdir", str(workdir),
               "--result", str(result_path), *(["--save-output"] if save_output else [])]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.stdout.strip():
        logger.debug("%s printed: %s", task, completed.stdout.strip())
    if completed.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"The {task} measurement failed (exit code {completed.returncode}):\n"
                           f"{completed.stderr.strip()[-4000:]}")
    result = json.loads(result_path.read_text())
    logger.info("  %-30s %7.2f s  peak RSS %6.0f MB", task, result["seconds"], result["peak_rss_mb"])
    return result


# --- all measurements, the comparison and the table ---------------------------------------------------------

Results = dict[str, list[dict[str, Any]]]


def _run_all(args: argparse.Namespace, workdir: Path) -> Results:
    """The timed rows interleaved in a rotated order per repeat (outputs saved from repeat 1), then the rest."""
    timed = [OURS.key, *(v.key for v in AS_SHIPPED), OURS_HALF.key, "forward",
             *(("cascade", "localizer") if args.cascade else ())]
    results: Results = {}
    logger.info("Warm-up (discarded): the network forward alone")
    run_measurement("forward", workdir, save_output=False)
    for repeat in range(args.repeats):
        logger.info("Repeat %d/%d", repeat + 1, args.repeats)
        shift = repeat % len(timed)
        for task in timed[shift:] + timed[:shift]:
            results.setdefault(task, []).append(run_measurement(task, workdir, save_output=repeat == 0))
    once = ["profile"] if args.profile else []
    if args.agreement_rows:
        once += [v.key for v in AGREEMENT_VARIANTS]
    if args.all_variants:
        once += [v.key for v in EXTRA_VARIANTS]
    if once:
        logger.info("Once each: %s", ", ".join(once))
    for task in once:
        results[task] = [run_measurement(task, workdir, save_output=True)]
    return results


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _row(name: str, settings: str, seconds: list[float], nnunet_seconds: float, runs: list[dict[str, Any]] | None,
         agreement: tuple[str, str, str] = ("-", "-", "-")) -> list[str]:
    """One table row; ``runs`` gives the memory columns (None: not one measurement of its own)."""
    median = statistics.median(seconds)
    peak = "-" if runs is None else f"{_median(runs, 'peak_rss_mb'):.0f}"
    growth = "-" if runs is None else f"{statistics.median(r['peak_rss_mb'] - r['rss_before_mb'] for r in runs):+.0f}"
    return [name, settings, f"{median:.2f} (n={len(seconds)})", f"{median / nnunet_seconds:.2f}x", peak, growth,
            *agreement]


def _print_table(rows: list[list[str]]) -> None:
    header = ["peer", "settings", "median s", "vs nnU-Net", "peak RSS MB", "+MB in call", "max |dp| vs ours",
              "99.9% |dp|", "labels = ours"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * width for width in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _agreement(
    probabilities: np.ndarray, ours: np.ndarray, where: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Largest |dp| over voxels and classes, its 99.9th percentile over voxels, share of equal argmax labels."""
    if probabilities.shape != ours.shape:
        raise RuntimeError(f"Probabilities of shape {probabilities.shape} cannot be compared with ours {ours.shape}.")
    per_voxel = np.abs(probabilities - ours).max(axis=0)
    same = probabilities.argmax(0) == ours.argmax(0)
    if where is not None:
        per_voxel, same = per_voxel[where], same[where]
    return float(per_voxel.max()), float(np.percentile(per_voxel, 99.9)), float(same.mean())


def _agreement_text(values: tuple[float, float, float], suffix: str = "") -> tuple[str, str, str]:
    return f"{values[0]:.1e}{suffix}", f"{values[1]:.1e}", f"{100 * values[2]:.3f}%{suffix}"


@dataclass
class CascadeCheck:
    """How the coarse-to-fine run compares with our full run."""

    boxes: list[list[list[int]]]
    box_voxels: int
    voxels: int
    kidney_voxels: int
    in_boxes: tuple[float, float, float]
    on_kidney: tuple[float, float, float]


def _check_cascade(workdir: Path, boxes: list[list[list[int]]], ours: np.ndarray) -> CascadeCheck:
    if not boxes:
        raise RuntimeError("The reference-mask localizer gave no box; is the case's segmentation empty?")
    probabilities = np.load(workdir / "cascade-probabilities.npy")
    kidney = np.load(workdir / "kidney.npy")
    inside = np.zeros(kidney.shape, dtype=bool)
    for box in boxes:
        inside[tuple(slice(start, stop) for start, stop in box)] = True
    return CascadeCheck(boxes=boxes, box_voxels=int(inside.sum()), voxels=int(inside.size),
                        kidney_voxels=int(kidney.sum()), in_boxes=_agreement(probabilities, ours, inside),
                        on_kidney=_agreement(probabilities, ours, kidney))


def _cascade_totals(results: Results) -> list[float]:
    """Coarse-to-fine plus localizer-network seconds, per repeat."""
    return [c["seconds"] + loc["seconds"] for c, loc in zip(results["cascade"], results["localizer"], strict=True)]


def _report(args: argparse.Namespace, setup: Setup, workdir: Path, results: Results, minutes: float) -> None:
    """Print the hardware, the settings, the table and the verdicts."""
    ours = np.load(workdir / f"{OURS.key}.npy")
    nnunet_seconds = _median(results[AS_SHIPPED[0].key], "seconds")
    ours_seconds = _median(results[OURS.key], "seconds")
    rows, differences = [], {}
    for task, runs in results.items():
        if task in TASKS:
            continue
        variant = Variant.from_key(task)
        agreement = ("0", "0", "100%")
        if variant != OURS:
            differences[variant] = _agreement(np.load(workdir / f"{task}.npy"), ours)
            agreement = _agreement_text(differences[variant])
        rows.append(_row(PEER_NAMES[variant.peer], variant.describe(), [r["seconds"] for r in runs], nnunet_seconds,
                         runs, agreement))
    forward_runs = results["forward"]
    rows.append(_row("network forward alone", "same tiles and mirrorings, no blending",
                     [r["seconds"] for r in forward_runs], nnunet_seconds, forward_runs))
    check = None
    if args.cascade:
        cascade_runs, localizer_runs = results["cascade"], results["localizer"]
        check = _check_cascade(workdir, cascade_runs[0]["boxes"], ours)
        totals = _cascade_totals(results)
        rows += [
            _row("ours, coarse-to-fine", f"reference-mask boxes, {setup.margin_mm:g} mm margin",
                 [r["seconds"] for r in cascade_runs], nnunet_seconds, cascade_runs,
                 _agreement_text(check.in_boxes, " in boxes")),
            _row("localizer network", f"random weights, {'x'.join(map(str, setup.localizer_patch))} at "
                 f"{'x'.join(f'{s:g}' for s in setup.localizer_spacing)} mm", [r["seconds"] for r in localizer_runs],
                 nnunet_seconds, localizer_runs),
            _row("ours, coarse-to-fine total", "the two rows above, per repeat", totals, nnunet_seconds, None,
                 _agreement_text(check.on_kidney, " on kidneys")),
        ]

    print("Predictor vs peers: one network, one set of weights, one preprocessed volume")
    print(f"Command: {Path(sys.executable).name} {' '.join(sys.argv)}")
    print(f"Hardware: {_cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
          f"{results[OURS.key][0]['threads']} threads; nnunetv2 {_version('nnunetv2')}, monai {_version('monai')}, "
          f"Python {platform.python_version()}.")
    print(f"Case: {setup.case}, clip_zscore-normalised and resampled to {setup.spacing} mm: "
          f"{setup.original_shape} voxels, zero-padded to {setup.shape} (per axis {setup.padding}).")
    print(f"Network: plain U-Net planned for {setup.patch_size} at {setup.spacing} mm, features "
          f"{setup.network['features_per_stage']}, {setup.parameters:,} parameters, random weights (seed 0).")
    print(f"Settings: tile {setup.patch_size}, overlap {setup.overlap:g} (nnU-Net tile_step_size "
          f"{1 - setup.overlap:g}), Gaussian sigma = tile/8, mirroring "
          f"{list(setup.mirror_axes) if setup.mirror_axes else 'off'}, batch 1, CPU: {setup.tiles} tiles.")
    for note in setup.notes:
        print(f"Note: {note}.")
    print(f"Each measurement is a fresh process timing one call; {args.repeats} repeats of the timed rows, "
          f"interleaved; {minutes:.1f} min in all.")
    print()
    _print_table(rows)
    print()
    ratio = ours_seconds / nnunet_seconds
    print(f"Goal at identical settings, ours <= 0.80x nnU-Net's time: {ratio:.2f}x, "
          f"{'met' if ratio <= 0.8 else 'NOT met'}.")
    forward_seconds = _median(forward_runs, "seconds")
    print(f"The network forward alone takes {forward_seconds:.2f} s = {100 * forward_seconds / ours_seconds:.0f}% of "
          f"ours, {100 * forward_seconds / nnunet_seconds:.0f}% of nnU-Net's; the rest is tiling, weighting, "
          f"blending.")
    for variant, (largest, _, _) in differences.items():
        print(f"max |dp| {PEER_NAMES[variant.peer]} ({variant.describe()}) vs ours: {largest:.1e}, "
              f"{'below' if largest < 1e-3 else 'NOT below'} 1e-3.")
    if check is not None:
        total_ratio = statistics.median(_cascade_totals(results)) / nnunet_seconds
        print(f"Goal coarse-to-fine <= 0.25x nnU-Net's time: {total_ratio:.2f}x with the localizer network "
              f"({_median(results['cascade'], 'seconds') / nnunet_seconds:.2f}x without), "
              f"{'met' if total_ratio <= 0.25 else 'NOT met'}.")
        print(f"Cascade boxes (S, P, L voxel ranges): {check.boxes}: {check.box_voxels} of {check.voxels} voxels "
              f"({100 * check.box_voxels / check.voxels:.1f}%).")
        print(f"Labels from the boxes equal the full run's on {100 * check.in_boxes[2]:.4f}% of box voxels and "
              f"{100 * check.on_kidney[2]:.4f}% of the {check.kidney_voxels} reference kidney-and-mass voxels: "
              f"{'the same labels' if check.on_kidney[2] == 1.0 else 'NOT the same labels'} on the kidneys.")
        print("The coarse-to-fine localizer is a fixed module returning the case's reference mask, not a network; "
              "the localizer-network row times a real-sized one with random weights (its boxes unused).")
        print("With random weights a voxel's label follows its tile's context (instance normalisation over the "
              "tile, zero padding around a box smaller than the tile), which differs between a box and the whole "
              "volume: equal labels need a trained network (the predictor tests check them with a context-free one).")
    if "profile" in results:
        profile = results["profile"][0]
        print(f"Where ours spends its time (cProfile, one run, {profile['seconds']:.2f} s with profiling; own time):")
        for function, own in profile["profile"]:
            print(f"  {own:7.2f} s  {100 * own / profile['seconds']:5.1f}%  {function}")


def benchmark(args: argparse.Namespace) -> None:
    """Prepare the case, run every measurement, print the report."""
    for package in ("nnunetv2", "monai"):
        if _version(package) == "not installed":
            raise SystemExit(f"{package} is not installed: .venv/bin/pip install -e '.[peers]' -c constraints.txt")
    with tempfile.TemporaryDirectory(prefix="predictor_vs_peers-") as folder:
        workdir = Path(folder)
        setup = prepare(args, workdir)
        logger.info("Volume %s at %s mm, %d tiles of %s, %d parameters.", setup.shape, setup.spacing, setup.tiles,
                    setup.patch_size, setup.parameters)
        start = time.perf_counter()
        results = _run_all(args, workdir)
        _report(args, setup, workdir, results, (time.perf_counter() - start) / 60)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", type=Path, default=DEFAULT_CASE,
                        help="folder with imaging.nii.gz and segmentation.nii.gz (default: synthetic case_00112)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(3.0, 2.0, 2.0), metavar=("SI", "AP", "LR"),
                        help="model spacing in mm, (S, P, L) order (default 3 2 2)")
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 128, 128), metavar=("S", "P", "L"),
                        help="tile size in voxels (default 64 128 128)")
    parser.add_argument("--features", type=int, default=32, help="features of the first stage (default 32)")
    parser.add_argument("--max-features", type=int, default=320, help="feature cap (default 320)")
    parser.add_argument("--overlap", type=float, default=0.5, help="tile overlap (default 0.5: step 0.5)")
    parser.add_argument("--mirror", action="store_true",
                        help="mirror over all three axes (8 passes per tile); off by default, for speed")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default 3)")
    parser.add_argument("--agreement-rows", action=argparse.BooleanOptionalAction, default=True,
                        help="run the identical-settings variants of nnU-Net and MONAI once each (default on)")
    parser.add_argument("--profile", action="store_true", help="profile one run of ours with cProfile (once)")
    parser.add_argument("--all-variants", action="store_true",
                        help="also run the softmax-averaging peers with their own Gaussian once each")
    parser.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                        help="zero-pad the volume so MONAI's tiles start where the others' do (default on)")
    parser.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=True,
                        help="time our coarse-to-fine mode too (default on)")
    parser.add_argument("--margin-mm", type=float, default=15.0, help="cascade box margin (default 15 mm)")
    parser.add_argument("--localizer-spacing", type=float, nargs=3, default=(6.0, 6.0, 6.0),
                        help="the localizer's spacing (default 6 6 6)")
    parser.add_argument("--localizer-patch", type=int, nargs=3, default=(32, 64, 64),
                        help="the localizer's tile (default 32 64 64)")
    parser.add_argument("--localizer-features", type=int, default=16, help="localizer first-stage features (16)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--save-output", action="store_true", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    args = _parser().parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    block_torchvision()
    if args.only:
        if args.workdir is None or args.result is None:
            raise SystemExit("--only needs --workdir and --result (this script passes them to itself).")
        args.result.write_text(json.dumps(measure(args.only, args.workdir, args.save_output)))
        return
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1.")
    benchmark(args)


if __name__ == "__main__":
    main()
