"""A grid graph prepared at start-up (every node's neighbours at once) searches exactly as one built node by node."""

from __future__ import annotations

import numpy as np

from storesense.config import example_store_path, load_store_config
from storesense.geometry.floor import FloorGrid
from storesense.geometry.paths import GridGraph


def test_prepared_graph_finds_the_same_paths():
    grid = FloorGrid(load_store_config(example_store_path()), 0.1, 0.2)
    lazy, ready = GridGraph(grid.free), GridGraph(grid.free).prepare()
    assert all(moves is not None for moves in ready._adjacency)
    rng = np.random.default_rng(1)
    free = lazy.cells
    for _ in range(30):
        s, g = (tuple(int(v) for v in free[rng.integers(len(free))]) for _ in range(2))
        assert ready.astar(s, g) == lazy.astar(s, g)
    built = [i for i, moves in enumerate(lazy._adjacency) if moves is not None]
    assert built and all(lazy._adjacency[i] == ready._adjacency[i] for i in built)
    assert GridGraph(np.zeros((3, 3), dtype=bool)).prepare()._adjacency == []  # no free cell: nothing to build
