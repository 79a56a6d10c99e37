"""The patient's anatomical frame, read from a KiTS mask and its affine.

Generation happens on the mask re-oriented to LPS by the engine's ``geometry.to_lps`` (array axes
[k, j, i] pointing Superior, Posterior, Left), so that "right", "posterior" and "superior" below are
anatomical directions whatever the file's own orientation was. Coordinates are in mm relative to the
midpoint between the kidneys: ``u`` grows to the patient's left, ``v`` posteriorly, ``w`` superiorly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kidneytumorseg.labels import BACKGROUND

# A kidney's centre lies about this far from the midline (used when only one kidney is present).
TYPICAL_KIDNEY_OFFSET_MM = 75.0


@dataclass(frozen=True)
class Kidney:
    """One kidney (with its masses): centroid and extent in frame coordinates (mm)."""

    centroid: tuple[float, float, float]  # (u, v, w)
    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    voxels: int


@dataclass(frozen=True)
class AnatomicalFrame:
    """Grid coordinates (mm, broadcastable) of the LPS-oriented mask, centred between the kidneys."""

    shape: tuple[int, int, int]  # (S, P, L) array shape
    spacing: tuple[float, float, float]  # mm along the array axes (S, P, L)
    u: np.ndarray  # shape (1, 1, L): left +
    v: np.ndarray  # shape (1, P, 1): posterior +
    w: np.ndarray  # shape (S, 1, 1): superior +
    kidneys: tuple[Kidney, ...]

    def index_slices(self, lower: tuple[float, float, float], upper: tuple[float, float, float]) -> tuple:
        """Array slices (S, P, L) covering the box lower..upper given in (u, v, w) mm, clipped to the grid."""
        slices = []
        for coords, lo, hi in ((self.w.ravel(), lower[2], upper[2]), (self.v.ravel(), lower[1], upper[1]),
                               (self.u.ravel(), lower[0], upper[0])):
            start = int(np.searchsorted(coords, lo, side="left"))
            stop = int(np.searchsorted(coords, hi, side="right"))
            slices.append(slice(start, max(start, stop)))
        return tuple(slices)

    def coords(self, region: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(u, v, w) broadcastable coordinates restricted to ``region`` (array slices)."""
        ks, js, is_ = region
        return self.u[:, :, is_], self.v[:, js, :], self.w[ks, :, :]


def build_frame(mask_lps: np.ndarray, spacing: tuple[float, float, float]) -> AnatomicalFrame:
    """Find the kidneys in an LPS-oriented mask ``(S, P, L)`` with ``spacing`` in that order (as
    ``kidneytumorseg.geometry.to_lps`` returns them) and centre the coordinate frame between them."""
    spacing = tuple(float(s) for s in spacing)
    shape = mask_lps.shape
    axes_mm = [np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing, strict=True)]
    kidneys = _find_kidneys(mask_lps, axes_mm)
    fov_centre_u = float(axes_mm[2][-1] / 2)
    if len(kidneys) >= 2:
        left, right = sorted(kidneys[:2], key=lambda k: k.centroid[0])
        centre = tuple((a + b) / 2 for a, b in zip(left.centroid, right.centroid, strict=True))
    elif len(kidneys) == 1:
        only = kidneys[0]
        width = only.upper[0] - only.lower[0]
        if width > 120 and only.lower[0] < fov_centre_u < only.upper[0]:
            midline = only.centroid[0]  # a horseshoe kidney crosses the midline
        else:
            side = 1.0 if only.centroid[0] > fov_centre_u else -1.0
            midline = only.centroid[0] - side * TYPICAL_KIDNEY_OFFSET_MM
        centre = (midline, only.centroid[1], only.centroid[2])
    else:
        centre = tuple(float(a[-1] / 2) for a in (axes_mm[2], axes_mm[1], axes_mm[0]))
    u = (axes_mm[2] - np.float32(centre[0])).reshape(1, 1, -1)
    v = (axes_mm[1] - np.float32(centre[1])).reshape(1, -1, 1)
    w = (axes_mm[0] - np.float32(centre[2])).reshape(-1, 1, 1)
    shifted = tuple(
        Kidney(
            centroid=_shift(k.centroid, centre), lower=_shift(k.lower, centre), upper=_shift(k.upper, centre),
            voxels=k.voxels,
        )
        for k in kidneys
    )
    return AnatomicalFrame(shape=shape, spacing=spacing, u=u, v=v, w=w, kidneys=shifted)


def _shift(point: tuple[float, float, float], centre: tuple) -> tuple[float, float, float]:
    return tuple(float(p - c) for p, c in zip(point, centre, strict=True))


def _find_kidneys(mask_lps: np.ndarray, axes_mm: list[np.ndarray]) -> list[Kidney]:
    """The (at most two) largest kidney-and-mass components, in absolute LPS mm (u, v, w)."""
    foreground = mask_lps != BACKGROUND
    if not foreground.any():
        return []
    labelled, count = ndimage.label(foreground, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labelled.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    boxes = ndimage.find_objects(labelled)
    kidneys = []
    for index in order[:2]:
        if sizes[index] < 0.05 * sizes[order[0]]:
            break
        box = boxes[index]
        local = labelled[box] == index + 1
        centroid_idx = [c + b.start for c, b in zip(ndimage.center_of_mass(local), box, strict=True)]
        ks, js, is_ = box
        lower = (float(axes_mm[2][is_.start]), float(axes_mm[1][js.start]), float(axes_mm[0][ks.start]))
        upper = (float(axes_mm[2][is_.stop - 1]), float(axes_mm[1][js.stop - 1]), float(axes_mm[0][ks.stop - 1]))
        spacing = [float(a[1] - a[0]) if len(a) > 1 else 1.0 for a in axes_mm]
        centroid = (centroid_idx[2] * spacing[2], centroid_idx[1] * spacing[1], centroid_idx[0] * spacing[0])
        kidneys.append(Kidney(centroid=centroid, lower=lower, upper=upper, voxels=int(sizes[index])))
    return kidneys
