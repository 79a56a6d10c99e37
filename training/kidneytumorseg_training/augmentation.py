"""On-the-fly 3D augmentation of training patches, nnU-Net's default pipeline on MONAI array transforms.

Why MONAI: it is a maintained, torch-native library that is already a dependency, and it has the transforms
nnU-Net uses (affine resampling with nearest-neighbour labels, elastic deformation, gamma with inversion and
retained statistics, Gaussian smoothing, resizing for low-resolution simulation, flips). We draw every random
parameter from one ``numpy.random.Generator`` seeded by the caller and hand them to MONAI's deterministic
transforms (``AffineGrid`` + ``Resample``, ``AdjustContrast``, ``GaussianSmooth``, ``Resize``, ``Flip``), so
that the distributions match nnU-Net's exactly (one isotropic scale factor, "half below / half above 1"
sampling of gamma and contrast) and the same seed always gives the same patch. The elastic field comes from
MONAI's ``Rand3DElastic`` with its random state set from that generator.

Order and probabilities follow nnU-Net v2's ``get_training_transforms``: rotation / scaling (/ elastic) in one
resampling, Gaussian noise, Gaussian blur, multiplicative brightness, contrast, low-resolution simulation,
inverted gamma, gamma, mirroring. Intensity parameters are drawn per channel as in nnU-Net. When
``anisotropic`` is set (nnU-Net's "dummy 2D" case), rotation and scaling act in-plane only (around the S axis)
and low-resolution simulation leaves the S axis alone.

Measured on one CPU core (``torch.set_num_threads(1)``, the caller's job; test_augmentation.py prints it), a
1x48x112x112 patch takes about 0.04 s on average with the defaults and about 0.14 s when every transform fires;
elastic deformation, off by default, costs 3-7 s more (MONAI smooths a full-resolution displacement field with
sigma 9-13 voxels), so enable it only with workers to spare.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from monai.transforms import AdjustContrast, AffineGrid, Flip, GaussianSmooth, Rand3DElastic, Resample, Resize

logger = logging.getLogger(__name__)

_RANGES = ("scale_range", "elastic_sigma", "elastic_magnitude", "noise_variance", "blur_sigma", "brightness_range",
           "contrast_range", "lowres_zoom", "gamma_range")


@dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities and ranges of the augmentation pipeline (nnU-Net v2 defaults).

    Probabilities are per patch unless named ``per_channel`` / ``mirror`` (per axis). Rotation is uniform in
    ±``rotation_degrees`` about each axis (only about S when ``anisotropic``); scale is one factor for all
    (in-plane when anisotropic) axes, drawn from ``(scale_range[0], 1)`` or ``(1, scale_range[1])`` with equal
    odds. Elastic deformation is off (``p_elastic = 0``) as in nnU-Net v2.
    """

    enabled: bool = True
    anisotropic: bool = False
    p_rotation: float = 0.2
    rotation_degrees: float = 30.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    p_elastic: float = 0.0
    elastic_sigma: tuple[float, float] = (9.0, 13.0)
    elastic_magnitude: tuple[float, float] = (0.0, 900.0)
    p_noise: float = 0.1
    noise_variance: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.2
    p_blur_per_channel: float = 0.5
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_lowres: float = 0.25
    p_lowres_per_channel: float = 0.5
    lowres_zoom: tuple[float, float] = (0.5, 1.0)
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_mirror: float = 0.5
    mirror_axes: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"AugmentationConfig.{f.name} must be a probability in [0, 1], got {value}")
            if f.name in _RANGES:
                value = tuple(float(v) for v in value)
                if len(value) != 2 or value[0] > value[1] or value[0] < 0:
                    raise ValueError(f"AugmentationConfig.{f.name} must be (low, high) with 0 <= low <= high, "
                                     f"got {getattr(self, f.name)}")
                object.__setattr__(self, f.name, value)
        axes = tuple(int(a) for a in self.mirror_axes)
        if any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"AugmentationConfig.mirror_axes must be distinct axes among 0, 1, 2, "
                             f"got {self.mirror_axes}")
        object.__setattr__(self, "mirror_axes", axes)
        if self.scale_range[0] <= 0 or self.lowres_zoom[0] <= 0 or self.gamma_range[0] <= 0:
            raise ValueError("AugmentationConfig: scale_range, lowres_zoom and gamma_range must be positive")

    @classmethod
    def none(cls) -> AugmentationConfig:
        """A config that leaves patches untouched."""
        return cls(enabled=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentationConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ValueError."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown augmentation setting(s) {unknown}; valid: {names}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _plain(t: torch.Tensor) -> torch.Tensor:
    """Drop MONAI's MetaTensor wrapper (its metadata is of no use here and slows later ops)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def _below_or_above_one(rng: np.random.Generator, low: float, high: float) -> float:
    """nnU-Net's sampling of scale / gamma / contrast factors: half the time below 1, half above."""
    if rng.random() < 0.5 and low < 1.0:
        return float(rng.uniform(low, 1.0))
    return float(rng.uniform(max(low, 1.0), high))


def _spatial(image: torch.Tensor, label: torch.Tensor, config: AugmentationConfig,
             rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation, scaling and elastic deformation in one resampling; nearest neighbour for the label."""
    rotate = [0.0, 0.0, 0.0]
    scale = 1.0
    do_rotate = rng.random() < config.p_rotation
    do_scale = rng.random() < config.p_scale
    do_elastic = rng.random() < config.p_elastic
    if do_rotate:
        limit = math.radians(config.rotation_degrees)
        rotate = [float(rng.uniform(-limit, limit)) for _ in range(3)]
        if config.anisotropic:
            rotate[1] = rotate[2] = 0.0
    if do_scale:
        scale = _below_or_above_one(rng, *config.scale_range)
    # MONAI's grid maps output voxels to input coordinates: a factor > 1 shows more of the input (zoom out),
    # as batchgenerators' coordinate scaling does.
    scales = [1.0 if config.anisotropic else scale, scale, scale]
    label_f = label[None].float()
    if do_elastic:
        elastic = Rand3DElastic(config.elastic_sigma, config.elastic_magnitude, prob=1.0,
                                rotate_range=[(r, r) for r in rotate],
                                scale_range=[(s - 1.0, s - 1.0) for s in scales], padding_mode="zeros")
        elastic.set_random_state(seed=int(rng.integers(2**31)))
        elastic.randomize(image.shape[1:])
        image = _plain(elastic(image, mode="bilinear", randomize=False))
        label_f = _plain(elastic(label_f, mode="nearest", randomize=False))
    elif do_rotate or do_scale:
        grid, _ = AffineGrid(rotate_params=rotate, scale_params=scales)(spatial_size=image.shape[1:])
        resample = Resample()
        image = _plain(resample(image, grid, mode="bilinear", padding_mode="zeros"))
        label_f = _plain(resample(label_f, grid, mode="nearest", padding_mode="zeros"))
    else:
        return image, label
    return image, torch.round(label_f[0]).to(label.dtype)


def _intensity(image: torch.Tensor, config: AugmentationConfig, rng: np.random.Generator) -> torch.Tensor:
    """nnU-Net's intensity transforms, in its order; each channel draws its own parameters."""
    channels = []
    spatial = image.shape[1:]
    for c in range(image.shape[0]):
        x = image[c:c + 1]
        if rng.random() < config.p_noise:
            std = math.sqrt(rng.uniform(*config.noise_variance))
            x = x + torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32) * np.float32(std))
        if rng.random() < config.p_blur and rng.random() < config.p_blur_per_channel:
            x = _plain(GaussianSmooth(sigma=float(rng.uniform(*config.blur_sigma)))(x))
        if rng.random() < config.p_brightness:
            x = x * float(rng.uniform(*config.brightness_range))
        if rng.random() < config.p_contrast:
            factor = _below_or_above_one(rng, *config.contrast_range)
            mean, lo, hi = x.mean(), x.min(), x.max()
            x = ((x - mean) * factor + mean).clamp(lo, hi)
        if rng.random() < config.p_lowres and rng.random() < config.p_lowres_per_channel:
            zoom = float(rng.uniform(*config.lowres_zoom))
            small = [n if (config.anisotropic and i == 0) else max(1, round(n * zoom)) for i, n in enumerate(spatial)]
            x = _plain(Resize(small, mode="nearest")(x))
            x = _plain(Resize(spatial, mode="trilinear")(x))
        for p, invert in ((config.p_gamma_inverted, True), (config.p_gamma, False)):
            if rng.random() < p:
                gamma = _below_or_above_one(rng, *config.gamma_range)
                x = _plain(AdjustContrast(gamma, invert_image=invert, retain_stats=True)(x))
        channels.append(x)
    return torch.cat(channels, dim=0)


def augment(image: np.ndarray, label: np.ndarray, config: AugmentationConfig,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Augment one patch: ``image`` float32 ``(C, S, P, L)``, ``label`` integer ``(S, P, L)``.

    Returns new arrays of the same shapes (image float32, label in the input's dtype); spatial transforms are
    applied identically to both, the label by nearest neighbour (voxels moved in from outside become 0).
    Deterministic: the same ``seed`` gives identical output. The inputs are not modified.
    """
    image = np.asarray(image)
    label = np.asarray(label)
    if image.ndim != 4 or label.ndim != 3 or image.shape[1:] != label.shape:
        raise ValueError(f"augment expects image (C, S, P, L) and label (S, P, L) on the same grid, got "
                         f"{image.shape} and {label.shape}")
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"augment expects an integer label, got dtype {label.dtype}")
    if not config.enabled:
        return image.astype(np.float32, copy=True), label.copy()
    rng = np.random.default_rng(seed)
    img = torch.from_numpy(np.array(image, dtype=np.float32))
    lab = torch.from_numpy(label.astype(np.int64))
    img, lab = _spatial(img, lab, config, rng)
    img = _intensity(img, config, rng)
    axes = [a for a in config.mirror_axes if rng.random() < config.p_mirror]
    if axes:
        flip = Flip(spatial_axis=axes)
        img = _plain(flip(img))
        lab = _plain(flip(lab[None]))[0]
    return img.numpy().astype(np.float32, copy=False), lab.numpy().astype(label.dtype)
