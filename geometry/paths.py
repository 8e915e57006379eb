"""Shortest paths on an occupancy grid: one graph, two searches, one smoothing.

:class:`GridGraph` makes the free cells of a grid a graph: 8-connected, a
diagonal step only where both side cells are free too (no corner cutting),
steps costing ``step`` and ``step * sqrt(2)``. Nodes are the free cells in
row-major order. On it, :meth:`GridGraph.astar` finds one path (ties broken by
cost so far, then node number, i.e. (row, column) order) and
:meth:`GridGraph.dijkstra` finds all distances and predecessor trees from
several sources at once (scipy). :func:`smooth` drops the points of a path a
straight line of sight can skip.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable, Sequence

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

Cell = tuple[int, int]

#: the eight steps in the order the graph is built: straight ones, then diagonals
_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


class GridGraph:
    """The free cells of an occupancy grid (True = free) as a graph; see the module docstring."""

    def __init__(self, free: np.ndarray, step: float = 1.0):
        free = np.asarray(free, dtype=bool)
        self.free, self.shape, self.step = free, free.shape, step
        rows, cols = free.shape
        index = np.full(free.shape, -1, dtype=np.int64)
        index[free] = np.arange(int(free.sum()))
        self.index = index  # node number of each cell, -1 for a blocked one
        self.cells = np.argwhere(free)  # (row, col) of each node
        src, dst, wts = [], [], []
        for dr, dc in _STEPS:
            r0, r1 = max(0, -dr), rows - max(0, dr)
            c0, c1 = max(0, -dc), cols - max(0, dc)
            ok = free[r0:r1, c0:c1] & free[r0 + dr:r1 + dr, c0 + dc:c1 + dc]
            if dr and dc:  # no corner cutting
                ok &= free[r0 + dr:r1 + dr, c0:c1] & free[r0:r1, c0 + dc:c1 + dc]
            src.append(index[r0:r1, c0:c1][ok])
            dst.append(index[r0 + dr:r1 + dr, c0 + dc:c1 + dc][ok])
            wts.append(np.full(int(ok.sum()), step * (math.sqrt(2) if dr and dc else 1.0)))
        n = len(self.cells)
        self.graph = csr_matrix((np.concatenate(wts), (np.concatenate(src), np.concatenate(dst))), shape=(n, n))
        self._adjacency: list[tuple | None] = []

    def node(self, cell: Cell) -> int:
        """Node number of a free cell."""
        return int(self.index[cell])

    def cell(self, node: int) -> Cell:
        """(row, col) of a node."""
        r, c = self.cells[node]
        return int(r), int(c)

    def _neighbours(self, i: int) -> tuple[tuple[int, float], ...]:
        """(node, step cost) of each neighbour of node ``i`` (memoised)."""
        if not self._adjacency:
            g = self.graph
            self._indptr, self._indices, self._data = g.indptr.tolist(), g.indices.tolist(), g.data.tolist()
            self._rows, self._cols = self.cells[:, 0].tolist(), self.cells[:, 1].tolist()
            self._adjacency = [None] * len(self.cells)
        lo, hi = self._indptr[i], self._indptr[i + 1]
        moves = tuple(zip(self._indices[lo:hi], self._data[lo:hi]))
        self._adjacency[i] = moves
        return moves

    def prepare(self) -> "GridGraph":
        """Every node's neighbours now, all at once (:meth:`astar` otherwise builds them node by node as it
        first reaches them): start-up work for a user who searches all day. The searches do not change."""
        for i in range(len(self.cells)):
            if not self._adjacency or self._adjacency[i] is None:
                self._neighbours(i)
        return self

    def astar(self, start: Cell, goal: Cell) -> list[Cell] | None:
        """Cells of a shortest path from free cell ``start`` to free cell ``goal`` (A*), or None when none exists.

        The heuristic is the straight distance in cells (times ``step``); the heap
        breaks ties by cost so far and then by node number.
        """
        si, gi = self.node(start), self.node(goal)
        if not self._adjacency:
            self._neighbours(si)
        adjacency, neighbours = self._adjacency, self._neighbours
        rows, cols, step = self._rows, self._cols, self.step
        g0, g1 = goal
        inf = math.inf
        best = [inf] * len(adjacency)
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
            for nxt, w in adjacency[cur] or neighbours(cur):
                new = cost + w
                if new < best[nxt]:
                    best[nxt] = new
                    came[nxt] = cur
                    h = hypot(rows[nxt] - g0, cols[nxt] - g1)
                    push(heap, (new + (h if step == 1.0 else h * step), new, nxt))
        if best[gi] == inf:
            return None
        nodes = [gi]
        while nodes[-1] != si:
            nodes.append(came[nodes[-1]])
        return [self.cell(i) for i in reversed(nodes)]

    def dijkstra(self, sources: Sequence[Cell]) -> tuple[np.ndarray, np.ndarray]:
        """Distances and predecessors from each source cell to every node: two ``(len(sources), nodes)`` arrays.

        Unreachable nodes have distance ``inf`` and predecessor -9999 (scipy's).
        """
        return dijkstra(self.graph, indices=[self.node(c) for c in sources], return_predecessors=True)

    def chain(self, predecessors: np.ndarray, source: Cell, target: Cell) -> list[Cell] | None:
        """Cells from ``source`` to ``target`` along a predecessor tree rooted at ``source``; None if not in it."""
        s, nodes = self.node(source), [self.node(target)]
        while nodes[-1] != s:
            prev = int(predecessors[nodes[-1]])
            if prev < 0:
                return None
            nodes.append(prev)
        return [self.cell(i) for i in reversed(nodes)]


def smooth(points: list, visible: Callable[[object, list], np.ndarray], chunk: int | None = 24) -> list:
    """Line-of-sight smoothing: from each kept point, jump to the farthest later point in sight.

    ``visible(p, later)`` tells for each point of ``later`` whether the straight
    line from ``p`` is clear; the next point of the path is always taken as in
    sight (a path's consecutive points are neighbours). ``chunk``: see
    :func:`farthest_visible`.
    """
    if len(points) <= 2:
        return list(points)
    out, i = [points[0]], 0
    while i < len(points) - 1:
        i = farthest_visible(points, i, visible, chunk)
        out.append(points[i])
    return out


def farthest_visible(points: list, i: int, visible: Callable[[object, list], np.ndarray],
                     chunk: int | None = 24) -> int:
    """The last ``j > i`` with ``points[j]`` in sight of ``points[i]`` (``i + 1`` when none farther is).

    Candidates are tested farthest first, ``chunk`` at a time; with ``chunk=None``
    all of ``points[i + 1:]`` go to ``visible`` in one call.
    """
    if chunk is None:
        ok = np.flatnonzero(visible(points[i], points[i + 1:]))
        return i + 1 + (int(ok[-1]) if len(ok) else 0)
    hi = len(points)
    while hi > i + 2:
        lo = max(i + 2, hi - chunk)
        ok = np.flatnonzero(visible(points[i], points[lo:hi]))
        if len(ok):
            return lo + int(ok[-1])
        hi = lo
    return i + 1
