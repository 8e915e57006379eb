"""Floor geometry: which points are walkable, and shortest walkable paths.

:class:`FloorGrid` rasterises the store outline, shelves and obstacles from the
store config into an occupancy grid with a clearance margin, and finds paths
with A* on its :class:`~storesense.geometry.paths.GridGraph` (8-connected, no
corner cutting) followed by line-of-sight smoothing. The shopper
simulator walks these paths; wayfinding and position clamping use the same grid.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a store config is read, never built, here
    from ..config import StoreConfig
from .paths import GridGraph, farthest_visible, smooth
from .polygons import point_in_polygon
from .sight import segments_clear

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
        self._graph: GridGraph | None = None
        self._turns: dict[tuple, Point2 | None] = {}  # (start cell, goal cell) -> first_turn, bounded

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

    @property
    def graph(self) -> GridGraph:
        """The free cells as a search graph (built on first use; steps cost 1 and sqrt(2), in cells)."""
        if self._graph is None:
            self._graph = GridGraph(self.free)
        return self._graph

    def line_free(self, a: Point2, b: Point2) -> bool:
        """True when the straight segment a-b stays on free cells (by the sampled rule, see :meth:`_lines_free`)."""
        return bool(self._lines_free(a, [b])[0])

    def _lines_free(self, a: Point2, ends: list[Point2]) -> np.ndarray:
        """:meth:`line_free` from ``a`` to each point of ``ends``, in one vectorised pass.

        Each segment is sampled every half cell (its own count of points, see
        :func:`~storesense.geometry.sight.segments_clear`); a point off the grid
        counts as the nearest border cell.
        """
        half = self.resolution / 2
        ax, ay = float(a[0]), float(a[1])
        counts = [max(2, int(math.hypot(float(b[0]) - ax, float(b[1]) - ay) / half) + 1) for b in ends]
        return segments_clear(self.free, self.origin, self.resolution, (ax, ay), np.asarray(ends, dtype=float),
                              samples=counts, outside_blocked=False)

    # -- paths

    def path(self, start: Point2, goal: Point2) -> list[Point2]:
        """Shortest walkable path from ``start`` to ``goal`` as a list of floor points.

        Start and goal are snapped to the nearest free cell. Raises ``ValueError``
        when the goal cannot be reached from the start.
        """
        return self._smooth(self._cell_path(start, goal))

    def first_turn(self, start: Point2, goal: Point2) -> Point2 | None:
        """``path(start, goal)[1]`` when the path turns (has more than two points), else None.

        Only the first line-of-sight step of the smoothing is done, which is all
        a step towards the goal needs. Raises ``ValueError`` like :meth:`path`.
        """
        key = (self.nearest_free(start), self.nearest_free(goal))  # the answer depends on the two cells only
        if key in self._turns:
            return self._turns[key]
        points = self._cell_path(start, goal)
        j = farthest_visible(points, 0, self._lines_free) if len(points) > 2 else len(points)
        turn = points[j] if j < len(points) - 1 else None
        if len(self._turns) >= 4096:
            self._turns.pop(next(iter(self._turns)))
        self._turns[key] = turn
        return turn

    def _cell_path(self, start: Point2, goal: Point2) -> list[Point2]:
        """A* (:meth:`GridGraph.astar`) from ``start``'s free cell to ``goal``'s: the cell centres."""
        cells = self.graph.astar(self.nearest_free(start), self.nearest_free(goal))
        if cells is None:
            raise ValueError(f"no walkable path from {start} to {goal}")
        return [self.point(c) for c in cells]

    def smooth(self, points: list[Point2]) -> list[Point2]:
        """Line-of-sight smoothing of a path on free cells: drops points a straight free line can skip."""
        return self._smooth(points)

    def _smooth(self, points: list[Point2]) -> list[Point2]:
        """Drop intermediate points that a straight free line can skip."""
        return smooth(points, self._lines_free)


def path_length(points: list[Point2]) -> float:
    """Length of a polyline in metres."""
    return float(sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(points, points[1:])))
