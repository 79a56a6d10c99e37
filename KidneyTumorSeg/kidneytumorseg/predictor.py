"""Segment a CT with a model package: the Python API behind ``kidneytumorseg predict``, the Slicer module
and the web front-end.

    from kidneytumorseg.predictor import Predictor, PredictionOptions
    predictor = Predictor.from_store("kits-demo", PredictionOptions(quality="default"))
    result = predictor.segment(read_ct("case.nii.gz"))        # a SimpleITK image, any orientation
    result.labels                                             # label map on exactly the input grid
    result.volumes_ml                                         # {"kidney": ..., "tumor": ..., "cyst": ...}

Images are re-oriented to LPS for the networks and the labels are put back on the input's exact grid
(size, spacing, origin, direction).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from kidneytumorseg.device import select_device
from kidneytumorseg.errors import InputImageError, ModelPackageError
from kidneytumorseg.geometry import image_from_lps, to_lps
from kidneytumorseg.input_checks import check_ct_volume, check_prediction_memory
from kidneytumorseg.model_package import MemberSpec, ModelPackage, build_member, default_builder
from kidneytumorseg.model_store import ModelStore
from kidneytumorseg.postprocessing import PostprocessingSettings
from kidneytumorseg.predictor_core import CascadeSettings, PredictorSettings, predict

logger = logging.getLogger(__name__)

QUALITIES = ("fast", "default", "best")
ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class PredictionOptions:
    """How to run a package.

    quality: ``fast`` (first segmenter member, no mirroring), ``default`` (all segmenter members, no
    mirroring) or ``best`` (all members with mirroring test-time augmentation).
    members: names of the segmenter members to use (e.g. folds), overriding the quality's choice.
    cascade: use the package's localizer to segment only around the kidneys (default: when it has one).
    """

    quality: str = "default"
    device: str = "auto"
    members: tuple[str, ...] | None = None
    tile_overlap: float | None = None
    cascade: bool | None = None
    allow_non_ct: bool = False
    batch_size: int = 1

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise InputImageError(f"quality must be one of {', '.join(QUALITIES)}, not {self.quality!r}.")


@dataclass
class SegmentationResult:
    """The label map on the input's grid, the volumes per label, and what made it."""

    labels: sitk.Image
    volumes_ml: dict[str, float]
    model: str
    members: tuple[str, ...]
    seconds: float
    boxes: list = field(default_factory=list)


def settings_for(member: MemberSpec, **overrides: Any) -> PredictorSettings:
    """Predictor settings of a member (its effective preprocessing, patch size and inference)."""
    inference = {key: member.inference[key] for key in ("tile_overlap", "mirror_axes", "gaussian_sigma_scale")
                 if key in member.inference}
    inference.update({key: value for key, value in overrides.items() if value is not None})
    return PredictorSettings(
        target_spacing=member.preprocessing["target_spacing"], patch_size=member.patch_size,
        normalization=member.preprocessing["normalization"], **inference,
    )


class Predictor:
    """A loaded model package, ready to segment images. Loading verifies every member's sha256."""

    def __init__(self, package: ModelPackage, options: PredictionOptions | None = None,
                 builder: Callable[[dict], torch.nn.Module] = default_builder) -> None:
        self.package = package
        self.options = options or PredictionOptions()
        self.device = select_device(self.options.device)
        self.segmenter_specs = self._choose_segmenters()
        self.settings = self._shared_settings(self.segmenter_specs)
        self.members = [build_member(package, spec, builder=builder, device=str(self.device))
                        for spec in self.segmenter_specs]
        localizer_spec = package.localizer
        use_cascade = self.options.cascade if self.options.cascade is not None else localizer_spec is not None
        if use_cascade and localizer_spec is None:
            raise ModelPackageError(
                f"{package.name}@{package.version} has no localizer member, so the coarse-to-fine mode is not "
                f"available; run without --cascade."
            )
        self.localizer = build_member(package, localizer_spec, builder=builder, device=str(self.device)) \
            if use_cascade else None
        self.cascade = CascadeSettings(localizer=settings_for(localizer_spec, device=str(self.device),
                                                              mirror_axes=())) if use_cascade else None
        self.postprocessing = PostprocessingSettings.from_dict(package.postprocessing)

    @classmethod
    def from_store(cls, spec: str, options: PredictionOptions | None = None,
                   store: ModelStore | None = None) -> Predictor:
        """Load ``name`` or ``name@version`` from the model store (bundled and user packages)."""
        return cls((store or ModelStore.default()).resolve(spec), options)

    @property
    def model_spec(self) -> str:
        return f"{self.package.name}@{self.package.version}"

    def _choose_segmenters(self) -> list[MemberSpec]:
        available = list(self.package.segmenters)
        if self.options.members:
            return [self.package.member(name) for name in self.options.members]
        return available[:1] if self.options.quality == "fast" else available

    def _shared_settings(self, specs: Sequence[MemberSpec]) -> PredictorSettings:
        first = specs[0]
        for spec in specs[1:]:
            if (spec.preprocessing, spec.patch_size) != (first.preprocessing, first.patch_size):
                raise ModelPackageError(
                    f"members {first.name} and {spec.name} of {self.model_spec} differ in preprocessing or patch "
                    f"size, so they cannot be averaged; choose members that match (--members)."
                )
        mirror = None if self.options.quality == "best" else ()
        return settings_for(first, device=str(self.device), tile_overlap=self.options.tile_overlap,
                            mirror_axes=mirror, batch_size=self.options.batch_size)

    def segment(self, image: sitk.Image, progress: ProgressCallback | None = None, cancel: Any = None,
                name: str = "input image") -> SegmentationResult:
        """Segment ``image`` (a 3D SimpleITK CT in HU). Raises Cancelled if ``cancel.is_set()`` becomes true."""
        started = time.perf_counter()
        volume, spacing, orientation = to_lps(image)
        volume = volume.astype(np.float32, copy=False)
        check_ct_volume(volume, spacing, allow_non_ct=self.options.allow_non_ct, name=name)
        check_prediction_memory(volume.shape, spacing, self.settings.target_spacing,
                                num_classes=len(self.package.labels) + 1)
        prediction = predict(volume, spacing, self.members, self.settings, self.postprocessing,
                             localizer=self.localizer, cascade=self.cascade, progress=progress, cancel=cancel)
        labels = image_from_lps(prediction.labels.astype(np.uint8), orientation)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        counts = np.bincount(prediction.labels.ravel(), minlength=len(self.package.labels) + 1)
        volumes = {name: round(float(counts[label]) * voxel_ml, 3) for label, (name, _) in self.package.labels.items()}
        return SegmentationResult(labels=labels, volumes_ml=volumes, model=self.model_spec,
                                  members=tuple(spec.name for spec in self.segmenter_specs),
                                  seconds=time.perf_counter() - started, boxes=prediction.boxes)


def image_from_array(array: np.ndarray, spacing: Sequence[float], origin: Sequence[float] = (0.0, 0.0, 0.0),
                     direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    """A SimpleITK image from a numpy array in SimpleITK's (z, y, x) order, with spacing, origin and
    direction in SimpleITK's (x, y, z) order, for callers that hold arrays rather than files."""
    if np.asarray(array).ndim != 3:
        raise InputImageError(f"a 3D array is needed, got shape {np.asarray(array).shape}.")
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    return image
