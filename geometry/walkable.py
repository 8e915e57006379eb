"""Vectorised walkability queries on a :class:`~storesense.geometry.floor.FloorGrid`.

The trackers ask these for hundreds of points per update: is a point on free
floor, does a straight move from A to B stay on free floor (no walking through
a shelf or a wall), and what is the nearest free point. Anything outside the
grid counts as blocked. Single-point and single-segment queries
(:meth:`Walkable.free_at_point`, :meth:`Walkable.segment_free`) give the same
answers on plain floats, for the once-per-fix checks of the Kalman tracker.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .floor import FloorGrid
from .sight import segments_clear

_LINSPACE: dict[int, list[float]] = {}  # np.linspace(0, 1, n) as floats, by n


class Walkable:
    """Free-floor queries over a floor grid's ``free`` mask (True = a person can stand there)."""

    def __init__(self, grid: FloorGrid):
        self.grid = grid
        self.free = np.asarray(grid.free, dtype=bool)
        if not self.free.any():
            raise ValueError("the floor grid has no free cell (check the outline, obstacles and clearance)")
        self.origin = np.asarray(grid.origin, dtype=float)
        self.resolution = float(grid.resolution)
        self.rows, self.cols = self.free.shape
        # for every cell, the index of the nearest free cell (snap in O(1))
        _, (ri, ci) = ndimage.distance_transform_edt(~self.free, return_indices=True)
        self._nearest = (ri, ci)
        self._free = self.free.tolist()
        self._ox, self._oy = float(self.origin[0]), float(self.origin[1])
        self._inv_res = 1.0 / self.resolution
        fr, fc = np.nonzero(self.free)
        self.free_centres = np.c_[self.origin[0] + (fc + 0.5) * self.resolution,
                                  self.origin[1] + (fr + 0.5) * self.resolution]

    def cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and an in-bounds flag for floor points ``(..., 2)``."""
        p = np.asarray(points, dtype=float)
        c = ((p[..., 0] - self.origin[0]) * (1.0 / self.resolution)).astype(np.int64)
        r = ((p[..., 1] - self.origin[1]) * (1.0 / self.resolution)).astype(np.int64)
        # astype truncates towards zero: points just below the origin must not land in cell 0
        inside = (r >= 0) & (r < self.rows) & (c >= 0) & (c < self.cols) & (p[..., 0] >= self.origin[0]) \
            & (p[..., 1] >= self.origin[1])
        return np.minimum(np.maximum(r, 0), self.rows - 1), np.minimum(np.maximum(c, 0), self.cols - 1), inside

    def free_at(self, points: np.ndarray) -> np.ndarray:
        """True where a point lies on free floor."""
        r, c, inside = self.cells(points)
        return inside & self.free[r, c]

    def segments_free(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """True where the straight move from ``a[i]`` to ``b[i]`` stays on free floor.

        Sampled rule of :func:`~storesense.geometry.sight.segments_clear`: every
        segment gets as many points as the longest needs at half a cell apart
        (rounded up), so a wall one cell thick is never stepped over.
        """
        a = np.asarray(a, dtype=float).reshape(-1, 2)
        b = np.asarray(b, dtype=float).reshape(-1, 2)
        length = np.hypot(*(b - a).T)
        n = max(int(np.ceil(length.max(initial=0.0) / (0.5 * self.resolution))) + 1, 2)
        return segments_clear(self.free, self.origin, self.resolution, a, b, samples=n)

    def free_at_point(self, x: float, y: float) -> bool:
        """:meth:`free_at` for one point given as two floats (no numpy call)."""
        c = int((x - self._ox) * self._inv_res)
        r = int((y - self._oy) * self._inv_res)
        # int() truncates towards zero: points just below the origin must not land in cell 0
        return 0 <= r < self.rows and 0 <= c < self.cols and x >= self._ox and y >= self._oy and self._free[r][c]

    def segment_free(self, a, b) -> bool:
        """:meth:`segments_free` for one segment (same samples, same answer), in plain Python.

        The once-per-fix fast path of the Kalman tracker; a test checks it
        against :meth:`segments_free`.
        """
        ax, ay = float(a[0]), float(a[1])
        dx, dy = float(b[0]) - ax, float(b[1]) - ay
        ox, oy, inv, rows, cols, free = self._ox, self._oy, self._inv_res, self.rows, self.cols, self._free
        c0, r0 = int((ax - ox) * inv), int((ay - oy) * inv)
        if not (0 <= r0 < rows and 0 <= c0 < cols and ax >= ox and ay >= oy and free[r0][c0]):
            return False  # the first sample
        bx, by = ax + dx, ay + dy
        if int((bx - ox) * inv) == c0 and int((by - oy) * inv) == r0 and bx >= ox and by >= oy:
            return True  # both ends in one free cell: so is every sample between them
        n = max(int(math.ceil(float(np.hypot(dx, dy)) / (0.5 * self.resolution))) + 1, 2)
        ts = _LINSPACE.get(n)
        if ts is None:
            ts = _LINSPACE[n] = np.linspace(0.0, 1.0, n).tolist()
        for t in ts:  # free_at_point, inlined
            x, y = ax + dx * t, ay + dy * t
            c, r = int((x - ox) * inv), int((y - oy) * inv)
            if not (0 <= r < rows and 0 <= c < cols and x >= ox and y >= oy and free[r][c]):
                return False
        return True

    def cell_at_point(self, x: float, y: float) -> tuple[int, int]:
        """:meth:`cells`' row and column (clipped to the grid) of one point given as two floats (no numpy call:
        the same subtraction, product and truncation)."""
        u, v = (x - self._ox) * self._inv_res, (y - self._oy) * self._inv_res
        if not (abs(u) < 1e15 and abs(v) < 1e15):  # not finite, or beyond int64: as numpy's cast does it
            r, c, _ = self.cells(np.array([x, y]))
            return int(r), int(c)
        r, c = int(v), int(u)
        return min(max(r, 0), self.rows - 1), min(max(c, 0), self.cols - 1)

    def snap(self, point) -> np.ndarray:
        """The centre of the free cell nearest to ``point`` (the point itself when it is free)."""
        p = np.asarray(point, dtype=float)
        x, y = float(p[0]), float(p[1])
        if self.free_at_point(x, y):
            return p.copy()
        r, c = self.cell_at_point(x, y)
        nr, nc = int(self._nearest[0][r, c]), int(self._nearest[1][r, c])
        return np.array([self._ox + (nc + 0.5) * self.resolution, self._oy + (nr + 0.5) * self.resolution])

    def snap_many(self, points: np.ndarray) -> np.ndarray:
        """:meth:`snap` for an array of points ``(n, 2)``."""
        p = np.asarray(points, dtype=float).reshape(-1, 2).copy()
        bad = ~self.free_at(p)
        if bad.any():
            r, c, _ = self.cells(p[bad])
            nr, nc = self._nearest[0][r, c], self._nearest[1][r, c]
            p[bad] = np.c_[self.origin[0] + (nc + 0.5) * self.resolution, self.origin[1] + (nr + 0.5) * self.resolution]
        return p

    def walk_towards(self, a, b, max_dist: float = np.inf) -> np.ndarray:
        """Where someone at ``a`` heading for ``b`` ends up after walking at most ``max_dist`` metres.

        The walk goes straight when that stays on free floor. Otherwise it
        follows the grid's A* path (through doors, never through walls) but
        stops at the path's first turn, so the straight step from ``a`` to the
        result never crosses a wall either; the next call continues from there.
        When ``a`` cannot see the turn (the path starts at the centre of ``a``'s
        cell), the walk goes to that centre first.
        Both ends are snapped to free floor first. With no path it stays at ``a``.
        """
        a = self.snap(a)
        b = self.snap(b)
        if not self.segment_free(a, b):
            try:
                turn = self.grid.first_turn(tuple(a), tuple(b))  # path(a, b)[1] when the path turns
            except ValueError:
                return a
            b = np.asarray(turn, dtype=float) if turn is not None else b
            if not self.segment_free(a, b):
                # the path starts at the centre of a's cell, and a may see the turn only from there (a's corner
                # of the cell is behind a wall's corner): step to the centre first, inside one free cell
                r, c = self.cell_at_point(float(a[0]), float(a[1]))
                b = np.array([self._ox + (c + 0.5) * self.resolution, self._oy + (r + 0.5) * self.resolution])
                if not self.segment_free(a, b):
                    return a
        step = float(np.hypot(*(b - a)))
        if step > max_dist:
            return a + (b - a) * (max_dist / step)
        return b
