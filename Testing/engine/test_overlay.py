"""The PNG overlay of a CT with its labels: label colors where the mask is, title, size, atomic write, grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from kidneytumorseg.batch import overlay_path, overlay_title
from kidneytumorseg.errors import GeometryMismatchError
from kidneytumorseg.labels import CYST, KIDNEY, LABEL_COLORS, TUMOR
from kidneytumorseg.overlay import PANEL_HEIGHT, render_preview, save_preview

SHAPE = (30, 40, 50)  # (S, P, L) array of an LPS image, 1 mm voxels: 8 px per mm in the 320 px panels
SCALE = PANEL_HEIGHT / SHAPE[1]
KIDNEY_BOX = (slice(5, 25), slice(10, 20), slice(10, 20))
TUMOR_BOX = (slice(10, 20), slice(12, 18), slice(12, 18))
CYST_BOX = (slice(5, 25), slice(25, 35), slice(30, 40))


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin((-20.0, 30.0, 100.0))
    return image


@pytest.fixture
def ct() -> sitk.Image:
    return _image(np.full(SHAPE, 40, dtype=np.int16))


@pytest.fixture
def labels(ct) -> sitk.Image:
    array = np.zeros(SHAPE, np.uint8)
    array[KIDNEY_BOX], array[TUMOR_BOX], array[CYST_BOX] = KIDNEY, TUMOR, CYST
    image = _image(array)
    image.CopyInformation(ct)
    return image


def _axial_panel(montage: Image.Image) -> np.ndarray:
    width = round(SHAPE[2] * SCALE)
    return np.asarray(montage)[30 : 30 + PANEL_HEIGHT, 10 : 10 + width].astype(int)


def _pixels_of(panel: np.ndarray, label: int) -> np.ndarray:
    color = [int(255 * c) for c in LABEL_COLORS[label]]
    return np.argwhere((panel == color).all(axis=-1))  # (row, column) in panel pixels


def test_each_label_is_drawn_in_its_color_where_the_mask_is(ct, labels):
    panel = _axial_panel(render_preview(ct, labels, title="case"))
    for label, box in ((KIDNEY, KIDNEY_BOX), (TUMOR, TUMOR_BOX), (CYST, CYST_BOX)):
        pixels = _pixels_of(panel, label)
        assert len(pixels) > 100, f"label {label} not drawn"
        rows, columns = box[1], box[2]  # axial: rows posterior-down, columns towards patient left
        assert pixels[:, 0].min() >= rows.start * SCALE - 1 and pixels[:, 0].max() <= rows.stop * SCALE + 1
        assert pixels[:, 1].min() >= columns.start * SCALE - 1 and pixels[:, 1].max() <= columns.stop * SCALE + 1
    without = _axial_panel(render_preview(ct, None))
    assert not any(len(_pixels_of(without, label)) for label in LABEL_COLORS)  # no mask, no colors


def test_the_title_is_written_above_the_panels(ct, labels):
    def text_extent(title: str) -> int:
        band = np.asarray(render_preview(ct, labels, title=title))[:28, :-160]  # the title line, legend left out
        columns = np.flatnonzero((band.min(axis=-1) > 100).any(axis=0))  # light text on black
        return int(columns.max())

    title = overlay_title("case_00001", "kits-demo@1.0.0", {"kidney": 151.2, "tumor": 30.0, "cyst": 0.0})
    assert title == "case_00001   kits-demo@1.0.0   kidney 151.2 ml  tumor 30.0 ml  cyst 0.0 ml"
    assert text_extent(title) > text_extent("") + 100


def test_the_image_has_a_sane_size(ct, labels):
    montage = render_preview(ct, labels)
    axial = round(PANEL_HEIGHT * 50 / 40)  # each panel is PANEL_HEIGHT tall: 50 mm wide, 40 mm deep
    coronal = round(PANEL_HEIGHT * 50 / 30)  # 50 mm wide, 30 mm tall
    sagittal = round(PANEL_HEIGHT * 40 / 30)  # 40 mm deep, 30 mm tall
    assert montage.size == (axial + coronal + sagittal + 40, PANEL_HEIGHT + 40)
    assert montage.mode == "RGB"


def test_save_writes_a_png_atomically(ct, labels, tmp_path):
    path = save_preview(ct, labels, tmp_path / "case_overlay.png", title="case")
    assert path == tmp_path / "case_overlay.png" and [p.name for p in tmp_path.iterdir()] == ["case_overlay.png"]
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == render_preview(ct, labels).size

    shifted = sitk.Image(labels)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(GeometryMismatchError):
        save_preview(ct, shifted, path)
    assert [p.name for p in tmp_path.iterdir()] == ["case_overlay.png"]  # the earlier file kept, no temporary


@pytest.mark.parametrize("change", ["spacing", "size", "origin"])
def test_a_label_map_on_another_grid_is_a_clear_error(ct, labels, change):
    if change == "spacing":
        other = sitk.Image(labels)
        other.SetSpacing((1.0, 1.0, 2.0))
    elif change == "size":
        other = labels[:, :, :-1]
    else:
        other = sitk.Image(labels)
        other.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(GeometryMismatchError, match=f"not on the CT's voxel grid.*{change}.*[Rr]esample"):
        render_preview(ct, other)


def test_overlay_names_follow_the_label_map():
    assert overlay_path(Path("out/case_00001.nii.gz")) == Path("out/case_00001_overlay.png")
    assert overlay_path(Path("out/labels.nrrd")) == Path("out/labels_overlay.png")
