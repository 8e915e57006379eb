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

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a store config is read, never built, here
    from ..config import StoreConfig
from .polygons import point_in_polygon

Point2 = tuple[float, float]

_LINSPACE: dict[int, np.ndarray] = {}  # np.linspace(0, 1, n) by n: where a segment is sampled


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
        self._padded: list[bool] | None = None
        self._turns: dict[tuple, Point2 | None] = {}  # (start cell, goal cell) -> first_turn, bounded
        self._moves: list[tuple | None] = []

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

    def _search_grid(self) -> tuple[list[bool], int]:
        """``free`` padded with a blocked border and flattened (built once), and the padded width.

        Cell ``(row, col)`` is index ``(row + 1) * width + col + 1``, so index
        order is (row, col) order and every neighbour of a grid cell is in range.
        """
        if self._padded is None:
            rows, cols = self.shape
            padded = np.zeros((rows + 2, cols + 2), dtype=bool)
            padded[1:-1, 1:-1] = self.free
            self._padded = padded.ravel().tolist()
            self._moves = [None] * len(self._padded)
        return self._padded, self.shape[1] + 2

    def _moves_of(self, i: int, free: list[bool], width: int) -> tuple[tuple[int, float], ...]:
        """The A* moves from padded cell ``i``, in the order they are tried (memoised).

        8-connected; a step onto a blocked cell (or the border) or one that cuts a
        blocked corner is no move.
        """
        diag = math.sqrt(2)
        steps = ((-width, 1.0, 0, 0), (width, 1.0, 0, 0), (-1, 1.0, 0, 0), (1, 1.0, 0, 0),
                 (-width - 1, diag, -width, -1), (-width + 1, diag, -width, 1),
                 (width - 1, diag, width, -1), (width + 1, diag, width, 1))
        moves = tuple((i + off, w) for off, w, ra, ca in steps
                      if free[i + off] and (not ra or (free[i + ra] and free[i + ca])))
        self._moves[i] = moves  # type: ignore[index]
        return moves

    def line_free(self, a: Point2, b: Point2) -> bool:
        """True when the straight segment a-b stays on free cells."""
        return bool(self._lines_free(a, [b])[0])

    def _lines_free(self, a: Point2, ends: list[Point2]) -> np.ndarray:
        """:meth:`line_free` from ``a`` to each point of ``ends``, in one vectorised pass.

        Each segment is sampled exactly as a single test samples it: at
        ``np.linspace(0, 1, n)`` with its own ``n`` (every half cell), mapped to
        cells as :meth:`cell` maps points.
        """
        half = self.resolution / 2
        ax, ay = float(a[0]), float(a[1])
        ns, dxs, dys = [], [], []
        for b in ends:
            dx, dy = float(b[0]) - ax, float(b[1]) - ay
            ns.append(max(2, int(math.hypot(dx, dy) / half) + 1))
            dxs.append(dx)
            dys.append(dy)
        for n in ns:
            if n not in _LINSPACE:
                _LINSPACE[n] = np.linspace(0.0, 1.0, n)
        t = np.concatenate([_LINSPACE[n] for n in ns])
        counts = np.array(ns)
        c = ((ax + t * np.repeat(dxs, counts) - self.origin[0]) / self.resolution).astype(np.int64)
        r = ((ay + t * np.repeat(dys, counts) - self.origin[1]) / self.resolution).astype(np.int64)
        ok = self.free[np.clip(r, 0, self.shape[0] - 1), np.clip(c, 0, self.shape[1] - 1)]
        return np.logical_and.reduceat(ok, np.cumsum(counts) - counts)

    def _farthest_visible(self, points: list[Point2], i: int, chunk: int = 24) -> int:
        """The last ``j > i`` with a free straight line from ``points[i]`` (``i + 1`` when none farther is).

        The smoothing step of :meth:`path`; candidates are tested farthest first, a chunk at a time.
        """
        hi = len(points)
        while hi > i + 2:
            lo = max(i + 2, hi - chunk)
            ok = np.flatnonzero(self._lines_free(points[i], points[lo:hi]))
            if len(ok):
                return lo + int(ok[-1])
            hi = lo
        return i + 1

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
        j = self._farthest_visible(points, 0) if len(points) > 2 else len(points)
        turn = points[j] if j < len(points) - 1 else None
        if len(self._turns) >= 4096:
            self._turns.pop(next(iter(self._turns)))
        self._turns[key] = turn
        return turn

    def _cell_path(self, start: Point2, goal: Point2) -> list[Point2]:
        """A* (8-connected, no corner cutting) from ``start``'s free cell to ``goal``'s: the cell centres.

        The search runs on a padded, flattened copy of the grid (a cell's index
        is ``(row + 1) * width + col + 1``, so index order is (row, col) order
        and the heap breaks ties as it would on cell tuples).
        """
        s, g = self.nearest_free(start), self.nearest_free(goal)
        free, width = self._search_grid()
        moves, moves_of = self._moves, self._moves_of
        si, gi = (s[0] + 1) * width + s[1] + 1, (g[0] + 1) * width + g[1] + 1
        g0, g1 = g[0] + 1, g[1] + 1
        inf = math.inf
        best = [inf] * len(free)
        best[si] = 0.0
        came: dict[int, int] = {}
        heap = [(0.0, 0.0, si)]
        pop, push, hypot = heapq.heappop, heapq.heappush, math.hypot
        while heap:
            _, cost, cur = pop(heap)
            if cur == gi:
                break
            if cost > best[cur]:
                continue
            for nxt, w in moves[cur] or moves_of(cur, free, width):
                new = cost + w
                if new < best[nxt]:
                    best[nxt] = new
                    came[nxt] = cur
                    r, c = divmod(nxt, width)
                    push(heap, (new + hypot(r - g0, c - g1), new, nxt))
        if best[gi] == inf:
            raise ValueError(f"no walkable path from {start} to {goal}")
        cells = [gi]
        while cells[-1] != si:
            cells.append(came[cells[-1]])
        cells.reverse()
        return [self.point((i // width - 1, i % width - 1)) for i in cells]

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
            j = self._farthest_visible(points, i)
            out.append(points[j])
            i = j
        return out


def path_length(points: list[Point2]) -> float:
    """Length of a polyline in metres."""
    return float(sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(points, points[1:])))
