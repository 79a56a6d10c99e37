"""Benchmark: our sliding-window predictor against nnU-Net v2's and MONAI's, same network, weights and volume.

    .venv/bin/python benchmarks/predictor_vs_peers.py                    # defaults: a few minutes on 2 cores
    .venv/bin/python benchmarks/predictor_vs_peers.py --mirror --repeats 5
    .venv/bin/python benchmarks/predictor_vs_peers.py --spacing 3 1.5 1.5 --patch 64 128 128 --features 32

Needs nnunetv2 (``pip install nnunetv2 -c constraints.txt``, then ``pip uninstall -y torchvision``: torchvision
must not be importable here; this script also refuses to import it).

What runs, on the same preprocessed volume (float32, already at the model spacing, ``(S, P, L)``):

- ``ours``: :func:`kidneytumorseg.sliding_window.sliding_window_predict`, batch 1, on the CPU.
- ``nnU-Net``: nnU-Net v2's ``nnUNetPredictor.predict_sliding_window_return_logits`` (its own tile placement,
  Gaussian, mirroring and accumulation), initialised with ``manual_initialization`` from a minimal plans
  dict (patch size only) and a dataset.json with as many labels as the network has outputs; nothing trained.
- ``MONAI``: ``monai.inferers.sliding_window_inference`` with ``mode="gaussian"``; it has no test-time
  mirroring, so with ``--mirror`` the predictor it calls averages the mirrored copies itself.

All three get the same network (``build_network(plan_network(patch, spacing, base_features, max_features))``,
random weights from ``torch.manual_seed(0)``, eval mode, no deep supervision) and identical settings: tile =
``--patch``, our ``tile_overlap`` = 1 - nnU-Net's ``tile_step_size`` = MONAI's ``overlap``, Gaussian sigma =
1/8 of the tile per axis (nnU-Net's fixed ``sigma_scale``; ours ``gaussian_sigma_scale=0.125``; MONAI
``sigma_scale=0.125``), the same mirrored axes (none by default, for speed; ``--mirror``: all three axes, 8
forward passes per tile), volumes smaller than a tile padded with 0 (centred) by all three.

Differences that remain, read from the sources of nnunetv2 2.x and MONAI 1.x:

- Tile placement: nnU-Net and ours spread the tiles evenly (first at 0, last flush with the end); MONAI steps
  by ``int(tile * (1 - overlap))`` and moves only the last tile back. They coincide when every axis longer
  than the tile is ``tile + k * step`` voxels, so by default the volume is padded with 0 (the normalised
  mean) up to such a size before anything runs (``--no-align`` keeps its size; MONAI then tiles differently).
- What is averaged: ours averages the *softmax* of the tiles (and of the mirrored copies); nnU-Net and MONAI
  average whatever the network returns, i.e. *logits*, and the softmax is taken afterwards. With
  ``--accumulate softmax`` (default) the network handed to nnU-Net and MONAI is wrapped to return its softmax,
  so all three average probabilities the same way and the difference measures the machinery only. With
  ``--accumulate logits`` they get the bare network (their native behaviour) and their result goes through a
  softmax before the comparison; the difference then also contains logit-vs-probability averaging. Unless
  ``--no-native-rows``, each peer is also run once (timed, n=1) in the other mode, and both are reported.
- Precision: nnU-Net accumulates in float16 (its buffers are ``torch.half`` even on the CPU) with a Gaussian
  scaled to a maximum of 10; ours and MONAI accumulate in float32.
- Gaussian: ours and MONAI sample exp(-d^2 / 2 sigma^2) around the tile centre (n - 1) / 2; nnU-Net filters
  a delta at n // 2 (half a voxel off on even tiles). MONAI clamps weights below 1e-3 to 1e-3; ours and
  nnU-Net only replace zeros by the smallest positive weight.

``network forward alone`` runs the same network over the same tiles (and mirrored copies) and blends nothing:
the floor all three share at these settings, measured once, to show what dominates the time.

What is compared: for every peer, the largest absolute difference over all voxels and classes between its
probabilities and ours (the same repeat-1 outputs), and the share of voxels whose argmax label equals ours.

Coarse-to-fine mode (``ours, coarse-to-fine``): :func:`kidneytumorseg.predictor_core.predict` with a localizer
and :class:`CascadeSettings` (margin ``--margin-mm``, up to 2 boxes). A localizer with random weights would
draw meaningless boxes, so the localizer used there is a fixed module holding the case's reference mask
(``segmentation.nii.gz``, labels > 0) on the localizer's coarse grid as a buffer; it returns that mask as
logits, so the boxes are those a perfect localizer would give. Its own forward costs nothing, so the time a
real localizer network takes (the planned U-Net at ``--localizer-spacing`` / ``--localizer-patch`` with random
weights, run through :func:`kidneytumorseg.predictor_core.localize`, boxes discarded) is measured as its own
row and added in the ``total`` row. The labels inside the boxes are compared with the full run's labels
(argmax, no post-processing), on every box voxel and on the reference kidney-and-mass voxels.

How it is measured: every measurement is a fresh process (this script with ``--only PEER``) that loads the
volume and the saved weights, times the one sliding-window call with ``time.perf_counter`` (no warm-up run:
each peer pays the same first-call costs) and reports its peak resident memory (``ru_maxrss``, which includes
the imported libraries) and its resident memory just before the call; ``+MB in call`` is the difference.
The peers are interleaved, in a rotated order, in every repeat; the median over ``--repeats`` is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.metadata
import io
import itertools
import json
import logging
import math
import os
import platform
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
# The benchmark volume is normalised once; the predictor core then gets a normalisation that leaves it as it is.
IDENTITY_NORMALIZATION = {"scheme": "clip_zscore", "clip": [-1.0e6, 1.0e6], "mean": 0.0, "std": 1.0}
SIGMA_SCALE = 0.125  # nnU-Net's fixed Gaussian: sigma = tile / 8
PEERS = ("ours", "nnunet", "monai")
PEER_NAMES = {"ours": "ours", "nnunet": "nnU-Net v2", "monai": "MONAI", "cascade": "ours, coarse-to-fine",
              "localizer": "localizer network", "forward": "network forward alone"}
MEASUREMENTS = (*PEERS, "cascade", "localizer", "forward")
ACCUMULATIONS = ("softmax", "logits")
WEIGHTINGS = ("shared", "own")


class _NoTorchvision(importlib.abc.MetaPathFinder):
    """Refuses ``import torchvision``: its compiled ops do not load against this project's CPU torch build.

    MONAI asks for it through ``optional_import`` (which takes an ImportError as "not installed"), and nnunetv2
    pulls it in as a dependency of timm, which nothing run here needs.
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


@dataclass(frozen=True)
class SlidingWindowConfig:
    """The settings all peers share."""

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


def _flip_sets(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of mirrored axes, the unmirrored one first."""
    axes = sorted(set(mirror_axes))
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


class PeerNetwork(torch.nn.Module):
    """The shared network as a peer's sliding window sees it.

    ``softmax=True`` returns the softmax instead of the logits (so the peer averages probabilities, as ours
    does); ``mirror_axes`` (for MONAI, which has no mirroring of its own) averages the outputs of every
    mirrored copy, flipped back, as ours and nnU-Net do.
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
            # Only read when nnU-Net builds the network itself, which it does not here.
            "architecture": {"network_class_name": "kidneytumorseg.networks.UNet", "arch_kwargs": {},
                             "_kw_requires_import": []},
        }},
    }
    dataset_json = {"labels": {"background": 0, **{f"class_{i}": i for i in range(1, config.num_classes)}},
                    "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
    plans_manager = PlansManager(plans)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # nnU-Net prints its notes; keep stdout for our table
        predictor = nnUNetPredictor(tile_step_size=1.0 - config.overlap, use_gaussian=True,
                                    use_mirroring=bool(config.mirror_axes), perform_everything_on_device=False,
                                    device=torch.device("cpu"), verbose=False, allow_tqdm=False)
        predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration("3d_fullres"),
                                        None, dataset_json, "nnUNetTrainer",
                                        tuple(config.mirror_axes) if config.mirror_axes else None)
    if printed.getvalue().strip():
        logger.debug("nnU-Net said: %s", printed.getvalue().strip())
    if predictor.label_manager.num_segmentation_heads != config.num_classes:
        raise RuntimeError(f"nnU-Net expects {predictor.label_manager.num_segmentation_heads} outputs, the network "
                           f"has {config.num_classes}.")
    return predictor


@contextlib.contextmanager
def _nnunet_uses_our_gaussian(patch_size: Sequence[int]) -> Iterator[None]:
    """Make nnU-Net blend with our Gaussian map (scaled, typed and zero-guarded as its own) while inside."""
    import nnunetv2.inference.predict_from_raw_data as nnunet_module

    ours = gaussian_importance_map(patch_size, SIGMA_SCALE).astype(np.float64)
    original = nnunet_module.compute_gaussian

    def our_gaussian(tile_size: Sequence[int], sigma_scale: float = SIGMA_SCALE, value_scaling_factor: float = 1.0,
                     dtype: torch.dtype = torch.float16, device: torch.device | None = None) -> torch.Tensor:
        if tuple(tile_size) != tuple(ours.shape) or not math.isclose(sigma_scale, SIGMA_SCALE):
            raise ValueError(f"nnU-Net asked for a Gaussian over {tuple(tile_size)} with sigma scale {sigma_scale}; "
                             f"the shared map is {ours.shape} with {SIGMA_SCALE}.")
        weights = torch.from_numpy(ours / ours.max() * value_scaling_factor).to(device=device, dtype=dtype)
        weights[weights == 0] = torch.min(weights[weights != 0])
        return weights

    nnunet_module.compute_gaussian = our_gaussian
    try:
        yield
    finally:
        nnunet_module.compute_gaussian = original


def peer_runner(peer: str, network: torch.nn.Module, config: SlidingWindowConfig, accumulate: str = "softmax",
                weights: str = "shared") -> Callable[[np.ndarray], torch.Tensor]:
    """A function running ``peer``'s sliding window over a normalised ``(S, P, L)`` volume.

    It returns what the peer returns, ``(C, S, P, L)`` on the CPU: probabilities for ``ours`` and, for the
    others, the average of what their network returns (``accumulate``: its softmax or its logits).
    ``weights="shared"`` has the peers blend tiles with our Gaussian map (MONAI through its ``roi_weight_map``
    argument, nnU-Net by replacing its ``compute_gaussian`` during the call); ``"own"`` uses their own.
    """
    if accumulate not in ACCUMULATIONS:
        raise ValueError(f"accumulate must be one of {ACCUMULATIONS}, got {accumulate!r}.")
    if weights not in WEIGHTINGS:
        raise ValueError(f"weights must be one of {WEIGHTINGS}, got {weights!r}.")
    network.eval()
    if hasattr(network, "deep_supervision"):
        network.deep_supervision = False
    if peer == "ours":
        def run_ours(volume: np.ndarray) -> torch.Tensor:
            return sliding_window_predict(network, volume, config.patch_size, config.overlap, config.mirror_axes,
                                          SIGMA_SCALE, batch_size=1, device="cpu")
        return run_ours
    if peer == "nnunet":
        predictor = nnunet_predictor(PeerNetwork(network, accumulate == "softmax"), config)

        def run_nnunet(volume: np.ndarray) -> torch.Tensor:
            blending = _nnunet_uses_our_gaussian(config.patch_size) if weights == "shared" else contextlib.nullcontext()
            with blending:
                return predictor.predict_sliding_window_return_logits(torch.from_numpy(volume)[None])
        return run_nnunet
    if peer == "monai":
        block_torchvision()
        from monai.inferers import sliding_window_inference

        wrapped = PeerNetwork(network, accumulate == "softmax", config.mirror_axes).eval()
        weight_map = (torch.from_numpy(gaussian_importance_map(config.patch_size, SIGMA_SCALE))
                      if weights == "shared" else None)

        def run_monai(volume: np.ndarray) -> torch.Tensor:
            with torch.no_grad():
                output = sliding_window_inference(
                    torch.from_numpy(volume)[None, None], roi_size=config.patch_size, sw_batch_size=1,
                    predictor=wrapped, overlap=config.overlap, mode="gaussian", sigma_scale=SIGMA_SCALE,
                    padding_mode="constant", cval=0.0, roi_weight_map=weight_map)
            return output[0]
        return run_monai
    raise ValueError(f"Unknown peer {peer!r}; use one of {PEERS}.")


def as_probabilities(peer: str, output: torch.Tensor, accumulate: str) -> np.ndarray:
    """A peer's output as float32 probabilities (softmax over classes of averaged logits)."""
    output = output.detach().float()
    if peer != "ours" and accumulate == "logits":
        output = torch.softmax(output, dim=0)
    return output.cpu().numpy()


def predict_probabilities(peer: str, network: torch.nn.Module, volume: np.ndarray, config: SlidingWindowConfig,
                          accumulate: str = "softmax", weights: str = "shared") -> np.ndarray:
    """Probabilities ``(C, S, P, L)`` of ``peer`` on ``volume`` (for tests and one-off checks)."""
    return as_probabilities(peer, peer_runner(peer, network, config, accumulate, weights)(volume), accumulate)


class ReferenceMaskLocalizer(torch.nn.Module):
    """A stand-in localizer: returns a fixed foreground mask (on the localizer's grid) as logits.

    It only accepts a tile the size of its mask, so the localizer settings must use the whole coarse volume
    as the patch (one tile, no padding).
    """

    def __init__(self, foreground: np.ndarray, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("foreground", torch.from_numpy(np.asarray(foreground, dtype=np.float32)))
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != tuple(self.foreground.shape):
            raise ValueError(f"The reference-mask localizer needs the whole coarse volume "
                             f"{tuple(self.foreground.shape)} as one tile, got {tuple(x.shape[2:])}.")
        foreground = self.foreground.expand(x.shape[0], 1, *self.foreground.shape).to(x.dtype)
        background = 20.0 * (1.0 - 2.0 * foreground)
        others = torch.full_like(foreground, -20.0).expand(-1, self.num_classes - 2, *self.foreground.shape)
        return torch.cat([background, torch.zeros_like(foreground), others], dim=1)


# --- the case and the saved network -------------------------------------------------------------------------

@dataclass
class Setup:
    """Everything a measurement process needs, saved as ``setup.json`` next to the arrays and weights."""

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
        return SlidingWindowConfig(tuple(self.patch_size), self.overlap, tuple(self.mirror_axes),  # type: ignore[arg-type]
                                   self.num_classes)

    @classmethod
    def load(cls, workdir: Path) -> Setup:
        return cls(**json.loads((workdir / "setup.json").read_text()))


def aligned_padding(
    shape: Sequence[int], patch: Sequence[int], overlap: float
) -> tuple[list[tuple[int, int]], list[str]]:
    """Zero padding (before, after) per axis so that nnU-Net's, MONAI's and our tiles start at the same voxels."""
    padding, notes = [], []
    for axis, (n, p) in enumerate(zip(shape, patch, strict=True)):
        step = p * (1.0 - overlap)
        if n <= p:
            padding.append((0, 0))  # one tile; all three pad it to the patch the same way
            continue
        if abs(step - round(step)) > 1e-9:
            notes.append(f"axis {axis}: tile step {step:g} is not whole; MONAI's tiles differ from ours there")
            padding.append((0, 0))
            continue
        aligned = p + int(math.ceil((n - p) / round(step))) * int(round(step))
        missing = aligned - n
        padding.append((missing // 2, missing - missing // 2))
    return padding, notes


def prepare(args: argparse.Namespace, workdir: Path) -> Setup:
    """Preprocess the case, plan and build the network, save both; return the setup."""
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
        notes.append("--no-align: MONAI's tile starts may differ from nnU-Net's and ours")
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

    padded_tiles = [max(n, p) for n, p in zip(volume.shape, patch, strict=True)]
    setup = Setup(
        case=str(case), spacing=target, original_shape=original_shape, shape=tuple(int(n) for n in volume.shape),
        padding=padding, patch_size=patch, overlap=float(args.overlap),
        mirror_axes=(0, 1, 2) if args.mirror else (), num_classes=config.num_classes, network=config.to_dict(),
        parameters=count_parameters(network), tiles=len(tile_slices(padded_tiles, patch, args.overlap)),
        margin_mm=float(args.margin_mm), localizer_spacing=localizer_spacing, localizer_patch=localizer_patch,
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


# --- one measurement (runs in its own process) --------------------------------------------------------------

def _rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc; elsewhere the peak so far)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _peak_rss_mb()


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def measure(peer: str, workdir: Path, accumulate: str, save_output: bool) -> dict[str, Any]:
    """Time one prediction of ``peer`` on the saved case; save its output when asked."""
    setup = Setup.load(workdir)
    if setup.threads:
        torch.set_num_threads(setup.threads)
    volume = np.load(workdir / "volume.npy")
    network = _load_network(setup.network, workdir / "network.safetensors")
    extra: dict[str, Any] = {}
    if peer in PEERS:
        run = peer_runner(peer, network, setup.config, accumulate)
        before = _rss_mb()
        start = time.perf_counter()
        output = run(volume)
        seconds = time.perf_counter() - start
        if save_output:
            np.save(workdir / f"{peer}-{accumulate}.npy", as_probabilities(peer, output, accumulate))
    elif peer == "cascade":
        settings = PredictorSettings(target_spacing=setup.spacing, patch_size=setup.patch_size,
                                     normalization=IDENTITY_NORMALIZATION, tile_overlap=setup.overlap,
                                     mirror_axes=setup.mirror_axes, gaussian_sigma_scale=SIGMA_SCALE, device="cpu")
        localizer_settings = PredictorSettings(target_spacing=setup.localizer_spacing, patch_size=setup.coarse_shape,
                                               normalization=IDENTITY_NORMALIZATION, device="cpu")
        cascade = CascadeSettings(localizer_settings, margin_mm=setup.margin_mm, threshold=0.5, max_boxes=2)
        localizer = ReferenceMaskLocalizer(np.load(workdir / "coarse_kidney.npy"), setup.num_classes)
        before = _rss_mb()
        start = time.perf_counter()
        prediction = predict(volume, setup.spacing, [network], settings, None, localizer, cascade)
        seconds = time.perf_counter() - start
        extra["boxes"] = [[[s.start, s.stop] for s in box] for box in prediction.boxes]
        if save_output:
            np.save(workdir / "cascade-labels.npy", prediction.labels)
            np.save(workdir / "cascade-probabilities.npy", prediction.probabilities)
    elif peer == "forward":
        flips = _flip_sets(setup.mirror_axes)
        missing = [max(0, p - n) for n, p in zip(volume.shape, setup.patch_size, strict=True)]
        padded = torch.from_numpy(np.pad(volume, [(m // 2, m - m // 2) for m in missing]))[None]
        tiles = tile_slices(padded.shape[1:], setup.patch_size, setup.overlap)
        before = _rss_mb()
        start = time.perf_counter()
        with torch.no_grad():
            for tile in tiles:
                batch = padded[(slice(None), *tile)][None]
                for flip in flips:
                    network(torch.flip(batch, [2 + axis for axis in flip]) if flip else batch)
        seconds = time.perf_counter() - start
    elif peer == "localizer":
        localizer = _load_network(setup.localizer_network, workdir / "localizer.safetensors")
        settings = PredictorSettings(target_spacing=setup.localizer_spacing, patch_size=setup.localizer_patch,
                                     normalization=IDENTITY_NORMALIZATION, tile_overlap=setup.overlap,
                                     mirror_axes=setup.mirror_axes, gaussian_sigma_scale=SIGMA_SCALE, device="cpu")
        before = _rss_mb()
        start = time.perf_counter()
        localize(volume, setup.spacing, localizer, settings, margin_mm=setup.margin_mm)
        seconds = time.perf_counter() - start
    else:
        raise ValueError(f"Unknown peer {peer!r}; use one of {MEASUREMENTS}.")
    return {"peer": peer, "accumulate": accumulate, "seconds": seconds, "rss_before_mb": before,
            "peak_rss_mb": _peak_rss_mb(), "threads": torch.get_num_threads(), **extra}


def run_measurement(peer: str, workdir: Path, accumulate: str, save_output: bool) -> dict[str, Any]:
    """Run :func:`measure` in a fresh process (this script with ``--only``) and return its result."""
    result_path = workdir / f"result-{peer}-{accumulate}-{time.monotonic_ns()}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--only", peer, "--workdir", str(workdir),
               "--accumulate", accumulate, "--result", str(result_path)]
    if save_output:
        command.append("--save-output")
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.stdout.strip():
        logger.debug("%s printed: %s", peer, completed.stdout.strip())
    if completed.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"The {peer} measurement failed (exit code {completed.returncode}):\n"
                           f"{completed.stderr.strip()[-4000:]}")
    result = json.loads(result_path.read_text())
    logger.info("  %-10s %-8s %7.2f s  peak RSS %6.0f MB", peer, accumulate, result["seconds"],
                result["peak_rss_mb"])
    return result


# --- the comparison and the table ---------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


Results = dict[tuple[str, str], list[dict[str, Any]]]


def _settings_text(peer: str, accumulate: str, setup: Setup) -> str:
    if peer == "ours":
        return "softmax averaged, fp32"
    if peer == "nnunet":
        return f"{accumulate} averaged, fp16"
    if peer == "monai":
        return f"{accumulate} averaged, fp32"
    if peer == "cascade":
        return f"reference-mask boxes, {setup.margin_mm:g} mm margin"
    return f"{'x'.join(map(str, setup.localizer_patch))} @ {'x'.join(f'{s:g}' for s in setup.localizer_spacing)} mm"


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _row(name: str, settings: str, seconds: list[float], nnunet_seconds: float,
         runs: list[dict[str, Any]] | None, difference: str, labels: str) -> list[str]:
    """One table row; ``runs`` gives the memory columns (None: not measured on its own)."""
    median = statistics.median(seconds)
    peak = "-" if runs is None else f"{_median(runs, 'peak_rss_mb'):.0f}"
    growth = "-" if runs is None else f"{statistics.median(r['peak_rss_mb'] - r['rss_before_mb'] for r in runs):+.0f}"
    return [name, settings, f"{median:.2f} (n={len(seconds)})", f"{median / nnunet_seconds:.2f}x", peak, growth,
            difference, labels]


def _print_table(rows: list[list[str]]) -> None:
    header = ["peer", "what is averaged", "median s", "vs nnU-Net", "peak RSS MB", "+MB in call",
              "max |dp| vs ours", "labels = ours"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * width for width in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@dataclass
class CascadeCheck:
    """How the coarse-to-fine run compares with the full run of ours."""

    boxes: list[list[list[int]]]
    box_voxels: int
    voxels: int
    kidney_voxels: int
    same_in_boxes: float
    same_on_kidney: float
    difference_in_boxes: float


def _check_cascade(workdir: Path, boxes: list[list[list[int]]], ours: np.ndarray) -> CascadeCheck:
    labels = np.load(workdir / "cascade-labels.npy")
    probabilities = np.load(workdir / "cascade-probabilities.npy")
    kidney = np.load(workdir / "kidney.npy")
    inside = np.zeros(labels.shape, dtype=bool)
    for box in boxes:
        inside[tuple(slice(start, stop) for start, stop in box)] = True
    ours_labels = ours.argmax(0)
    if not inside.any():
        raise RuntimeError("The reference-mask localizer gave no box; is the case's segmentation empty?")
    return CascadeCheck(
        boxes=boxes, box_voxels=int(inside.sum()), voxels=int(inside.size), kidney_voxels=int(kidney.sum()),
        same_in_boxes=float(np.mean(labels[inside] == ours_labels[inside])),
        same_on_kidney=float(np.mean(labels[kidney] == ours_labels[kidney])) if kidney.any() else float("nan"),
        difference_in_boxes=float(np.abs(probabilities[:, inside] - ours[:, inside]).max()),
    )


def _run_all(args: argparse.Namespace, workdir: Path) -> Results:
    """Every measurement, the peers interleaved in a rotated order per repeat; outputs saved from repeat 1."""
    peers = [*PEERS, *(("cascade", "localizer") if args.cascade else ())]
    results: Results = {}
    for repeat in range(args.repeats):
        logger.info("Repeat %d/%d", repeat + 1, args.repeats)
        shift = repeat % len(peers)
        for peer in peers[shift:] + peers[:shift]:
            results.setdefault((peer, args.accumulate), []).append(
                run_measurement(peer, workdir, args.accumulate, save_output=repeat == 0))
    logger.info("The network forward alone over the same tiles, once")
    results[("forward", args.accumulate)] = [run_measurement("forward", workdir, args.accumulate, False)]
    if args.native_rows:
        other = "logits" if args.accumulate == "softmax" else "softmax"
        logger.info("nnU-Net and MONAI averaging %s, once each", other)
        for peer in ("nnunet", "monai"):
            results[(peer, other)] = [run_measurement(peer, workdir, other, save_output=True)]
    return results


def _report(args: argparse.Namespace, setup: Setup, workdir: Path, results: Results, minutes: float) -> None:
    """Print the settings, the table and the verdicts."""
    ours = np.load(workdir / f"ours-{args.accumulate}.npy")
    ours_labels = ours.argmax(0)
    nnunet_seconds = _median(results[("nnunet", args.accumulate)], "seconds")
    rows, differences = [], {}
    for (peer, accumulate), runs in results.items():
        if peer not in PEERS:
            continue
        difference, labels = "0", "100%"
        if peer != "ours":
            probabilities = np.load(workdir / f"{peer}-{accumulate}.npy")
            differences[(peer, accumulate)] = float(np.abs(probabilities - ours).max())
            difference = f"{differences[(peer, accumulate)]:.2e}"
            labels = f"{100 * np.mean(probabilities.argmax(0) == ours_labels):.3f}%"
        name = PEER_NAMES[peer] + ("" if accumulate == args.accumulate else " (n=1 run)")
        rows.append(_row(name, _settings_text(peer, accumulate, setup), [r["seconds"] for r in runs], nnunet_seconds,
                         runs, difference, labels))
    forward_runs = results[("forward", args.accumulate)]
    rows.append(_row(PEER_NAMES["forward"], "tiles x mirrorings, no blending", [r["seconds"] for r in forward_runs],
                     nnunet_seconds, forward_runs, "-", "-"))
    check = None
    if args.cascade:
        cascade_runs = results[("cascade", args.accumulate)]
        localizer_runs = results[("localizer", args.accumulate)]
        check = _check_cascade(workdir, cascade_runs[0]["boxes"], ours)
        totals = [c["seconds"] + loc["seconds"] for c, loc in zip(cascade_runs, localizer_runs, strict=True)]
        rows += [
            _row(PEER_NAMES["cascade"], _settings_text("cascade", "", setup), [r["seconds"] for r in cascade_runs],
                 nnunet_seconds, cascade_runs, f"{check.difference_in_boxes:.2e} in boxes",
                 f"{100 * check.same_in_boxes:.3f}% in boxes"),
            _row(PEER_NAMES["localizer"] + " (random weights)", _settings_text("localizer", "", setup),
                 [r["seconds"] for r in localizer_runs], nnunet_seconds, localizer_runs, "-", "-"),
            _row("ours, coarse-to-fine total", "the two rows above", totals, nnunet_seconds, None, "-",
                 f"{100 * check.same_on_kidney:.3f}% on kidneys"),
        ]

    threads = results[("ours", args.accumulate)][0]["threads"]
    print("Predictor vs peers: one network, one set of weights, one preprocessed volume")
    print(f"Hardware: {_cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {threads} "
          f"threads; nnunetv2 {_version('nnunetv2')}, monai {_version('monai')}; Python {platform.python_version()}.")
    print(f"Case: {setup.case}, normalised (clip_zscore) and resampled to {setup.spacing} mm: "
          f"{setup.original_shape} voxels, zero-padded to {setup.shape} (per axis {setup.padding}).")
    print(f"Network: plain U-Net planned for {setup.patch_size} at {setup.spacing} mm, features "
          f"{setup.network['features_per_stage']}, {setup.parameters:,} parameters, random weights (seed 0).")
    print(f"Settings: tile {setup.patch_size}, overlap {setup.overlap:g} (nnU-Net tile_step_size "
          f"{1 - setup.overlap:g}), Gaussian sigma = tile/8, mirroring "
          f"{list(setup.mirror_axes) if setup.mirror_axes else 'off'}, batch 1, CPU: {setup.tiles} tiles.")
    for note in setup.notes:
        print(f"Note: {note}.")
    print(f"Each measurement is a fresh process timing one call; {args.repeats} repeats, peers interleaved; "
          f"total {minutes:.1f} min.")
    print()
    _print_table(rows)
    print()
    ours_ratio = _median(results[("ours", args.accumulate)], "seconds") / nnunet_seconds
    print(f"Goal at identical settings, ours <= 0.80x nnU-Net: {ours_ratio:.2f}x, "
          f"{'met' if ours_ratio <= 0.8 else 'NOT met'}.")
    forward_seconds = _median(forward_runs, "seconds")
    print(f"The network forward alone takes {forward_seconds:.2f} s: "
          f"{100 * forward_seconds / _median(results[('ours', args.accumulate)], 'seconds'):.0f}% of ours, "
          f"{100 * forward_seconds / nnunet_seconds:.0f}% of nnU-Net's; the rest is tiling, weighting and blending.")
    for (peer, accumulate), difference in differences.items():
        print(f"max |dp| {PEER_NAMES[peer]} ({accumulate} averaged) vs ours: {difference:.2e}, "
              f"{'below' if difference < 1e-3 else 'NOT below'} 1e-3.")
    if check is not None:
        cascade_runs = results[("cascade", args.accumulate)]
        totals = [c["seconds"] + loc["seconds"]
                  for c, loc in zip(cascade_runs, results[("localizer", args.accumulate)], strict=True)]
        total_ratio = statistics.median(totals) / nnunet_seconds
        print(f"Goal coarse-to-fine <= 0.25x nnU-Net: {total_ratio:.2f}x with the localizer network "
              f"({_median(cascade_runs, 'seconds') / nnunet_seconds:.2f}x without), "
              f"{'met' if total_ratio <= 0.25 else 'NOT met'}.")
        print(f"Cascade boxes (S, P, L voxel ranges): {check.boxes}, {check.box_voxels} of {check.voxels} voxels "
              f"({100 * check.box_voxels / check.voxels:.1f}%).")
        print(f"Labels from the boxes equal the full run's on {100 * check.same_in_boxes:.4f}% of box voxels and "
              f"{100 * check.same_on_kidney:.4f}% of the {check.kidney_voxels} reference kidney-and-mass voxels "
              f"({'the same labels' if check.same_on_kidney == 1.0 else 'NOT the same labels'} on the kidneys).")
        print("The coarse-to-fine row's localizer is a fixed module returning the case's reference mask, not a "
              "network; the localizer-network row times a real-sized localizer with random weights (its boxes unused).")


def benchmark(args: argparse.Namespace) -> None:
    """Prepare the case, run every measurement, print the report."""
    for package in ("nnunetv2", "monai"):
        if _version(package) == "not installed":
            raise SystemExit(f"{package} is not installed: .venv/bin/pip install {package} -c constraints.txt "
                             f"(then .venv/bin/pip uninstall -y torchvision).")
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
                        help="folder with imaging.nii.gz and segmentation.nii.gz (default: the synthetic case_00112)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(3.0, 2.0, 2.0), metavar=("SI", "AP", "LR"),
                        help="model spacing in mm, (S, P, L) (default 3 2 2)")
    parser.add_argument("--patch", type=int, nargs=3, default=(64, 128, 128), metavar=("S", "P", "L"),
                        help="tile size in voxels (default 64 128 128)")
    parser.add_argument("--features", type=int, default=32, help="features of the first stage (default 32)")
    parser.add_argument("--max-features", type=int, default=320, help="feature cap (default 320)")
    parser.add_argument("--overlap", type=float, default=0.5, help="tile overlap (default 0.5 = step 0.5)")
    parser.add_argument("--mirror", action="store_true",
                        help="mirror over all three axes (8 passes per tile); off by default for speed")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per peer (default 3)")
    parser.add_argument("--accumulate", choices=ACCUMULATIONS, default="softmax",
                        help="what nnU-Net and MONAI average in the timed runs (default softmax, as ours)")
    parser.add_argument("--native-rows", action=argparse.BooleanOptionalAction, default=True,
                        help="also run nnU-Net and MONAI once averaging the other quantity (default on)")
    parser.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                        help="pad the volume so MONAI's tiles start where nnU-Net's and ours do (default on)")
    parser.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=True,
                        help="also time our coarse-to-fine mode (default on)")
    parser.add_argument("--margin-mm", type=float, default=15.0, help="cascade box margin (default 15 mm)")
    parser.add_argument("--localizer-spacing", type=float, nargs=3, default=(6.0, 6.0, 6.0),
                        help="the localizer's coarse spacing (default 6 6 6)")
    parser.add_argument("--localizer-patch", type=int, nargs=3, default=(32, 64, 64),
                        help="the localizer's tile (default 32 64 64)")
    parser.add_argument("--localizer-features", type=int, default=16, help="localizer first-stage features (16)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--only", choices=MEASUREMENTS, help=argparse.SUPPRESS)
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
            raise SystemExit("--only needs --workdir and --result (it is run by this script itself).")
        result = measure(args.only, args.workdir, args.accumulate, args.save_output)
        args.result.write_text(json.dumps(result))
        return
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1.")
    benchmark(args)


if __name__ == "__main__":
    main()
