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
from kidneytumorseg.precision import PrecisionError, check_precision, use_half_precision
from kidneytumorseg.predictor_core import CascadeSettings, PredictorSettings, predict
from kidneytumorseg.refinement import RefinementSettings, predict_two_stage

logger = logging.getLogger(__name__)

QUALITIES = ("fast", "default", "best")
SLICES_PER_BATCH = 8  # a 2.5D member's tiles are single slices: batch this many per requested batch
ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class PredictionOptions:
    """How to run a package.

    quality: ``fast`` (first segmenter and first refiner, no mirroring), ``default`` (all segmenters and
    refiners, no mirroring) or ``best`` (all of them with mirroring test-time augmentation).
    members: names of the segmenter and/or refiner members to use (e.g. folds), overriding the quality's
    choice for the role(s) named.
    cascade: use the package's localizer to segment only around the kidneys (default: when it has one).
    precision: ``auto`` (half precision on CUDA and on CPUs with native bfloat16, else float32), ``fp32`` or
    ``half`` (:mod:`kidneytumorseg.precision`).
    """

    quality: str = "default"
    device: str = "auto"
    members: tuple[str, ...] | None = None
    tile_overlap: float | None = None
    cascade: bool | None = None
    allow_non_ct: bool = False
    batch_size: int = 1
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise InputImageError(f"quality must be one of {', '.join(QUALITIES)}, not {self.quality!r}.")
        try:
            object.__setattr__(self, "precision", check_precision(self.precision))
        except PrecisionError as error:
            raise InputImageError(str(error)) from error


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
    """Predictor settings of a member (its effective preprocessing, patch size and inference, its 2.5D
    context, median filter, image interpolation and output labels)."""
    inference = {key: member.inference[key] for key in ("tile_overlap", "mirror_axes", "gaussian_sigma_scale")
                 if key in member.inference}
    inference.update({key: value for key, value in overrides.items() if value is not None})
    inputs = member.inputs
    if inputs.context_slices is not None:
        inference["batch_size"] = int(inference.get("batch_size", 1)) * SLICES_PER_BATCH
    return PredictorSettings(
        target_spacing=member.preprocessing["target_spacing"], patch_size=member.patch_size,
        normalization=member.preprocessing["normalization"], context_slices=inputs.context_slices,
        image_interpolation=member.preprocessing.get("image_interpolation", "linear"),
        median_filter=inputs.median_filter, output_labels=inputs.output_labels, **inference,
    )


def cascade_settings(localizer: MemberSpec, device: str, half_precision: bool = False) -> CascadeSettings:
    """The coarse-to-fine settings of a package's localizer member (it runs without mirroring)."""
    return CascadeSettings(localizer=settings_for(localizer, device=device, mirror_axes=(),
                                                  half_precision=half_precision))


class Predictor:
    """A loaded model package, ready to segment images. Loading verifies every member's sha256."""

    def __init__(self, package: ModelPackage, options: PredictionOptions | None = None,
                 builder: Callable[[dict], torch.nn.Module] = default_builder) -> None:
        self.package = package
        self.options = options or PredictionOptions()
        self.device = select_device(self.options.device)
        self.half_precision = use_half_precision(self.options.precision, self.device)
        self.segmenter_specs = self._choose("segmenter")
        self.settings = self._shared_settings(self.segmenter_specs)
        self.members = [build_member(package, spec, builder=builder, device=str(self.device))
                        for spec in self.segmenter_specs]
        self.refiner_specs = self._choose("refiner") if package.refiners else []
        self.refiners = [build_member(package, spec, builder=builder, device=str(self.device))
                         for spec in self.refiner_specs]
        localizer_spec = package.localizer
        use_cascade = self.options.cascade if self.options.cascade is not None else localizer_spec is not None
        if use_cascade and localizer_spec is None:
            raise ModelPackageError(
                f"{package.name}@{package.version} has no localizer member, so the coarse-to-fine mode is not "
                f"available; run without --cascade."
            )
        self.localizer = build_member(package, localizer_spec, builder=builder, device=str(self.device)) \
            if use_cascade else None
        self.cascade = cascade_settings(localizer_spec, str(self.device), self.half_precision) \
            if use_cascade else None
        self.postprocessing = PostprocessingSettings.from_dict(package.postprocessing)
        self.refinement = self._refinement_settings() if self.refiner_specs else None

    @classmethod
    def from_store(cls, spec: str, options: PredictionOptions | None = None,
                   store: ModelStore | None = None) -> Predictor:
        """Load ``name`` or ``name@version`` from the model store (bundled and user packages)."""
        return cls((store or ModelStore.default()).resolve(spec), options)

    @property
    def model_spec(self) -> str:
        return f"{self.package.name}@{self.package.version}"

    def _choose(self, role: str) -> list[MemberSpec]:
        """The members of ``role`` to run: those named in the options, else as the quality says."""
        available = [member for member in self.package.members if member.role == role]
        if self.options.members:
            named = [self.package.member(name) for name in self.options.members]
            if any(member.role == "localizer" for member in named):
                raise ModelPackageError("The localizer is not chosen by --members; it runs when the cascade is on "
                                        "(--cascade / --no-cascade).")
            chosen = [member for member in named if member.role == role]
            if chosen:
                return chosen
            if role == "segmenter":
                raise ModelPackageError(f"--members names no segmenter of {self.model_spec}; its segmenters are: "
                                        f"{', '.join(member.name for member in available)}.")
        return available[:1] if self.options.quality == "fast" else available

    def _refinement_settings(self) -> RefinementSettings:
        inputs = self.refiner_specs[0].inputs  # the refiners agree on it (_shared_settings checks)
        return RefinementSettings(self._shared_settings(self.refiner_specs), inputs.stage_input,  # type: ignore[arg-type]
                                  self.postprocessing.max_kidney_components, inputs.stage_one_weight)

    def _shared_settings(self, specs: Sequence[MemberSpec]) -> PredictorSettings:
        first = specs[0]
        for spec in specs[1:]:
            if (spec.preprocessing, spec.patch_size, spec.inputs) != (first.preprocessing, first.patch_size,
                                                                   first.inputs):
                raise ModelPackageError(
                    f"members {first.name} and {spec.name} of {self.model_spec} differ in preprocessing or patch "
                    f"size, so they cannot be averaged; choose members that match (--members)."
                )
        mirror = None if self.options.quality == "best" else ()
        return settings_for(first, device=str(self.device), tile_overlap=self.options.tile_overlap,
                            mirror_axes=mirror, batch_size=self.options.batch_size,
                            half_precision=self.half_precision)

    def segment(self, image: sitk.Image, progress: ProgressCallback | None = None, cancel: Any = None,
                name: str = "input image") -> SegmentationResult:
        """Segment ``image`` (a 3D SimpleITK CT in HU). Raises Cancelled if ``cancel.is_set()`` becomes true."""
        started = time.perf_counter()
        volume, spacing, orientation = to_lps(image)
        volume = volume.astype(np.float32, copy=False)
        check_ct_volume(volume, spacing, allow_non_ct=self.options.allow_non_ct, name=name)
        check_prediction_memory(volume.shape, spacing, self.settings.target_spacing,
                                num_classes=len(self.package.labels) + 1)
        if self.refinement is not None:
            prediction = predict_two_stage(volume, spacing, self.members, self.settings, self.refiners,
                                           self.refinement, self.postprocessing, localizer=self.localizer,
                                           cascade=self.cascade, progress=progress, cancel=cancel)
        else:
            prediction = predict(volume, spacing, self.members, self.settings, self.postprocessing,
                                 localizer=self.localizer, cascade=self.cascade, progress=progress, cancel=cancel)
        labels = image_from_lps(prediction.labels.astype(np.uint8), orientation)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        counts = np.bincount(prediction.labels.ravel(), minlength=len(self.package.labels) + 1)
        volumes = {name: round(float(counts[label]) * voxel_ml, 3) for label, (name, _) in self.package.labels.items()}
        return SegmentationResult(labels=labels, volumes_ml=volumes, model=self.model_spec,
                                  members=tuple(spec.name for spec in [*self.segmenter_specs, *self.refiner_specs]),
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
