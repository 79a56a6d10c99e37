"""Solid shapes painted into a tissue map, each evaluated only inside its own bounding box."""

from __future__ import annotations

import numpy as np

from kidneytumorseg_training.synthetic.frame import AnatomicalFrame

Point = tuple[float, float, float]


def ellipsoid(
    tissue: np.ndarray, frame: AnatomicalFrame, centre: Point, semi_axes: Point, value: int,
    allowed: np.ndarray | None = None, roughness: np.ndarray | None = None,
) -> tuple[tuple, np.ndarray]:
    """Paint an axis-aligned ellipsoid (centre and semi-axes in u, v, w mm).

    Returns the array region (slices) it was evaluated in and the painted voxels inside that region.

    ``roughness`` (a full-size field) perturbs the surface so organs are not perfect ellipsoids.
    """
    lower = tuple(c - 1.3 * a for c, a in zip(centre, semi_axes, strict=True))
    upper = tuple(c + 1.3 * a for c, a in zip(centre, semi_axes, strict=True))
    region = frame.index_slices(lower, upper)
    u, v, w = frame.coords(region)
    radius = ((u - centre[0]) / semi_axes[0]) ** 2 + ((v - centre[1]) / semi_axes[1]) ** 2 + (
        (w - centre[2]) / semi_axes[2]
    ) ** 2
    threshold = 1.0 if roughness is None else 1.0 + 0.25 * roughness[region]
    inside = radius <= threshold
    return _apply(tissue, region, inside, value, allowed)


def tube(
    tissue: np.ndarray, frame: AnatomicalFrame, start: Point, end: Point, radius: float, value: int,
    allowed: np.ndarray | None = None,
) -> tuple[tuple, np.ndarray]:
    """Paint a cylinder with rounded ends (a capsule) from ``start`` to ``end`` (u, v, w mm)."""
    lower = tuple(min(a, b) - radius for a, b in zip(start, end, strict=True))
    upper = tuple(max(a, b) + radius for a, b in zip(start, end, strict=True))
    region = frame.index_slices(lower, upper)
    u, v, w = frame.coords(region)
    axis = np.subtract(end, start, dtype=np.float64)
    length_sq = float(axis @ axis) or 1e-9
    du, dv, dw = u - start[0], v - start[1], w - start[2]
    t = np.clip((du * axis[0] + dv * axis[1] + dw * axis[2]) / length_sq, 0.0, 1.0)
    distance_sq = (du - t * axis[0]) ** 2 + (dv - t * axis[1]) ** 2 + (dw - t * axis[2]) ** 2
    return _apply(tissue, region, distance_sq <= radius**2, value, allowed)


def polyline_tube(
    tissue: np.ndarray, frame: AnatomicalFrame, points: list[Point], radius: float, value: int,
    allowed: np.ndarray | None = None,
) -> None:
    """Paint a tube through consecutive points."""
    for start, end in zip(points[:-1], points[1:], strict=True):
        tube(tissue, frame, start, end, radius, value, allowed)


def _apply(
    tissue: np.ndarray, region: tuple, inside: np.ndarray, value: int, allowed: np.ndarray | None
) -> tuple[tuple, np.ndarray]:
    inside = np.broadcast_to(inside, tissue[region].shape)
    if allowed is not None:
        inside = inside & allowed[region]
    tissue[region][inside] = value
    return region, inside
