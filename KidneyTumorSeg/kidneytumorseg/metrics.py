"""KiTS23 evaluation metrics: Dice, surface Dice and HD95 per hierarchical region, and volumes per label.

The definitions follow the challenge's reference code (neheller/kits23, ``evaluation/metrics.py``):

- For each region of :data:`~kidneytumorseg.labels.KITS_REGIONS` the prediction and the reference become
  boolean masks (``np.isin`` over the region's labels).
- Both masks empty: Dice 1, surface Dice 1. Exactly one empty: Dice 0, surface Dice 0.
- Otherwise Dice = 2|A∩B| / (|A| + |B|), and the surface Dice at the region's tolerance is the fraction of
  the two surfaces' total area that lies within the tolerance of the other surface, where surfaces are made
  of DeepMind's surface elements ("surfels", Nikolov et al. 2021), each weighted by its area in mm².
- HD95 (not a KiTS ranking metric, reported for information) is DeepMind's ``compute_robust_hausdorff`` at
  95 %: per direction, the distances sorted with their surfel areas, the distance where the cumulative area
  fraction reaches 0.95, and the larger of the two directions. Conventions: both masks empty -> 0.0 mm
  (nothing to disagree about); exactly one empty -> ``inf`` (as DeepMind's code returns).

Arrays are in SimpleITK's numpy axis order (``sitk.GetArrayFromImage``: z, y, x) and the spacing is given in
the same order, i.e. ``image.GetSpacing()[::-1]``.

Which library computes the surfaces, and why: MONAI's ``get_mask_edges`` with a spacing (its subvoxel
mode, as ``get_edge_surface_distance(use_subvoxels=True)`` uses it). It implements the same surfel-area
surface elements (the same neighbour-code to area table) that KiTS uses through DeepMind's
``surface-distance`` package, it is actively maintained, and its only heavy dependency is torch, which the
engine ships anyway. DeepMind's package is the reference definition (the tests check agreement with it), but
it is unmaintained: its last release is 0.1 and it uses ``np.Inf``, which NumPy 2 removed. MONAI returns
float32 areas; they are converted to float64 before summing, which agrees with the reference to ~1e-9 for
surface Dice (``benchmarks/metrics_agreement.py``).
The distances between the two surfaces come from SciPy's exact Euclidean distance transform over the cropped
box (DeepMind's method too), not MONAI's KD-tree, whose cost grows with the surface size.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from monai.metrics.utils import get_mask_edges
from scipy import ndimage

from kidneytumorseg.errors import InputImageError
from kidneytumorseg.image_io import check_same_geometry
from kidneytumorseg.labels import KITS_REGIONS, LABEL_NAMES, Region

# Voxels of background kept around the union of the two masks before the surface computation. Surfels
# only depend on 2x2x2 neighbourhoods, so one voxel is enough; two leave room for safety.
CROP_MARGIN_VOXELS = 2
HD95_PERCENT = 95.0


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances between the surfels of two masks, each with its surfel area (float64, mm and mm²).

    Each direction is sorted by (distance, area), as DeepMind's ``compute_surface_distances`` sorts them.
    """

    distances_pred_to_ref: np.ndarray
    distances_ref_to_pred: np.ndarray
    areas_pred: np.ndarray
    areas_ref: np.ndarray


@dataclass(frozen=True)
class RegionMetrics:
    """The metrics of one KiTS region for one case."""

    dice: float
    surface_dice: float
    hd95_mm: float


@dataclass(frozen=True)
class CaseMetrics:
    """The metrics of one case: per KiTS region (keyed by region name) and volumes per label (keyed by name).

    ``hd95_mm`` is 0.0 where both masks of a region are empty and ``inf`` where exactly one is.
    """

    dice: dict[str, float]
    surface_dice: dict[str, float]
    hd95_mm: dict[str, float]
    volume_pred_ml: dict[str, float]
    volume_ref_ml: dict[str, float]


def dice_coefficient(pred_mask: np.ndarray, ref_mask: np.ndarray) -> float:
    """Volumetric Dice 2|A∩B|/(|A|+|B|) of two boolean masks; 1.0 when both are empty (KiTS rule)."""
    total = int(np.count_nonzero(pred_mask)) + int(np.count_nonzero(ref_mask))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred_mask & ref_mask)) / total


def union_bounding_box(
    pred_mask: np.ndarray, ref_mask: np.ndarray, margin: int = CROP_MARGIN_VOXELS
) -> tuple[slice, ...] | None:
    """The bounding box of ``pred_mask | ref_mask`` grown by ``margin`` voxels and clipped to the array.

    Returns None when both masks are empty.
    """
    union = pred_mask | ref_mask
    box = []
    for axis in range(union.ndim):
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        present = np.flatnonzero(np.any(union, axis=other_axes))
        if present.size == 0:
            return None
        box.append(slice(max(int(present[0]) - margin, 0), min(int(present[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def _crop_with_margin(mask: np.ndarray, box: tuple[slice, ...], margin: int) -> np.ndarray:
    """Crop ``mask`` to ``box``, zero-padding by ``margin`` wherever the box reaches the array border.

    Voxels outside the array count as background, so a mask touching the border still gets a closed surface.
    """
    cropped = mask[box]
    padding = [
        (margin if s.start == 0 else 0, margin if s.stop == size else 0)
        for s, size in zip(box, mask.shape, strict=True)
    ]
    # MONAI (and DeepMind) pad such masks the same way; padding here keeps the crop from changing anything.
    if any(before or after for before, after in padding):
        cropped = np.pad(cropped, padding)
    return np.ascontiguousarray(cropped)


def surface_distances(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float], crop: bool = True
) -> SurfaceDistances:
    """Surfel distances and areas between two non-empty boolean masks (MONAI, DeepMind's surfel areas).

    ``spacing`` is in the arrays' axis order. With ``crop`` (the default) both masks are first cropped to
    the bounding box of their union plus a margin, which gives the same result much faster on full CTs.
    """
    if pred_mask.shape != ref_mask.shape:
        raise InputImageError(
            f"Prediction mask {pred_mask.shape} and reference mask {ref_mask.shape} differ in shape; "
            f"both must be on the same voxel grid."
        )
    if len(spacing) != pred_mask.ndim:
        raise InputImageError(
            f"spacing {tuple(spacing)} has {len(spacing)} values for a {pred_mask.ndim}D mask; give one per "
            f"axis in numpy order (image.GetSpacing()[::-1])."
        )
    if not pred_mask.any() or not ref_mask.any():
        raise InputImageError(
            "Surface distances need two non-empty masks; handle empty masks with the KiTS rules first "
            "(see region_metrics)."
        )
    pred_mask = np.asarray(pred_mask, dtype=bool)
    ref_mask = np.asarray(ref_mask, dtype=bool)
    if crop:
        box = union_bounding_box(pred_mask, ref_mask, CROP_MARGIN_VOXELS)
        assert box is not None  # both masks are non-empty
        pred_mask = _crop_with_margin(pred_mask, box, CROP_MARGIN_VOXELS)
        ref_mask = _crop_with_margin(ref_mask, box, CROP_MARGIN_VOXELS)
    sampling = [float(s) for s in spacing]
    with warnings.catch_warnings():
        # MONAI 1.5+ passes its own deprecated `always_return_as_numpy` argument internally.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*always_return_as_numpy.*")
        # numpy in, numpy out (bool edge maps, float32 surfel areas)
        edges_pred, edges_ref, area_map_pred, area_map_ref = get_mask_edges(
            pred_mask, ref_mask, crop=True, spacing=sampling)
    pred_to_ref = _distances_to(edges_ref, sampling)[edges_pred]
    ref_to_pred = _distances_to(edges_pred, sampling)[edges_ref]
    areas_pred = area_map_pred[edges_pred].astype(np.float64)
    areas_ref = area_map_ref[edges_ref].astype(np.float64)
    pred_to_ref, areas_pred = _sorted_by_distance(pred_to_ref, areas_pred)
    ref_to_pred, areas_ref = _sorted_by_distance(ref_to_pred, areas_ref)
    return SurfaceDistances(pred_to_ref, ref_to_pred, areas_pred, areas_ref)


def _distances_to(edges: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
    """Exact Euclidean distance in mm from every voxel of the edge grid to the nearest voxel of ``edges``.

    A dense distance transform over the (cropped) grid: its cost is bounded by the box, whatever the masks.
    MONAI's own choice on a CPU, a KD-tree over the edge voxels, took minutes per case for an untrained
    network's scattered predictions, whose surfaces have millions of voxels.
    """
    return ndimage.distance_transform_edt(~edges, sampling=sampling)


def _sorted_by_distance(distances: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((areas, distances))  # by distance, ties by area: DeepMind's sorted(zip(d, a))
    return distances[order], areas[order]


def surface_dice_at_tolerance(distances: SurfaceDistances, tolerance_mm: float) -> float:
    """Fraction of the total surfel area of both surfaces within ``tolerance_mm`` of the other surface."""
    total = distances.areas_ref.sum() + distances.areas_pred.sum()
    if total == 0:
        return float("nan")
    within = (
        distances.areas_ref[distances.distances_ref_to_pred <= tolerance_mm].sum()
        + distances.areas_pred[distances.distances_pred_to_ref <= tolerance_mm].sum()
    )
    return float(within / total)


def robust_hausdorff(distances: SurfaceDistances, percent: float = HD95_PERCENT) -> float:
    """Area-weighted ``percent``-th percentile Hausdorff distance in mm (DeepMind's definition)."""

    def one_direction(sorted_distances: np.ndarray, areas: np.ndarray) -> float:
        if sorted_distances.size == 0:
            return float("inf")
        cumulative = np.cumsum(areas) / np.sum(areas)
        index = int(np.searchsorted(cumulative, percent / 100.0))
        return float(sorted_distances[min(index, sorted_distances.size - 1)])

    return max(
        one_direction(distances.distances_ref_to_pred, distances.areas_ref),
        one_direction(distances.distances_pred_to_ref, distances.areas_pred),
    )


def region_metrics(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float], tolerance_mm: float
) -> RegionMetrics:
    """Dice, surface Dice at ``tolerance_mm`` and HD95 of two boolean masks, with KiTS's empty-mask rules."""
    pred_empty = not pred_mask.any()
    ref_empty = not ref_mask.any()
    if pred_empty and ref_empty:
        return RegionMetrics(dice=1.0, surface_dice=1.0, hd95_mm=0.0)
    if pred_empty or ref_empty:
        return RegionMetrics(dice=0.0, surface_dice=0.0, hd95_mm=float("inf"))
    distances = surface_distances(pred_mask, ref_mask, spacing)
    return RegionMetrics(
        dice=dice_coefficient(pred_mask, ref_mask),
        surface_dice=surface_dice_at_tolerance(distances, tolerance_mm),
        hd95_mm=robust_hausdorff(distances),
    )


def label_volumes_ml(label_map: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Volume in ml of each KiTS label (kidney, tumor, cyst): voxel count × voxel volume in mm³ / 1000."""
    voxel_ml = float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0
    return {name: int(np.count_nonzero(label_map == label)) * voxel_ml for label, name in LABEL_NAMES.items()}


def compute_case_metrics_arrays(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float],
    regions: Sequence[Region] = KITS_REGIONS,
) -> CaseMetrics:
    """KiTS metrics of a predicted label map against a reference label map, both numpy arrays.

    ``spacing`` is in the arrays' axis order (``image.GetSpacing()[::-1]`` for ``sitk.GetArrayFromImage``).
    """
    prediction = np.asarray(prediction)
    reference = np.asarray(reference)
    if prediction.shape != reference.shape:
        raise InputImageError(
            f"Prediction {prediction.shape} and reference {reference.shape} differ in shape; resample the "
            f"prediction onto the reference grid (nearest neighbour) first."
        )
    if prediction.ndim != 3 or len(spacing) != 3:
        raise InputImageError(
            f"Need 3D label maps and 3 spacing values, got arrays of shape {prediction.shape} and spacing "
            f"{tuple(spacing)}."
        )
    volume_pred = label_volumes_ml(prediction, spacing)
    volume_ref = label_volumes_ml(reference, spacing)
    # Every region is a set of foreground labels: cropping to the foreground once makes the per-region
    # masks cheap on full-size CTs without changing any metric.
    if all(0 not in region.labels for region in regions):
        box = union_bounding_box(prediction != 0, reference != 0, CROP_MARGIN_VOXELS)
        if box is not None:
            prediction, reference = prediction[box], reference[box]
    dice, surface_dice, hd95 = {}, {}, {}
    for region in regions:
        result = region_metrics(
            np.isin(prediction, region.labels),
            np.isin(reference, region.labels),
            spacing,
            region.tolerance_mm,
        )
        dice[region.name] = result.dice
        surface_dice[region.name] = result.surface_dice
        hd95[region.name] = result.hd95_mm
    return CaseMetrics(dice, surface_dice, hd95, volume_pred, volume_ref)


def compute_case_metrics(
    prediction: sitk.Image,
    reference: sitk.Image,
    prediction_name: str = "prediction",
    reference_name: str = "reference",
    regions: Sequence[Region] = KITS_REGIONS,
) -> CaseMetrics:
    """KiTS metrics of a predicted label map against a reference, both SimpleITK images on the same grid.

    Raises GeometryMismatchError (naming both images) when their size, spacing, origin or direction differ.
    """
    check_same_geometry(prediction, reference, prediction_name, reference_name)
    return compute_case_metrics_arrays(
        sitk.GetArrayViewFromImage(prediction),
        sitk.GetArrayViewFromImage(reference),
        reference.GetSpacing()[::-1],
        regions,
    )
