"""Floor geometry: which points are walkable, and shortest walkable paths.

:class:`FloorGrid` rasterises the store outline, shelves and obstacles from the
store config into an occupancy grid with a clearance margin, and finds paths
with A* (8-connected) followed by line-of-sight smoothing. The shopper
simulator walks these paths; wayfinding and position clamping use the same grid.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from scipy import ndimage

from ..config import StoreConfig, point_in_polygon

Point2 = tuple[float, float]


class _FloorPlan:
    """The two things :class:`FloorGrid` reads from a store config, for a bare floor plan."""

    def __init__(self, outline: list[Point2], obstacles: list[list[Point2]]):
        self.floor = type("Floor", (), {"outline": [tuple(map(float, p)) for p in outline]})()
        self.obstacles = [[tuple(map(float, p)) for p in poly] for poly in obstacles]

    def is_walkable(self, x: float, y: float) -> bool:
        """Inside the outline and outside every obstacle."""
        if not point_in_polygon(x, y, self.floor.outline):
            return False
        return not any(point_in_polygon(x, y, poly) for poly in self.obstacles)


class FloorGrid:
    """Occupancy grid of the store floor.

    ``resolution`` is the cell size in metres; ``clearance`` keeps paths that far
    from walls, shelves and obstacles (a person's half-width).
    """

    def __init__(self, config: StoreConfig, resolution: float = 0.1, clearance: float = 0.3):
        self.config = config
        self.resolution = resolution
        outline = np.asarray(config.floor.outline, dtype=float)
        self.origin = outline.min(axis=0)
        size = outline.max(axis=0) - self.origin
        self.shape = (int(math.ceil(size[1] / resolution)), int(math.ceil(size[0] / resolution)))
        rows, cols = self.shape
        walkable = np.zeros(self.shape, dtype=bool)
        for r in range(rows):
            y = self.origin[1] + (r + 0.5) * resolution
            for c in range(cols):
                x = self.origin[0] + (c + 0.5) * resolution
                walkable[r, c] = config.is_walkable(x, y)
        self.walkable = walkable
        # distance (m) from each free cell to the nearest blocked cell or the grid edge
        padded = np.pad(walkable, 1, constant_values=False)
        dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1] * resolution
        self.clearance_map = dist
        self.free = walkable & (dist >= clearance)

    @classmethod
    def from_outline(cls, outline: list[Point2], obstacles: list[list[Point2]] = (),
                     resolution: float = 0.1, clearance: float = 0.3) -> "FloorGrid":
        """A grid for a floor plan given as an outline polygon and obstacle polygons (no store config)."""
        return cls(_FloorPlan(list(outline), list(obstacles)), resolution, clearance)  # type: ignore[arg-type]

    # -- coordinates

    def cell(self, p: Point2) -> tuple[int, int]:
        """Grid (row, col) of a floor point, clipped to the grid."""
        c = int((p[0] - self.origin[0]) / self.resolution)
        r = int((p[1] - self.origin[1]) / self.resolution)
        return min(max(r, 0), self.shape[0] - 1), min(max(c, 0), self.shape[1] - 1)

    def point(self, cell: tuple[int, int]) -> Point2:
        """Floor point at the centre of a grid cell."""
        r, c = cell
        return (
            float(self.origin[0] + (c + 0.5) * self.resolution),
            float(self.origin[1] + (r + 0.5) * self.resolution),
        )

    def nearest_free(self, p: Point2) -> tuple[int, int]:
        """The free cell closest to ``p`` (``p``'s own cell when it is free)."""
        cell = self.cell(p)
        if self.free[cell]:
            return cell
        free = np.argwhere(self.free)
        if len(free) == 0:
            raise ValueError("the floor has no walkable cell with the required clearance")
        d = np.hypot(free[:, 0] - cell[0], free[:, 1] - cell[1])
        r, c = free[int(np.argmin(d))]
        return int(r), int(c)

    def line_free(self, a: Point2, b: Point2) -> bool:
        """True when the straight segment a-b stays on free cells."""
        n = max(2, int(math.hypot(b[0] - a[0], b[1] - a[1]) / (self.resolution / 2)) + 1)
        for t in np.linspace(0.0, 1.0, n):
            if not self.free[self.cell((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))]:
                return False
        return True

    # -- paths

    def path(self, start: Point2, goal: Point2) -> list[Point2]:
        """Shortest walkable path from ``start`` to ``goal`` as a list of floor points.

        Start and goal are snapped to the nearest free cell. Raises ``ValueError``
        when the goal cannot be reached from the start.
        """
        s, g = self.nearest_free(start), self.nearest_free(goal)
        rows, cols = self.shape
        steps = [(-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0),
                 (-1, -1, math.sqrt(2)), (-1, 1, math.sqrt(2)), (1, -1, math.sqrt(2)), (1, 1, math.sqrt(2))]
        best = {s: 0.0}
        came: dict[tuple[int, int], tuple[int, int]] = {}
        heap = [(0.0, 0.0, s)]
        while heap:
            _, cost, cur = heapq.heappop(heap)
            if cur == g:
                break
            if cost > best.get(cur, math.inf):
                continue
            for dr, dc, w in steps:
                nr, nc = cur[0] + dr, cur[1] + dc
                if not (0 <= nr < rows and 0 <= nc < cols) or not self.free[nr, nc]:
                    continue
                if dr and dc and not (self.free[cur[0] + dr, cur[1]] and self.free[cur[0], cur[1] + dc]):
                    continue  # no corner cutting
                nxt = (nr, nc)
                new = cost + w
                if new < best.get(nxt, math.inf):
                    best[nxt] = new
                    came[nxt] = cur
                    h = math.hypot(nr - g[0], nc - g[1])
                    heapq.heappush(heap, (new + h, new, nxt))
        if g not in best:
            raise ValueError(f"no walkable path from {start} to {goal}")
        cells = [g]
        while cells[-1] != s:
            cells.append(came[cells[-1]])
        cells.reverse()
        points = [self.point(c) for c in cells]
        return self._smooth(points)

    def smooth(self, points: list[Point2]) -> list[Point2]:
        """Line-of-sight smoothing of a path on free cells: drops points a straight free line can skip."""
        return self._smooth(points)

    def _smooth(self, points: list[Point2]) -> list[Point2]:
        """Drop intermediate points that a straight free line can skip."""
        if len(points) <= 2:
            return points
        out = [points[0]]
        i = 0
        while i < len(points) - 1:
            j = len(points) - 1
            while j > i + 1 and not self.line_free(points[i], points[j]):
                j -= 1
            out.append(points[j])
            i = j
        return out


def path_length(points: list[Point2]) -> float:
    """Length of a polyline in metres."""
    return float(sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(points, points[1:])))
