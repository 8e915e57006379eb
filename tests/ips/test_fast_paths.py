"""The plain-Python fast paths of ``ips`` give the answers of the numpy / scipy / filterpy code they replace.

The walkability and path queries are bit-identical to their references; the
trilateration solver reaches scipy's minimum.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter
from scipy.optimize import least_squares

from storesense.config import example_store_path, load_store_config
from storesense.geometry.floor import FloorGrid
from storesense.geometry.cv_filter import LeanFilterpyCV
from storesense.ips.pathloss import Anchor
from storesense.ips.trilateration import Trilateration, _PathLossProblem
from storesense.geometry.walkable import Walkable

ANCHORS = {a.id: a for a in [
    Anchor("n1", 0.5, 0.5, 2.5, -59, 2.2), Anchor("n2", 4.5, 5.5, 2.5, -61, 2.0), Anchor("n3", 9.7, 0.5, 2.5, -58, 2.4),
    Anchor("n4", 9.7, 5.5, 2.5, -60, 2.1), Anchor("n5", 2.5, 3.0, 2.8, -59, 2.0), Anchor("n6", 7.7, 3.0, 2.8, -62, 2.3),
]}


@pytest.fixture(scope="module")
def store_grid():
    return FloorGrid(load_store_config(example_store_path()), 0.1, 0.2)


def test_trilateration_newton_fit_ends_in_scipys_minimum():
    """From the same start, the float Newton solver ends in a minimum, mostly the one scipy's least_squares finds."""
    rng = np.random.default_rng(0)
    tri = Trilateration(ANCHORS)
    ids = sorted(ANCHORS)
    (l0, l1), (h0, h1) = tri.bounds
    same = 0
    for _ in range(200):
        p = rng.uniform([0, 0], [10, 6])
        use = [i for i in ids if rng.random() > 0.2] or ids
        use = use if len(use) >= 3 else ids
        rssi = [float(ANCHORS[i].expected_rssi(ANCHORS[i].distance(p)) + rng.normal(0, 6)
                      + (rng.random() < 0.1) * rng.normal(0, 20)) for i in use]
        (x, y), _, _ = tri._solve(use, rssi)
        problem = _PathLossProblem([tri._node[i] for i in use], rssi, tri.sigma_db)
        ref = least_squares(lambda q: np.array(problem.residual(*q)), np.array(tri.start(use, rssi)),
                            loss="soft_l1", f_scale=tri.f_scale, bounds=([l0, l1], [h0, h1]), xtol=1e-12)
        ours = problem.cost(x, y, tri.f_scale)
        # a minimum: no point 1 cm around (inside the box) is lower
        for dx, dy in ((0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)):
            if l0 <= x + dx <= h0 and l1 <= y + dy <= h1:
                assert ours <= problem.cost(x + dx, y + dy, tri.f_scale) + 1e-9
        same += float(np.hypot(x - ref.x[0], y - ref.x[1])) < 5e-3
    assert same >= 195  # 199 of 200; the rest: both minima, reached by different steps from a far start


def reference_path(grid: FloorGrid, start, goal):
    """A* on the numpy grid with cell tuples, line-of-sight smoothing one segment at a time (the reference)."""
    s, g = grid.nearest_free(start), grid.nearest_free(goal)
    rows, cols = grid.shape
    steps = [(-1, 0, 1.0), (1, 0, 1.0), (0, -1, 1.0), (0, 1, 1.0),
             (-1, -1, math.sqrt(2)), (-1, 1, math.sqrt(2)), (1, -1, math.sqrt(2)), (1, 1, math.sqrt(2))]
    best, came, heap = {s: 0.0}, {}, [(0.0, 0.0, s)]
    while heap:
        _, cost, cur = heapq.heappop(heap)
        if cur == g:
            break
        if cost > best.get(cur, math.inf):
            continue
        for dr, dc, w in steps:
            nr, nc = cur[0] + dr, cur[1] + dc
            if not (0 <= nr < rows and 0 <= nc < cols) or not grid.free[nr, nc]:
                continue
            if dr and dc and not (grid.free[cur[0] + dr, cur[1]] and grid.free[cur[0], cur[1] + dc]):
                continue
            new = cost + w
            if new < best.get((nr, nc), math.inf):
                best[(nr, nc)] = new
                came[(nr, nc)] = cur
                heapq.heappush(heap, (new + math.hypot(nr - g[0], nc - g[1]), new, (nr, nc)))
    if g not in best:
        raise ValueError("no path")
    cells = [g]
    while cells[-1] != s:
        cells.append(came[cells[-1]])
    points = [grid.point(c) for c in reversed(cells)]

    def line_free(a, b):
        n = max(2, int(math.hypot(b[0] - a[0], b[1] - a[1]) / (grid.resolution / 2)) + 1)
        return all(grid.free[grid.cell((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))]
                   for t in np.linspace(0.0, 1.0, n))

    if len(points) <= 2:
        return points, line_free
    out, i = [points[0]], 0
    while i < len(points) - 1:
        j = len(points) - 1
        while j > i + 1 and not line_free(points[i], points[j]):
            j -= 1
        out.append(points[j])
        i = j
    return out, line_free


def test_paths_first_turns_and_line_tests_match_the_reference(store_grid):
    rng = np.random.default_rng(1)
    o, (rows, cols) = store_grid.origin, store_grid.shape
    turns = 0
    for _ in range(25):
        a, b = (tuple(o + rng.uniform(0, 1, 2) * (cols * 0.1, rows * 0.1)) for _ in range(2))
        ref, line_free = reference_path(store_grid, a, b)
        assert store_grid.path(a, b) == ref
        turn = store_grid.first_turn(a, b)
        assert turn == (ref[1] if len(ref) > 2 else None)
        turns += turn is not None
        for _ in range(4):
            c = (a[0] + rng.uniform(-4, 4), a[1] + rng.uniform(-4, 4))
            assert store_grid.line_free(a, c) == line_free(a, c)
    assert turns >= 5  # the store's shelves make most paths turn


def test_single_segment_queries_match_the_vectorised_ones(store_grid):
    w = Walkable(store_grid)
    rng = np.random.default_rng(2)
    for _ in range(300):
        a = rng.uniform(w.origin - 1, w.origin + np.array([w.cols, w.rows]) * w.resolution + 1)
        b = a + rng.normal(0, 2.0, 2)
        assert w.free_at_point(*a) == w.free_at(a[None])[0]
        assert w.segment_free(a, b) == w.segments_free(a[None], b[None])[0]


def test_snapping_one_point_matches_the_vectorised_cells(store_grid):
    """Walkable.snap and cell_at_point on plain floats: the cells and centres numpy's cells() gives."""
    w = Walkable(store_grid)
    rng = np.random.default_rng(4)
    for _ in range(2000):
        p = rng.uniform(w.origin - 1, w.origin + np.array([w.cols, w.rows]) * w.resolution + 1)
        r, c, _ = w.cells(p)
        assert w.cell_at_point(float(p[0]), float(p[1])) == (int(r), int(c))
        if w.free_at(p[None])[0]:
            expected = p
        else:
            nr, nc = w._nearest[0][r, c], w._nearest[1][r, c]
            expected = np.array([w.origin[0] + (nc + 0.5) * w.resolution, w.origin[1] + (nr + 0.5) * w.resolution])
        assert w.snap(p).tolist() == expected.tolist()
    assert w.cell_at_point(-1e300, 1e300) == tuple(int(v) for v in w.cells(np.array([-1e300, 1e300]))[:2])


def test_lean_kalman_is_bit_identical_to_filterpy():
    rng = np.random.default_rng(3)
    ref = KalmanFilter(dim_x=4, dim_z=2)
    ref.H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    lean = LeanFilterpyCV(1.0, 2.0, np.array([[0.5, 0.1], [0.1, 0.7]]), 0.5, accel_std=0.5)
    ref.x = np.array([1.0, 2.0, 0.0, 0.0])
    ref.P = np.array([[0.5, 0.1, 0, 0], [0.1, 0.7, 0, 0], [0, 0, 0.5, 0], [0, 0, 0, 0.5]])
    assert np.array_equal(ref.x, lean.x) and np.array_equal(ref.P, lean.P)
    for _ in range(100):
        dt = float(rng.uniform(0.1, 1.0))
        F = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
        Q = Q_discrete_white_noise(dim=2, dt=dt, var=0.25, block_size=2, order_by_dim=False)
        ref.predict(F=F, Q=Q)
        lean.predict(dt)
        assert np.array_equal(ref.x, lean.x) and np.array_equal(ref.P, lean.P)
        A = rng.normal(size=(2, 2))
        R = A @ A.T + np.eye(2) * 0.1
        z = ref.x[:2] + rng.normal(size=2)
        ref.update(z.copy(), R=R)
        lean.update(z.copy(), R)
        assert np.array_equal(ref.x, lean.x) and np.array_equal(ref.P, lean.P)
