"""Plane geometry on the floor plan: polygons and distances, in metres.

Pure functions on plain points and lists of points, used by the store config's
validation, the fusion node's zones, the simulators and the wayfinding.
"""

from __future__ import annotations

import math

import numpy as np

Point2 = tuple[float, float]
Point3 = tuple[float, float, float]


def polygon_area(points: list[Point2]) -> float:
    """Signed area of a polygon (shoelace formula); positive when counter-clockwise."""
    pts = np.asarray(points, dtype=float)
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def point_in_polygon(x: float, y: float, polygon: list[Point2]) -> bool:
    """Even-odd rule point-in-polygon test (points on an edge may go either way)."""
    if not polygon:
        return False
    inside = False
    x1, y1 = polygon[-1]  # each edge from the previous corner (the last closes the ring): the fusion node asks
    for x2, y2 in polygon:  # this for every observation in a zone's box, so no index arithmetic
        if (y1 > y) != (y2 > y):
            xi = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < xi:
                inside = not inside
        x1, y1 = x2, y2
    return inside


def rectangle_interior(polygon: list[Point2]) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` when ``polygon`` is an axis-aligned rectangle (four corners, each edge parallel to an
    axis), else None.

    Every point with ``x0 < x < x1`` and ``y0 < y < y1`` is inside it by
    :func:`point_in_polygon`: the ray crosses the two vertical edges' lines at
    exactly ``x0`` and ``x1`` (the slope term is zero) and no horizontal edge,
    so it toggles once. A caller can skip that test for such points.
    """
    if len(polygon) != 4:
        return None
    corners = [(float(p[0]), float(p[1])) for p in polygon]
    xs, ys = sorted({c[0] for c in corners}), sorted({c[1] for c in corners})
    if len(xs) != 2 or len(ys) != 2 or not all(math.isfinite(v) for v in xs + ys):
        return None
    if set(corners) != {(x, y) for x in xs for y in ys}:
        return None
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
        if ax != bx and ay != by:
            return None  # a diagonal edge: corners in a crossed order
    return xs[0], ys[0], xs[1], ys[1]


def distance_to_polygon(x: float, y: float, polygon: list[Point2]) -> float:
    """Distance in metres from (x, y) to a polygon; 0 inside it."""
    if point_in_polygon(x, y, polygon):
        return 0.0
    best = math.inf
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        dx, dy = x2 - x1, y2 - y1
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / length2))
        best = min(best, math.hypot(x - (x1 + t * dx), y - (y1 + t * dy)))
    return best


def distance(a: Point2, b: Point2) -> float:
    """Euclidean distance between two floor points, metres."""
    return math.hypot(a[0] - b[0], a[1] - b[1])
