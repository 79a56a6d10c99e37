"""PNG overlay of a CT with its label map outlined: axial, coronal and sagittal through the kidney region.

Displayed in radiological convention (patient's right on the image's left, anterior up in axial,
superior up in coronal and sagittal), with the physical aspect ratio, in a soft-tissue window, each label
outlined in its display color. ``kidneytumorseg predict --overlay`` writes one per case, and the training
package one per synthetic case (``kidneytumorseg_training.synthetic.preview`` re-exports this module).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw
from scipy import ndimage

from kidneytumorseg.atomic import atomic_path
from kidneytumorseg.errors import GeometryMismatchError
from kidneytumorseg.geometry import to_lps
from kidneytumorseg.image_io import geometry_differences
from kidneytumorseg.labels import LABEL_COLORS, LABEL_NAMES

WINDOW_LEVEL = (400.0, 40.0)
PANEL_HEIGHT = 320


def render_preview(ct: sitk.Image, mask: sitk.Image | None, title: str = "") -> Image.Image:
    """Return the montage as a PIL image; ``mask`` (a label map, optional) must be on ``ct``'s voxel grid."""
    if mask is not None:
        _check_same_grid(ct, mask)
    ct_lps, spacing_sal, _ = to_lps(ct)  # (S, P, L) array, spacing (si, ap, lr)
    ct_lps = ct_lps.astype(np.float32, copy=False)
    spacing = spacing_sal[::-1]  # (L, P, S), as the panels below index it
    # to_lps may return a view of the image's buffer (when it is stored in LPS already), so the cast image
    # must outlive the array: a temporary would be freed at once and the view read freed memory.
    mask_uint8 = sitk.Cast(mask, sitk.sitkUInt8) if mask is not None else None
    labels = to_lps(mask_uint8)[0] if mask_uint8 is not None else np.zeros(ct_lps.shape, np.uint8)
    centre = _focus(labels)
    k, j, i = centre
    width, level = WINDOW_LEVEL
    panels = [
        # axial: rows posterior-down (anterior up), columns to the left (patient right on image left)
        (ct_lps[k], labels[k], (spacing[0], spacing[1]), "axial"),
        # coronal: rows superior-up, columns left
        (ct_lps[::-1, j, :], labels[::-1, j, :], (spacing[0], spacing[2]), "coronal"),
        # sagittal: rows superior-up, columns posterior to the right (anterior left)
        (ct_lps[::-1, :, i], labels[::-1, :, i], (spacing[1], spacing[2]), "sagittal"),
    ]
    rendered = [_panel(img, lab, sp, width, level, name) for img, lab, sp, name in panels]
    total_width = sum(p.width for p in rendered) + 10 * (len(rendered) + 1)
    canvas = Image.new("RGB", (total_width, PANEL_HEIGHT + 40), (0, 0, 0))
    x = 10
    for panel in rendered:
        canvas.paste(panel, (x, 30))
        x += panel.width + 10
    draw = ImageDraw.Draw(canvas)
    legend = "  ".join(f"{name}" for name in LABEL_NAMES.values())
    draw.text((10, 8), f"{title}   W{width:.0f}/L{level:.0f}   outlines: {legend}", fill=(230, 230, 230))
    x_legend = canvas.width - 150
    for n, label in enumerate(LABEL_NAMES):
        color = tuple(int(255 * c) for c in LABEL_COLORS[label])
        draw.rectangle((x_legend + 50 * n, 10, x_legend + 50 * n + 8, 18), fill=color)
    return canvas


def save_preview(ct: sitk.Image, mask: sitk.Image | None, path: str | os.PathLike[str], title: str = "") -> Path:
    """Render and write the montage as PNG (atomically)."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as temporary:
        render_preview(ct, mask, title).save(temporary)
    return path


def _check_same_grid(ct: sitk.Image, mask: sitk.Image) -> None:
    differences = geometry_differences(ct, mask)
    if differences:
        raise GeometryMismatchError(
            f"the label map is not on the CT's voxel grid ({'; '.join(differences)}), so it cannot be drawn over "
            f"it. Resample the label map onto the CT (nearest neighbour) or pass the CT it was predicted from."
        )


def _focus(labels: np.ndarray) -> tuple[int, int, int]:
    """The voxel to cut through: the centre of the largest mass, else of the kidneys, else the volume."""
    for selection in (labels >= 2, labels > 0):
        if selection.any():
            return tuple(int(round(c)) for c in ndimage.center_of_mass(selection))
    return tuple(n // 2 for n in labels.shape)


def _panel(image: np.ndarray, labels: np.ndarray, spacing_xy: tuple[float, float], width: float, level: float,
           name: str) -> Image.Image:
    gray = np.clip((image - (level - width / 2)) / width, 0, 1)
    rgb = np.repeat((gray * 255).astype(np.uint8)[..., None], 3, axis=2)
    for label, color in LABEL_COLORS.items():
        region = labels == label
        outline = region & ~ndimage.binary_erosion(region)
        rgb[outline] = [int(255 * c) for c in color]
    height_mm = image.shape[0] * spacing_xy[1]
    width_mm = image.shape[1] * spacing_xy[0]
    scale = PANEL_HEIGHT / height_mm
    size = (max(1, int(round(width_mm * scale))), PANEL_HEIGHT)
    panel = Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST)
    ImageDraw.Draw(panel).text((4, 4), name, fill=(255, 255, 0))
    return panel
