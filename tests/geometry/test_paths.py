"""The shared grid graph, its two searches, smoothing and line of sight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from storesense.config import example_store_path, load_store_config
from storesense.geometry.floor import FloorGrid
from storesense.geometry.paths import GridGraph, smooth
from storesense.geometry.sight import cells_crossed, segments_clear


@pytest.fixture(scope="module")
def grid():
    return FloorGrid(load_store_config(example_store_path()), 0.1, 0.3)


def test_astar_and_dijkstra_agree_on_path_lengths(grid):
    graph = grid.graph
    rng = np.random.default_rng(0)
    free = graph.cells
    for _ in range(20):
        s, g = (tuple(int(v) for v in free[rng.integers(len(free))]) for _ in range(2))
        dist, pred = graph.dijkstra([s])
        cells = graph.astar(s, g)
        assert cells[0] == s and cells[-1] == g
        steps = [math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(cells, cells[1:])]
        assert all(st in (1.0, math.sqrt(2)) for st in steps)  # 8-connected moves only
        assert all(grid.free[c] for c in cells)
        assert sum(steps) == pytest.approx(dist[0, graph.node(g)], abs=1e-9)
        chain = graph.chain(pred[0], s, g)
        assert chain[0] == s and chain[-1] == g
        assert sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(chain, chain[1:])) == pytest.approx(sum(steps))


def test_no_corner_cutting_and_unreachable_cells():
    free = np.array([[1, 0, 1],
                     [0, 1, 0],
                     [1, 0, 1]], dtype=bool)
    graph = GridGraph(free)
    assert graph.graph.nnz == 0  # every diagonal cuts a blocked corner
    assert graph.astar((0, 0), (1, 1)) is None
    assert graph.chain(graph.dijkstra([(0, 0)])[1][0], (0, 0), (2, 2)) is None


def test_step_scales_the_distances():
    free = np.ones((5, 7), dtype=bool)
    dist = GridGraph(free, step=0.1).dijkstra([(0, 0)])[0][0]
    assert dist[GridGraph(free).node((4, 6))] == pytest.approx(0.1 * (2 + 4 * math.sqrt(2)))


def test_exact_line_of_sight_catches_a_clipped_corner():
    free = np.ones((4, 4), dtype=bool)
    free[1, 2] = False  # cell x in [2, 3), y in [1, 2)
    a, b = np.array([[0.5, 0.5]]), np.array([[3.5, 1.9]])  # passes just through that cell's corner
    rows, cols, _ = cells_crossed((0.0, 0.0), 1.0, a, b)
    assert (1, 2) in set(zip(rows.tolist(), cols.tolist()))
    assert not segments_clear(free, (0.0, 0.0), 1.0, a, b)[0]
    assert segments_clear(free, (0.0, 0.0), 1.0, a, b, samples=2)[0]  # the sampled rule misses it
    assert segments_clear(free, (0.0, 0.0), 1.0, a, np.array([[3.5, 0.5]]))[0]
    # a segment leaving the grid: blocked, or clipped onto the border
    out = np.array([[5.0, 0.5]])
    assert not segments_clear(free, (0.0, 0.0), 1.0, a, out)[0]
    assert segments_clear(free, (0.0, 0.0), 1.0, a, out, outside_blocked=False)[0]


def test_cells_crossed_are_connected_and_touch_no_extra_cell():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 10, (200, 2)), rng.uniform(0, 10, (200, 2))
    rows, cols, owner = cells_crossed((0.0, 0.0), 1.0, a, b)
    for k in range(200):
        r, c = rows[owner == k], cols[owner == k]
        assert (r[0], c[0]) == (int(a[k, 1]), int(a[k, 0])) and (r[-1], c[-1]) == (int(b[k, 1]), int(b[k, 0]))
        assert np.all(np.abs(np.diff(r)) + np.abs(np.diff(c)) == 1)  # one grid line crossed at a time


def test_smoothing_keeps_visible_points_only(grid):
    path = grid.path((0.8, 0.8), (9.0, 5.0))
    assert len(path) >= 2
    assert all(grid.line_free(p, q) for p, q in zip(path, path[1:]))
    straight = [(float(x), 1.0) for x in range(6)]
    assert smooth(straight, lambda p, later: np.ones(len(later), dtype=bool)) == [straight[0], straight[-1]]
    assert smooth(straight, lambda p, later: np.zeros(len(later), dtype=bool)) == straight
