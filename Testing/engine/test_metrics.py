"""KiTS metrics: hand-worked values on boxes, empty-mask rules, agreement with the KiTS reference code."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from kidneytumorseg.errors import GeometryMismatchError, InputImageError
from kidneytumorseg.labels import CYST, KIDNEY, KITS_REGIONS, TUMOR
from kidneytumorseg.metrics import (
    CaseMetrics,
    compute_case_metrics,
    compute_case_metrics_arrays,
    dice_coefficient,
    region_metrics,
    robust_hausdorff,
    surface_dice_at_tolerance,
    surface_distances,
)

# numpy (z, y, x) order: a coarse slice axis and a fine in-plane grid, like most KiTS CTs.
SPACING = (3.0, 0.8, 0.8)
KIDNEY_TOLERANCE = KITS_REGIONS[0].tolerance_mm  # 1.033 mm: between the 0.8 mm and the 3 mm voxel size
REGION_NAMES = [region.name for region in KITS_REGIONS]


def box(shape: tuple[int, int, int] = (16, 16, 16), start: int = 3, size: int = 10) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[start : start + size, start : start + size, start : start + size] = True
    return mask


# --- hand-worked values on boxes ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_box_shifted_by_one_voxel_has_dice_0_9(axis: int) -> None:
    reference = box()
    prediction = np.roll(reference, 1, axis=axis)
    # |A∩B| = 9*10*10, |A| = |B| = 1000: 2*900/2000.
    assert dice_coefficient(prediction, reference) == 0.9


def test_eroded_box_dice_follows_the_counting_formula() -> None:
    reference = box()
    prediction = ndimage.binary_erosion(reference)  # the inner 8x8x8 box
    assert np.count_nonzero(prediction) == 8**3
    assert dice_coefficient(prediction, reference) == pytest.approx(2 * 8**3 / (10**3 + 8**3), abs=1e-15)
    metrics = region_metrics(prediction, reference, SPACING, KIDNEY_TOLERANCE)
    assert metrics.dice == pytest.approx(1024 / 1512, abs=1e-15)


def test_shift_smaller_than_tolerance_along_fine_axis_keeps_surface_dice_1() -> None:
    reference = box()
    prediction = np.roll(reference, 1, axis=2)  # 0.8 mm < 1.033 mm
    metrics = region_metrics(prediction, reference, SPACING, KIDNEY_TOLERANCE)
    assert metrics.dice == 0.9
    assert metrics.surface_dice == pytest.approx(1.0, abs=1e-12)
    assert metrics.hd95_mm == pytest.approx(0.8, rel=1e-6)  # the shift in mm


def test_shift_larger_than_tolerance_along_coarse_axis_matches_hand_computed_surface_dice() -> None:
    reference = box()
    prediction = np.roll(reference, 1, axis=0)  # 3 mm > 1.033 mm
    metrics = region_metrics(prediction, reference, SPACING, KIDNEY_TOLERANCE)

    # Surfels sit in the 2x2x2 voxel cubes of the boundary; for a 10-voxel box there are per face 9x9 flat
    # cubes, per edge 9 edge cubes and 8 corner cubes. Their areas (DeepMind's table) are:
    sz, sy, sx = SPACING
    edge_along_x = sx * math.hypot(sy, sz) / 2
    edge_along_y = sy * math.hypot(sx, sz) / 2
    edge_along_z = sz * math.hypot(sx, sy) / 2
    corner = math.sqrt((sy * sz) ** 2 + (sx * sz) ** 2 + (sx * sy) ** 2) / 8
    faces = 2 * 81 * (sx * sy + sy * sz + sx * sz)
    total = faces + 36 * (edge_along_x + edge_along_y + edge_along_z) + 8 * corner
    # Shifted up one slice, the prediction's whole top layer (face, its 4 edges, 4 corners) is 3 mm from the
    # reference surface; on its bottom face the cubes 2 or more cubes in from the rim are min(3, 0.8 k) >= 1.6
    # mm away (7x7 of them). Everything else is at 0 or 0.8 mm. The reference is the mirror image.
    outside = 81 * sx * sy + 18 * (edge_along_x + edge_along_y) + 4 * corner + 49 * sx * sy
    assert metrics.dice == 0.9
    assert metrics.surface_dice == pytest.approx(1 - outside / total, abs=1e-7)
    assert metrics.surface_dice < 0.9
    assert metrics.hd95_mm == pytest.approx(3.0, rel=1e-6)


def test_identical_boxes_score_perfectly() -> None:
    metrics = region_metrics(box(), box(), SPACING, KIDNEY_TOLERANCE)
    assert (metrics.dice, metrics.surface_dice, metrics.hd95_mm) == (1.0, 1.0, 0.0)


def test_volumes_are_voxel_count_times_voxel_volume() -> None:
    labels = np.zeros((16, 16, 16), dtype=np.uint8)
    labels[box()] = KIDNEY
    labels[5:7, 5:7, 5:7] = TUMOR  # 8 voxels
    reference = labels.copy()
    reference[5:7, 5:7, 5:7] = CYST
    metrics = compute_case_metrics_arrays(labels, reference, SPACING)
    voxel_ml = 3.0 * 0.8 * 0.8 / 1000
    kidney, mass = 992 * voxel_ml, 8 * voxel_ml
    assert metrics.volume_pred_ml == pytest.approx({"kidney": kidney, "tumor": mass, "cyst": 0.0})
    assert metrics.volume_ref_ml == pytest.approx({"kidney": kidney, "tumor": 0.0, "cyst": mass})


# --- empty-mask rules ---------------------------------------------------------------------------------------


def test_both_empty_scores_1_and_one_empty_scores_0_per_region() -> None:
    reference = np.zeros((16, 16, 16), dtype=np.uint8)
    reference[box()] = KIDNEY
    no_tumor = reference.copy()
    with_tumor = reference.copy()
    with_tumor[6:9, 6:9, 6:9] = TUMOR

    # Neither has a mass: the mass and tumor regions are both empty -> 1, HD95 0 mm.
    both_empty = compute_case_metrics_arrays(no_tumor, reference, SPACING)
    assert both_empty.dice == {"kidney_and_mass": 1.0, "mass": 1.0, "tumor": 1.0}
    assert both_empty.surface_dice == {"kidney_and_mass": 1.0, "mass": 1.0, "tumor": 1.0}
    assert both_empty.hd95_mm == {"kidney_and_mass": 0.0, "mass": 0.0, "tumor": 0.0}

    # A tumor the reference does not have, and the other way round: 0 and 0, HD95 inf.
    for prediction, ref in ((with_tumor, reference), (reference, with_tumor)):
        metrics = compute_case_metrics_arrays(prediction, ref, SPACING)
        assert metrics.dice["kidney_and_mass"] == 1.0
        for region in ("mass", "tumor"):
            assert metrics.dice[region] == 0.0
            assert metrics.surface_dice[region] == 0.0
            assert metrics.hd95_mm[region] == math.inf


def test_tumor_predicted_as_cyst_scores_on_mass_but_not_on_tumor() -> None:
    reference = np.zeros((16, 16, 16), dtype=np.uint8)
    reference[box()] = KIDNEY
    reference[6:9, 6:9, 6:9] = TUMOR
    prediction = np.where(reference == TUMOR, CYST, reference)
    metrics = compute_case_metrics_arrays(prediction, reference, SPACING)
    assert metrics.dice["mass"] == 1.0 and metrics.surface_dice["mass"] == 1.0
    assert metrics.dice["tumor"] == 0.0 and metrics.hd95_mm["tumor"] == math.inf


def test_all_empty_label_maps_score_1() -> None:
    empty = np.zeros((8, 8, 8), dtype=np.uint8)
    metrics = compute_case_metrics_arrays(empty, empty, SPACING)
    assert set(metrics.dice.values()) == {1.0} and set(metrics.surface_dice.values()) == {1.0}


# --- cropping does not change anything ----------------------------------------------------------------------


@pytest.mark.parametrize("start", [0, 3, 6])  # 0 and 6: the masks touch the array border
def test_cropping_before_monai_gives_identical_distances(start: int) -> None:
    reference = box(start=start)
    shifted_core = np.roll(ndimage.binary_erosion(reference), (1, 0, -1), axis=(0, 1, 2))
    prediction = shifted_core | np.roll(reference, 1, axis=2)
    cropped = surface_distances(prediction, reference, SPACING, crop=True)
    uncropped = surface_distances(prediction, reference, SPACING, crop=False)
    for field in ("distances_pred_to_ref", "distances_ref_to_pred", "areas_pred", "areas_ref"):
        np.testing.assert_array_equal(getattr(cropped, field), getattr(uncropped, field))


def test_case_metrics_do_not_depend_on_the_size_of_the_surrounding_background(kits_crops) -> None:
    reference = sitk.GetArrayFromImage(kits_crops["case_00021"])
    prediction = np.roll(reference, 1, axis=1)
    spacing = kits_crops["case_00021"].GetSpacing()[::-1]
    small = compute_case_metrics_arrays(prediction, reference, spacing)
    large = compute_case_metrics_arrays(np.pad(prediction, 7), np.pad(reference, 7), spacing)
    assert small == large


# --- inputs -------------------------------------------------------------------------------------------------


def test_sitk_images_on_different_grids_are_refused_naming_both(make_label_map) -> None:
    labels = np.zeros((6, 6, 6), dtype=np.uint8)
    with pytest.raises(GeometryMismatchError, match=r"pred\.nii\.gz.*ref\.nii\.gz.*spacing"):
        compute_case_metrics(
            make_label_map(labels, spacing=(1, 1, 1)), make_label_map(labels), "pred.nii.gz", "ref.nii.gz"
        )


def test_arrays_of_different_shapes_are_refused() -> None:
    with pytest.raises(InputImageError, match="differ in shape"):
        compute_case_metrics_arrays(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), SPACING)


def test_sitk_spacing_is_used_in_numpy_order(make_label_map) -> None:
    reference = box()
    prediction = np.roll(reference, 1, axis=0)  # one slice: 3 mm in SimpleITK's z
    metrics = compute_case_metrics(make_label_map(prediction), make_label_map(reference))
    assert metrics.hd95_mm["kidney_and_mass"] == pytest.approx(3.0, rel=1e-6)


# --- agreement with the KiTS reference implementation -------------------------------------------------------


def kits_reference(prediction: np.ndarray, reference: np.ndarray, spacing) -> dict[str, tuple[float, ...]]:
    """(Dice, surface Dice, HD95) per region computed as neheller/kits23 evaluation/metrics.py does."""
    import surface_distance

    results = {}
    for region in KITS_REGIONS:
        mask_pred = np.isin(prediction, region.labels)
        mask_gt = np.isin(reference, region.labels)
        gt_empty, pred_empty = np.sum(mask_gt) == 0, np.sum(mask_pred) == 0
        if gt_empty and pred_empty:
            results[region.name] = (1.0, 1.0, 0.0)
        elif gt_empty or pred_empty:
            results[region.name] = (0.0, 0.0, math.inf)
        else:
            dice = surface_distance.compute_dice_coefficient(mask_gt, mask_pred)
            distances = surface_distance.compute_surface_distances(mask_gt, mask_pred, spacing)
            surface_dice = surface_distance.compute_surface_dice_at_tolerance(distances, region.tolerance_mm)
            hd95 = surface_distance.compute_robust_hausdorff(distances, 95)
            results[region.name] = (float(dice), float(surface_dice), float(hd95))
    return results


def perturbations(reference: np.ndarray, spacing) -> dict[str, np.ndarray]:
    """Realistic prediction errors: shifts, erosion, a grown tumor, tumor and cyst swapped."""
    slice_axis = int(np.argmax(spacing))
    in_plane_axes = tuple(axis for axis in range(3) if axis != slice_axis)
    eroded = np.where(ndimage.binary_erosion(reference > 0, iterations=2), reference, 0)
    grown_tumor = reference.copy()
    grown_tumor[ndimage.binary_dilation(reference == TUMOR, iterations=2) & (reference > 0)] = TUMOR
    swapped = reference.copy()
    swapped[reference == TUMOR], swapped[reference == CYST] = CYST, TUMOR
    return {
        "shift_slice": np.roll(reference, 1, axis=slice_axis),
        "shift_in_plane": np.roll(reference, (2, -1), axis=in_plane_axes),
        "eroded": eroded,
        "grown_tumor": grown_tumor,
        "swapped_tumor_cyst": swapped,
    }


def assert_agrees_with_kits(metrics: CaseMetrics, expected: dict[str, tuple[float, ...]]) -> float:
    """Assert agreement to 1e-6 (HD95: relative, MONAI's distances are float32); return the largest gap."""
    worst = 0.0
    for name, (dice, surface_dice, hd95) in expected.items():
        assert metrics.dice[name] == pytest.approx(dice, abs=1e-6), name
        assert metrics.surface_dice[name] == pytest.approx(surface_dice, abs=1e-6), name
        assert metrics.hd95_mm[name] == pytest.approx(hd95, rel=1e-6), name
        worst = max(worst, abs(metrics.dice[name] - dice), abs(metrics.surface_dice[name] - surface_dice))
    return worst


def test_identical_real_masks_score_perfectly_in_every_region(kits_crops) -> None:
    for image in kits_crops.values():
        metrics = compute_case_metrics(image, image)
        assert metrics.dice == dict.fromkeys(REGION_NAMES, 1.0)
        assert metrics.surface_dice == dict.fromkeys(REGION_NAMES, 1.0)
        assert metrics.hd95_mm == dict.fromkeys(REGION_NAMES, 0.0)


def test_agrees_with_the_kits_reference_on_real_mask_crops(kits_crops) -> None:
    assert len(kits_crops) >= 3
    compared = 0
    for case, image in kits_crops.items():
        reference = sitk.GetArrayFromImage(image)
        spacing = image.GetSpacing()[::-1]
        for name, prediction in perturbations(reference, spacing).items():
            expected = kits_reference(prediction, reference, spacing)
            metrics = compute_case_metrics(label_map_image_like(prediction, image), image, f"{case}/{name}")
            assert_agrees_with_kits(metrics, expected)
            compared += 1
    # The perturbations must actually exercise the non-trivial branch.
    assert compared == 5 * len(kits_crops)


def label_map_image_like(array: np.ndarray, template: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(template)
    return image


def test_perturbations_of_real_crops_are_not_trivially_perfect(kits_crops) -> None:
    image = kits_crops["case_00051"]  # has kidney, tumor and cyst
    reference = sitk.GetArrayFromImage(image)
    spacing = image.GetSpacing()[::-1]
    variants = perturbations(reference, spacing)
    shifted = compute_case_metrics_arrays(variants["shift_slice"], reference, spacing)
    assert 0.5 < shifted.dice["kidney_and_mass"] < 1.0
    assert shifted.surface_dice["kidney_and_mass"] < shifted.dice["kidney_and_mass"]  # 2.5 mm slices > 1 mm
    swapped = compute_case_metrics_arrays(variants["swapped_tumor_cyst"], reference, spacing)
    assert swapped.dice["mass"] == 1.0 and swapped.dice["tumor"] == 0.0


def test_surface_measures_match_deepmind_on_a_mask_touching_the_border() -> None:
    import surface_distance

    reference = box(start=6)  # touches the far border on every axis
    prediction = np.roll(reference, -2, axis=2)
    distances = surface_distances(prediction, reference, SPACING)
    expected = surface_distance.compute_surface_distances(reference, prediction, SPACING)
    assert surface_dice_at_tolerance(distances, 1.0) == pytest.approx(
        surface_distance.compute_surface_dice_at_tolerance(expected, 1.0), abs=1e-6
    )
    expected_hd95 = surface_distance.compute_robust_hausdorff(expected, 95)
    assert robust_hausdorff(distances) == pytest.approx(expected_hd95, rel=1e-6)


@pytest.mark.shared
def test_agrees_with_the_kits_reference_on_full_size_masks(shared_masks_dir) -> None:
    cases = ("case_00061", "case_00004", "case_00021")  # small files; 00021 has cysts
    paths = [shared_masks_dir / case / "segmentation.nii.gz" for case in cases]
    if not all(path.exists() for path in paths):
        pytest.skip(f"../shared/data/kits23-masks not present: {shared_masks_dir} lacks {', '.join(cases)}")
    started = time.perf_counter()
    for path in paths:
        image = sitk.ReadImage(str(path))
        reference = sitk.GetArrayFromImage(image)
        spacing = image.GetSpacing()[::-1]
        variants = perturbations(reference, spacing)
        for name in ("shift_slice", "eroded", "swapped_tumor_cyst"):
            prediction = variants[name]
            metrics = compute_case_metrics(label_map_image_like(prediction, image), image, f"{path} {name}")
            assert_agrees_with_kits(metrics, kits_reference(prediction, reference, spacing))
    assert time.perf_counter() - started < 120


def test_surface_distances_of_scattered_masks_equal_monais_kdtree_distances():
    """The dense distance transform gives the distances MONAI's KD-tree gives, also for speckled masks."""
    import torch
    from monai.metrics.utils import get_edge_surface_distance

    from kidneytumorseg.metrics import surface_distances

    rng = np.random.default_rng(3)
    reference = np.zeros((14, 20, 18), dtype=bool)
    reference[3:10, 5:15, 4:13] = True
    prediction = rng.random(reference.shape) < 0.2  # an untrained network's speckle
    spacing = (3.0, 0.8, 1.1)
    ours = surface_distances(prediction, reference, spacing)
    _, (to_ref, to_pred), _ = get_edge_surface_distance(
        torch.from_numpy(prediction), torch.from_numpy(reference), spacing=list(spacing), use_subvoxels=True,
        symmetric=True)
    np.testing.assert_allclose(ours.distances_pred_to_ref, np.sort(to_ref.numpy().astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(ours.distances_ref_to_pred, np.sort(to_pred.numpy().astype(np.float64)), rtol=1e-6)
    assert ours.distances_pred_to_ref.max() > 3.0  # speckle far from the box: the comparison is not trivial
