"""The synthetic CT generator: geometry, reproducibility, orientation, anatomy, Hounsfield units."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from kidneytumorseg.errors import InputImageError, InsufficientMemoryError
from kidneytumorseg.geometry import to_lps
from kidneytumorseg.labels import CYST, KIDNEY, TUMOR
from kidneytumorseg_training.synthetic.anatomy import build_tissue_map, plan_body
from kidneytumorseg_training.synthetic.frame import build_frame
from kidneytumorseg_training.synthetic.generator import generate_ct
from kidneytumorseg_training.synthetic.tissues import Phase, Tissue

CASE = "case_00119"  # tumor and cyst present


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def test_ct_is_on_the_exact_grid_of_the_mask(load_mask):
    mask = load_mask(CASE)
    ct = generate_ct(mask, seed=3).image
    assert ct.GetSize() == mask.GetSize()
    assert ct.GetSpacing() == mask.GetSpacing()
    assert ct.GetOrigin() == mask.GetOrigin()
    assert ct.GetDirection() == mask.GetDirection()
    assert ct.GetPixelID() == sitk.sitkInt16


def test_same_seed_same_image_bit_for_bit_and_other_seed_differs(load_mask):
    mask = load_mask(CASE)
    first, again, other = (generate_ct(mask, seed=s).image for s in (11, 11, 12))
    assert np.array_equal(_array(first), _array(again))
    assert not np.array_equal(_array(first), _array(other))
    assert generate_ct(mask, seed=11).description() == generate_ct(mask, seed=11).description()


def test_anatomy_follows_the_affine_not_the_array_axes(load_mask):
    """The same patient stored in another axis order and flip gives the same CT, voxel for voxel."""
    mask = load_mask(CASE)
    flipped = sitk.DICOMOrient(mask, "RAS")  # same physical image, different array layout
    assert not np.array_equal(_array(flipped), _array(mask)) or flipped.GetDirection() != mask.GetDirection()
    ct = generate_ct(mask, seed=5).image
    ct_flipped = generate_ct(flipped, seed=5).image
    assert ct_flipped.GetDirection() == flipped.GetDirection()
    assert np.array_equal(to_lps(ct)[0], to_lps(ct_flipped)[0])


def _tissue_map(mask: sitk.Image, seed: int = 0):
    labels, spacing, _ = to_lps(sitk.Cast(mask, sitk.sitkUInt8))
    frame = build_frame(labels, spacing)
    rng = np.random.default_rng(seed)
    plan = plan_body(frame, rng)
    return frame, labels, build_tissue_map(frame, labels, plan, rng)


def _centroid(frame, selection: np.ndarray) -> tuple[float, float, float]:
    k, j, i = (float(np.mean(a)) for a in np.nonzero(selection))
    interpolate = lambda axis, index: float(np.interp(index, np.arange(axis.size), axis.ravel()))  # noqa: E731
    return interpolate(frame.u, i), interpolate(frame.v, j), interpolate(frame.w, k)


@pytest.mark.parametrize("case", ["case_00021", "case_00119", "case_00217"])
def test_organs_sit_where_anatomy_puts_them(load_mask, case):
    frame, labels, tissue = _tissue_map(load_mask(case))
    assert len(frame.kidneys) == 2
    right_kidney, left_kidney = sorted(frame.kidneys, key=lambda k: k.centroid[0])
    # u grows to the patient's left, v posteriorly, w superiorly; origin between the kidneys.
    liver = _centroid(frame, tissue == Tissue.LIVER)
    assert liver[0] < 0, "liver on the patient's right"
    spleen = _centroid(frame, tissue == Tissue.SPLEEN)
    assert spleen[0] > 0, "spleen on the patient's left"
    vertebra = _centroid(frame, np.isin(tissue, [Tissue.BONE_CANCELLOUS, Tissue.BONE_CORTICAL])
                         & (np.abs(frame.u) < 25))
    assert right_kidney.centroid[0] < vertebra[0] < left_kidney.centroid[0], "spine between the kidneys"
    aorta = _centroid(frame, (tissue == Tissue.AORTA) & (np.abs(frame.u) < 40))
    ivc = _centroid(frame, tissue == Tissue.IVC)
    assert aorta[1] < vertebra[1] and ivc[1] < vertebra[1], "aorta and IVC anterior to the spine"
    assert ivc[0] < 0 < aorta[0], "IVC on the right, aorta on the left"
    assert np.any(tissue == Tissue.PERIRENAL_FAT)
    assert np.any(tissue == Tissue.RENAL_ARTERY) and np.any(tissue == Tissue.RENAL_VEIN)
    # The mask's own labels are never painted over.
    assert np.all(tissue[labels == KIDNEY] == Tissue.KIDNEY)
    assert np.all(tissue[labels == TUMOR] == Tissue.TUMOR)
    assert np.all(tissue[labels == CYST] == Tissue.CYST)


def test_hounsfield_units_are_those_of_ct(load_mask):
    mask = load_mask(CASE)
    synthetic = generate_ct(mask, seed=2, phase=Phase.NEPHROGRAPHIC)
    ct, labels = _array(synthetic.image).astype(float), _array(mask)
    corner = ct[:, :6, :6]  # outside the body: air
    assert -1024 <= corner.mean() <= -960
    assert 120 - 40 <= np.median(ct[labels == KIDNEY]) <= 200 + 40
    cyst = np.median(ct[labels == CYST])
    assert -10 <= cyst <= 35 or 45 <= cyst <= 95
    hu = synthetic.tissue_hu
    assert -120 <= hu["subcutaneous_fat"] <= -80 and 35 <= hu["muscle"] <= 60 and 50 <= hu["liver"] <= 130
    assert 700 <= hu["bone_cortical"] <= 1200 and 150 <= hu["bone_cancellous"] <= 400


def test_phases_change_the_kidney_the_way_contrast_does(load_mask):
    mask = load_mask(CASE)
    labels = _array(mask)
    kidney = {}
    for phase in Phase:
        ct = _array(generate_ct(mask, seed=4, phase=phase).image).astype(float)
        kidney[phase] = np.median(ct[labels == KIDNEY])
    assert 5 <= kidney[Phase.UNENHANCED] <= 55
    assert kidney[Phase.NEPHROGRAPHIC] > kidney[Phase.UNENHANCED] + 60
    assert kidney[Phase.CORTICOMEDULLARY] > kidney[Phase.UNENHANCED] + 40


def test_excretory_phase_has_a_bright_collecting_system(load_mask):
    mask = load_mask("case_00021")
    labels = _array(mask)
    ct = _array(generate_ct(mask, seed=1, phase=Phase.EXCRETORY).image).astype(float)
    assert np.percentile(ct[labels == KIDNEY], 99.5) > 300


def test_a_mask_with_foreign_labels_is_refused():
    mask = sitk.GetImageFromArray(np.full((8, 8, 8), 5, dtype=np.uint8))
    with pytest.raises(InputImageError, match="outside 0..3"):
        generate_ct(mask, seed=0)


def test_tissue_hu_overrides_make_the_tumor_hyperenhancing_and_leave_far_voxels_alone(load_mask):
    """A shifted domain for fine-tuning: the tumor brighter than the kidney, the rest of the case unchanged."""
    mask = load_mask(CASE)
    labels = _array(mask)
    plain = generate_ct(mask, seed=5, phase=Phase.NEPHROGRAPHIC)
    bright = generate_ct(mask, seed=5, phase=Phase.NEPHROGRAPHIC, tissue_hu_overrides={"tumor": (300, 340)})
    a, b = _array(plain.image).astype(float), _array(bright.image).astype(float)
    assert np.median(a[labels == TUMOR]) < np.median(a[labels == KIDNEY])  # hypo-enhancing as drawn
    assert np.median(b[labels == TUMOR]) > np.median(b[labels == KIDNEY]) + 50  # hyper-enhancing now
    spacing = mask.GetSpacing()[::-1]
    far = ndimage.distance_transform_edt(labels != TUMOR, sampling=spacing) > 15.0  # beyond any blur
    assert np.array_equal(a[far], b[far])
    assert bright.phase == plain.phase and bright.body == plain.body and bright.scanner == plain.scanner
    with pytest.raises(ValueError, match="Unknown tissue 'tumour'"):
        generate_ct(mask, seed=5, tissue_hu_overrides={"tumour": (300, 340)})
    with pytest.raises(ValueError, match="low <= high"):
        generate_ct(mask, seed=5, tissue_hu_overrides={"tumor": (340, 300)})


def test_a_2d_mask_is_refused():
    with pytest.raises(InputImageError, match="2D"):
        generate_ct(sitk.GetImageFromArray(np.zeros((8, 8), dtype=np.uint8)), seed=0)


def test_a_grid_too_large_for_memory_is_refused_before_any_work(load_mask, monkeypatch):
    import kidneytumorseg.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 10 * 2**20)
    with pytest.raises(InsufficientMemoryError, match="--spacing"):
        generate_ct(load_mask(CASE), seed=0)


def test_scanner_overrides_shift_only_the_acquisition(load_mask, mask_cases):
    mask = load_mask(mask_cases[0])
    plain = generate_ct(mask, seed=5)
    noisy = generate_ct(mask, seed=5, scanner_overrides={"noise_hu": 60.0, "calibration_offset": 25.0})
    assert noisy.scanner.noise_hu == 60.0 and noisy.scanner.calibration_offset == 25.0
    assert noisy.phase == plain.phase and noisy.body == plain.body
    a, b = sitk.GetArrayFromImage(plain.image), sitk.GetArrayFromImage(noisy.image)
    assert b.std() > a.std()
    with pytest.raises(ValueError, match="Unknown scanner settings"):
        generate_ct(mask, seed=5, scanner_overrides={"noise": 1.0})
