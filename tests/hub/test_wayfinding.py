"""Wayfinding on the example store: paths stay on free floor and visit every listed item."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import yaml

from storesense.config import example_store_path, load_store_config, parse_store_config
from storesense.hub.wayfinding import (
    Wayfinder,
    WayfindingError,
    brute_force_order,
    exact_order,
    nearest_neighbour_order,
    route_cost,
    two_opt,
)
from storesense.geometry.floor import path_length

CFG = load_store_config(example_store_path())


@pytest.fixture(scope="module")
def wayfinder():
    return Wayfinder(CFG)


def assert_on_free_floor(wf: Wayfinder, path, step=0.02):
    """Every point of every segment lies on a free grid cell and on walkable floor of the config."""
    grid = wf.grid
    for a, b in zip(path, path[1:]):
        t = np.linspace(0.0, 1.0, max(2, int(math.dist(a, b) / step) + 1))[:, None]
        pts = np.asarray(a) + t * (np.asarray(b) - np.asarray(a))
        cells = np.floor((pts - grid.origin) / grid.resolution).astype(int)
        on_free = grid.free[cells[:, 1], cells[:, 0]]
        assert on_free.all(), f"{pts[~on_free][0]} (on {a} -> {b}) is off the free floor"
        for p in pts[::3]:
            assert CFG.is_walkable(*p), f"{p} (on {a} -> {b}) is inside a shelf, obstacle or wall"


def assert_visits_every_item(wf: Wayfinder, route, items):
    path = route.path
    skus = {wf.resolve([q])[0][0][1] for q in items}
    assert {i.sku for s in route.stops for i in s.items} == skus
    for stop in route.stops:
        shelf = CFG.shelf(stop.shelf)
        assert any(math.dist(p, stop.point) < 1e-9 for p in path), f"the path misses the stop at {stop.shelf}"
        assert math.dist(stop.point, shelf.access_point) <= 0.5  # where a shopper reaches the shelf
        for item in stop.items:
            assert item.sku in {p.sku for p in shelf.plates}


def test_every_product_from_every_corner_of_the_shop(wayfinder):
    everything = [p.sku for p in CFG.products]
    for start in [(1.0, 0.8), (11.0, 7.5), (6.0, 1.6), (4.5, 4.0), (10.5, 1.0)]:
        route = wayfinder.plan(everything, start)
        assert route.ordering == "exact" and len(route.stops) == len(CFG.shelves)
        assert_on_free_floor(wayfinder, route.path)
        assert_visits_every_item(wayfinder, route, everything)
        assert route.length_m == pytest.approx(path_length(route.path), abs=1e-3)
        assert route.walking_time_s == pytest.approx(route.length_m / CFG.hub.walking_speed_mps, abs=0.1)
        assert sum(s.distance_from_previous_m for s in route.stops) == pytest.approx(route.length_m, abs=1e-2)


def test_random_lists_by_sku_and_name_with_an_end_point(wayfinder):
    rng = np.random.default_rng(7)
    names = [p.name for p in CFG.products] + [p.sku for p in CFG.products] + ["milk", "chips", "tea"]
    free = np.argwhere(wayfinder.grid.free)
    for _ in range(25):
        items = list(rng.choice(names, size=int(rng.integers(1, 7)), replace=False))
        start = wayfinder.grid.point(tuple(free[rng.integers(len(free))]))
        end = (10.6, 0.8) if rng.random() < 0.5 else None
        route = wayfinder.plan(items, start, end)
        assert_on_free_floor(wayfinder, route.path)
        assert_visits_every_item(wayfinder, route, items)
        assert route.path[0] == route.start
        if end is not None:
            assert math.dist(route.path[-1], end) < 0.2


def test_the_visiting_order_is_the_shortest(wayfinder):
    """Held-Karp's order is no longer than any other order of the same stops (the grid distances)."""
    items = ["BREAD-500", "WATER-1.5", "MILK-1L", "TEA-20"]
    route = wayfinder.plan(items, (1.0, 0.8))
    best = route.length_m
    legs: dict = {}

    def leg(a, b):
        if (a, b) not in legs:
            legs[(a, b)] = legs[(b, a)] = path_length(wayfinder.grid.path(a, b))
        return legs[(a, b)]

    for perm in itertools.permutations(route.stops):
        points = [(1.0, 0.8)] + [s.point for s in perm]
        walked = sum(leg(a, b) for a, b in zip(points, points[1:]))
        assert best <= walked + 0.5  # smoothing differs a little between the two path finders


def test_heuristic_ordering_for_long_lists_still_visits_everything():
    forced = Wayfinder(CFG, exact_up_to=1)
    route = forced.plan([p.sku for p in CFG.products], (1.0, 0.8))
    assert route.ordering == "nearest-neighbour+2-opt"
    assert_on_free_floor(forced, route.path)
    assert_visits_every_item(forced, route, [p.sku for p in CFG.products])


@pytest.mark.parametrize("with_end", [False, True])
def test_exact_order_matches_brute_force_and_two_opt_improves_nearest_neighbour(with_end):
    rng = np.random.default_rng(3)
    for n in range(1, 7):
        pts = rng.uniform(0, 10, size=(n + 1 + with_end, 2))
        matrix = np.linalg.norm(pts[:, None] - pts[None], axis=2)
        end = n + 1 if with_end else None
        tail = [end] if with_end else []
        exact = exact_order(matrix, end)
        assert sorted(exact) == list(range(1, n + 1))
        assert route_cost(matrix, [0, *exact, *tail]) == pytest.approx(
            route_cost(matrix, [0, *brute_force_order(matrix, end), *tail]))
    pts = rng.uniform(0, 10, size=(16 + with_end, 2))
    matrix = np.linalg.norm(pts[:, None] - pts[None], axis=2)
    end = 16 if with_end else None
    tail = [end] if with_end else []
    nn = nearest_neighbour_order(matrix, end)
    improved = two_opt(matrix, nn, end)
    assert sorted(improved) == sorted(nn) == list(range(1, 16 if with_end else 16))
    assert route_cost(matrix, [0, *improved, *tail]) <= route_cost(matrix, [0, *nn, *tail]) + 1e-9


def test_unknown_ambiguous_and_off_floor_requests_are_clear_errors(wayfinder):
    with pytest.raises(WayfindingError) as err:
        wayfinder.plan(["milk", "caviar", "1 l", ""], (1.0, 0.8))
    problems = {p["item"]: p["problem"] for p in err.value.problems}
    assert problems["caviar"] == "unknown product 'caviar': no SKU or name matches"
    assert "fits several products" in problems["1 l"] and "MILK-1L" in problems["1 l"]
    assert "empty item" in problems[""]
    assert "milk" not in problems
    with pytest.raises(WayfindingError, match="start .* is not on the walkable floor"):
        wayfinder.plan(["milk"], (40.0, 40.0))
    with pytest.raises(WayfindingError, match="shopping list is empty"):
        wayfinder.plan([], (1.0, 0.8))


def _modified_store(change) -> object:
    data = yaml.safe_load(example_store_path().read_text())
    data = copy.deepcopy(data)
    change(data)
    return parse_store_config(data, origin="test store")


def test_an_unreachable_shelf_and_an_unstocked_product_are_clear_errors():
    def wall_in_the_bread(data):
        # walls around the back wall's shelf D: its access point can no longer be reached from the front
        data["floor"]["obstacles"] += [
            {"id": "wall-w", "polygon": [[3.0, 6.2], [3.3, 6.2], [3.3, 8.0], [3.0, 8.0]]},
            {"id": "wall-e", "polygon": [[8.7, 6.2], [9.0, 6.2], [9.0, 8.0], [8.7, 8.0]]},
            {"id": "wall-s", "polygon": [[3.0, 6.2], [9.0, 6.2], [9.0, 6.35], [3.0, 6.35]]},
        ]
        data["products"].append({"sku": "SALT-1KG", "name": "Sea salt 1 kg", "price": 0.99, "unit_weight_g": 1000})

    wf = Wayfinder(_modified_store(wall_in_the_bread))
    with pytest.raises(WayfindingError) as err:
        wf.plan(["milk", "rye bread", "salt"], (1.0, 0.8))
    problems = {p["item"]: p for p in err.value.problems}
    assert set(problems) == {"rye bread", "salt"}
    assert problems["rye bread"]["shelf"] == "D"
    assert "shelf D (Rye bread 500 g) cannot be reached from the start" in problems["rye bread"]["problem"]
    assert "SALT-1KG (Sea salt 1 kg) is not on any shelf" in problems["salt"]["problem"]
    route = wf.plan(["milk"], (1.0, 0.8))  # the rest of the shop still works
    assert [s.shelf for s in route.stops] == ["A"]


def test_light_fixtures_along_the_route_in_passing_order(wayfinder):
    route = wayfinder.plan(["COFFEE-500", "BREAD-500"], (1.5, 1.0))
    commands = wayfinder.light_commands(route, shopper="s-1", ts=5.0)
    fixtures = {f.id: f.position for f in CFG.hub.lights}
    assert [c.step for c in commands] == list(range(len(commands))) and commands
    assert {c.route for c in commands} == {route.route_id} and len({c.event_id for c in commands}) == len(commands)
    positions = []
    for c in commands:
        d = min(_segment_distance(fixtures[c.fixture], a, b) for a, b in zip(route.path, route.path[1:]))
        assert d <= CFG.hub.light_radius_m
        positions.append(c.fixture)
    far = [fid for fid in fixtures if fid not in positions]
    for fid in far:
        assert min(_segment_distance(fixtures[fid], a, b)
                   for a, b in zip(route.path, route.path[1:])) > CFG.hub.light_radius_m


def _segment_distance(p, a, b):
    ab = np.subtract(b, a)
    t = 0.0 if not ab.any() else float(np.clip(np.dot(np.subtract(p, a), ab) / np.dot(ab, ab), 0, 1))
    return math.dist(p, (a[0] + t * ab[0], a[1] + t * ab[1]))
