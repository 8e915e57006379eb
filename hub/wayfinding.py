"""Wayfinding: a shopping list and a start point to a visiting order and a walkable route.

Products are found on the shelves of the planogram (by SKU, by name, or by a
part of a name that fits exactly one product). Each shelf with listed items is
one stop, at the shelf's access point. Distances between the start and every
stop are walking distances on the store's :class:`~storesense.geometry.floor.FloorGrid`
(free floor with a clearance margin, 8-connected, no corner cutting), all
computed by one multi-source Dijkstra over its
:class:`~storesense.geometry.paths.GridGraph`. The visiting order
is exact (Held-Karp dynamic programming) for up to :attr:`Wayfinder.exact_up_to`
stops and nearest-neighbour followed by 2-opt beyond that. Each leg is the
grid's shortest path, smoothed by line of sight on the same grid, so every
returned segment stays on free floor (see below).

Smoothing checks each straight segment against every grid cell it crosses
(the exact rule of :func:`~storesense.geometry.sight.segments_clear`), not
against samples along it, so a smoothed segment cannot clip the corner of a
shelf's clearance margin.

Problems (an unknown or ambiguous product, a product on no shelf, a shelf or a
start that cannot be reached) are collected and raised together as one
:class:`WayfindingError`, each naming the list item it concerns.
"""

from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass, field

import numpy as np

from ..config import StoreConfig
from ..geometry.polygons import distance
from ..contracts import LightCommand, Stamper
from ..errors import StoresenseError
from ..geometry.floor import FloorGrid, path_length
from ..geometry.paths import GridGraph, smooth
from ..geometry.sight import segments_clear

Point2 = tuple[float, float]

#: a start or an access point may be this far from free floor and still be snapped onto it
MAX_SNAP_M = 1.0
#: colour the fixtures show for a route
GUIDE_COLOR = "#22c55e"


class WayfindingError(StoresenseError):
    """The route cannot be planned; ``problems`` lists each problem with the item it concerns."""

    def __init__(self, problems: list[dict]):
        self.problems = problems
        super().__init__("; ".join(p["problem"] for p in problems))


@dataclass(frozen=True)
class ListItem:
    """A shopping-list entry resolved to a product and the shelf it is taken from."""

    query: str
    sku: str
    name: str
    shelf: str
    plate: str


@dataclass
class Stop:
    """One shelf to visit, where to stand, and the items taken there."""

    shelf: str
    point: Point2
    items: list[ListItem] = field(default_factory=list)
    distance_from_previous_m: float = 0.0


@dataclass
class Route:
    """A planned route: stops in visiting order and the walkable path through them."""

    route_id: str
    start: Point2
    end: Point2 | None
    stops: list[Stop]
    legs: list[list[Point2]]
    length_m: float
    walking_time_s: float
    ordering: str  # "exact" or "nearest-neighbour+2-opt"

    @property
    def path(self) -> list[Point2]:
        """All legs joined into one polyline."""
        out: list[Point2] = []
        for leg in self.legs:
            for p in leg:
                if not out or out[-1] != p:
                    out.append(p)
        return out


class Wayfinder:
    """Plans shopping routes in one store."""

    def __init__(self, config: StoreConfig, grid: FloorGrid | None = None, *, walking_speed_mps: float | None = None,
                 exact_up_to: int = 9):
        self.config = config
        self.grid = grid or FloorGrid(config)
        self.walking_speed_mps = walking_speed_mps or config.hub.walking_speed_mps
        self.exact_up_to = exact_up_to
        self._graph = GridGraph(self.grid.free, step=self.grid.resolution)  # distances in metres
        self._shelves_of: dict[str, list[tuple[str, str]]] = {}
        for shelf in config.shelves:
            for plate in shelf.plates:
                self._shelves_of.setdefault(plate.sku, []).append((shelf.id, plate.id))

    # ------------------------------------------------------------------ products

    def resolve(self, queries: list[str]) -> tuple[list[tuple[str, str]], list[dict]]:
        """Map list entries to (query, sku); returns the found ones and the problems."""
        by_sku = {p.sku.lower(): p for p in self.config.products}
        by_name = {p.name.lower(): p for p in self.config.products}
        found, problems = [], []
        for q in queries:
            key = str(q).strip().lower()
            if not key:
                problems.append({"item": q, "problem": "an empty item in the shopping list"})
                continue
            product = by_sku.get(key) or by_name.get(key)
            if product is None:
                matches = [p for p in self.config.products if key in p.name.lower() or key in p.sku.lower()]
                if len(matches) == 1:
                    product = matches[0]
                elif matches:
                    names = ", ".join(f"{p.sku} ({p.name})" for p in matches)
                    problems.append({"item": q, "problem": f"{q!r} fits several products: {names}"})
                    continue
                else:
                    problems.append({"item": q, "problem": f"unknown product {q!r}: no SKU or name matches"})
                    continue
            if product.sku not in self._shelves_of:
                problems.append({"item": q, "sku": product.sku,
                                 "problem": f"{product.sku} ({product.name}) is not on any shelf of the planogram"})
                continue
            found.append((q, product.sku))
        return found, problems

    # ------------------------------------------------------------------ planning

    def plan(self, items: list[str], start: Point2, end: Point2 | None = None, *,
             route_id: str | None = None) -> Route:
        """Plan a route from ``start`` through every listed item (and on to ``end``, if given)."""
        if not items:
            raise WayfindingError([{"item": None, "problem": "the shopping list is empty"}])
        found, problems = self.resolve(items)
        start_cell = self._snap(start, "start", problems)
        end_cell = self._snap(end, "end", problems) if end is not None else None
        access: dict[str, tuple[int, int] | None] = {}
        for shelf in self.config.shelves:
            if any(shelf.id == s for _, sku in found for s, _ in self._shelves_of[sku]):
                access[shelf.id] = self._snap(shelf.access_point, f"access point of shelf {shelf.id}", None)
        if start_cell is None:
            raise WayfindingError(problems)
        dist, pred = self._dijkstra([start_cell])
        start_dist = dist[0]

        # each product from the reachable shelf nearest to the start
        stops: dict[str, Stop] = {}
        for query, sku in found:
            product = self.config.product(sku)
            options = []
            for shelf_id, plate_id in self._shelves_of[sku]:
                cell = access.get(shelf_id)
                d = start_dist[self._node(cell)] if cell is not None else math.inf
                options.append((d, shelf_id, plate_id, cell))
            d, shelf_id, plate_id, cell = min(options)
            if cell is None:
                problems.append({"item": query, "sku": sku, "shelf": shelf_id,
                                 "problem": f"shelf {shelf_id} ({product.name}) has its access point off the "
                                            f"walkable floor"})
                continue
            if not math.isfinite(d):
                problems.append({"item": query, "sku": sku, "shelf": shelf_id,
                                 "problem": f"shelf {shelf_id} ({product.name}) cannot be reached from the start: "
                                            f"no walkable path"})
                continue
            stop = stops.setdefault(shelf_id, Stop(shelf_id, self.grid.point(cell)))
            if all(i.sku != sku for i in stop.items):
                stop.items.append(ListItem(query, sku, product.name, shelf_id, plate_id))
        if end_cell is not None and not math.isfinite(start_dist[self._node(end_cell)]):
            problems.append({"item": None, "problem": "the end point cannot be reached from the start"})
        if problems:
            raise WayfindingError(problems)

        order_stops = list(stops.values())
        cells = [start_cell] + [self.grid.cell(s.point) for s in order_stops]
        if end_cell is not None:
            cells.append(end_cell)
        dist, pred = self._dijkstra(cells)
        nodes = [self._node(c) for c in cells]
        matrix = dist[:, nodes]
        n = len(order_stops)
        end_index = n + 1 if end_cell is not None else None
        if n <= self.exact_up_to:
            order, ordering = exact_order(matrix, end_index), "exact"
        else:
            order, ordering = two_opt(matrix, nearest_neighbour_order(matrix, end_index), end_index), \
                "nearest-neighbour+2-opt"
        sequence = [0] + order + ([end_index] if end_index is not None else [])
        legs = []
        for a, b in zip(sequence, sequence[1:]):
            legs.append(self._leg(pred[a], nodes[a], nodes[b]))
        ordered = [order_stops[i - 1] for i in order]
        for stop, leg in zip(ordered, legs):
            stop.distance_from_previous_m = round(path_length(leg), 3)
        length = sum(path_length(leg) for leg in legs)
        return Route(
            route_id=route_id or f"rt-{uuid.uuid4().hex[:10]}", start=self.grid.point(start_cell),
            end=self.grid.point(end_cell) if end_cell is not None else None, stops=ordered, legs=legs,
            length_m=round(length, 3), walking_time_s=round(length / self.walking_speed_mps, 1), ordering=ordering,
        )

    # ------------------------------------------------------------------ light guidance

    def fixtures_along(self, path: list[Point2]) -> list[str]:
        """Light fixtures within the guidance radius of ``path``, in the order the path passes them."""
        radius = self.config.hub.light_radius_m
        passed = []
        for fixture in self.config.hub.lights:
            d, s = _closest_on_polyline(fixture.position, path)
            if d <= radius:
                passed.append((s, fixture.id))
        return [fid for _, fid in sorted(passed)]

    def light_commands(self, route: Route, shopper: str | None = None, ts: float = 0.0,
                       stamper: Stamper | None = None) -> list[LightCommand]:
        """One ``guide`` command per fixture along the route, in passing order."""
        stamper = stamper or Stamper("hub-lights")
        return [
            stamper.make(LightCommand, ts, fixture=fid, route=route.route_id, shopper=shopper, action="guide",  # type: ignore[misc]
                         step=i, color=GUIDE_COLOR, duration_s=self.config.hub.guidance_s)
            for i, fid in enumerate(self.fixtures_along(route.path))
        ]

    # ------------------------------------------------------------------ grid helpers

    def _snap(self, p: Point2 | None, what: str, problems: list[dict] | None) -> tuple[int, int] | None:
        if p is None:
            return None
        try:
            cell = self.grid.nearest_free(p)
        except ValueError:
            cell = None
        if cell is None or distance(self.grid.point(cell), p) > MAX_SNAP_M:
            if problems is not None:
                problems.append({"item": None, "problem": f"the {what} ({p[0]:.2f}, {p[1]:.2f}) is not on the "
                                                          f"walkable floor of the store"})
            return None
        return cell

    def _node(self, cell: tuple[int, int]) -> int:
        return self._graph.node(cell)

    def _dijkstra(self, cells: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        return self._graph.dijkstra(cells)

    def _leg(self, predecessors: np.ndarray, source: int, target: int) -> list[Point2]:
        cells = self._graph.chain(predecessors, self._graph.cell(source), self._graph.cell(target))
        if cells is None:
            raise WayfindingError([{"item": None, "problem": "internal: broken path reconstruction"}])
        return smooth([self.grid.point(c) for c in cells], self._lines_free)

    def _lines_free(self, a: Point2, ends: list[Point2]) -> np.ndarray:
        """Whether the straight segment from ``a`` to each of ``ends`` crosses only free cells (exact)."""
        g = self.grid
        return segments_clear(g.free, g.origin, g.resolution, a, np.asarray(ends, dtype=float), outside_blocked=False)


# --------------------------------------------------------------------------- ordering


def route_cost(matrix: np.ndarray, sequence: list[int]) -> float:
    """Length of visiting ``sequence`` (indices into ``matrix``) in order."""
    return float(sum(matrix[a, b] for a, b in zip(sequence, sequence[1:])))


def exact_order(matrix: np.ndarray, end: int | None = None) -> list[int]:
    """The shortest order of stops 1..n from start 0 (ending at ``end`` if given): Held-Karp."""
    n = matrix.shape[0] - 1 - (1 if end is not None else 0)
    if n == 0:
        return []
    stops = list(range(1, n + 1))
    full = (1 << n) - 1
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for j in range(n):
        best[(1 << j, j)] = (float(matrix[0, stops[j]]), -1)
    for mask in range(1, full + 1):
        for j in range(n):
            if not mask & (1 << j) or (mask, j) not in best:
                continue
            cost = best[(mask, j)][0]
            for k in range(n):
                if mask & (1 << k):
                    continue
                nxt = (mask | (1 << k), k)
                c = cost + float(matrix[stops[j], stops[k]])
                if nxt not in best or c < best[nxt][0]:
                    best[nxt] = (c, j)
    tail = (lambda j: float(matrix[stops[j], end])) if end is not None else (lambda j: 0.0)
    last = min(range(n), key=lambda j: best[(full, j)][0] + tail(j))
    order, mask = [], full
    while last != -1:
        order.append(stops[last])
        prev = best[(mask, last)][1]
        mask &= ~(1 << last)
        last = prev
    return order[::-1]


def nearest_neighbour_order(matrix: np.ndarray, end: int | None = None) -> list[int]:
    """Stops 1..n from start 0, always walking to the nearest unvisited one."""
    n = matrix.shape[0] - 1 - (1 if end is not None else 0)
    left = set(range(1, n + 1))
    order, here = [], 0
    while left:
        here = min(left, key=lambda k: (matrix[here, k], k))
        order.append(here)
        left.remove(here)
    return order


def two_opt(matrix: np.ndarray, order: list[int], end: int | None = None) -> list[int]:
    """Improve an open path 0 -> order (-> end) by reversing segments while that shortens it."""
    seq = [0] + list(order) + ([end] if end is not None else [])
    last_movable = len(seq) - (2 if end is not None else 1)
    improved = True
    while improved:
        improved = False
        for i in range(1, last_movable):
            for j in range(i + 1, last_movable + 1):
                a, b = seq[i - 1], seq[i]
                c = seq[j]
                d = seq[j + 1] if j + 1 < len(seq) else None
                before = matrix[a, b] + (matrix[c, d] if d is not None else 0.0)
                after = matrix[a, c] + (matrix[b, d] if d is not None else 0.0)
                if after < before - 1e-9:
                    seq[i:j + 1] = seq[i:j + 1][::-1]
                    improved = True
    return seq[1:len(seq) - (1 if end is not None else 0)]


def brute_force_order(matrix: np.ndarray, end: int | None = None) -> list[int]:
    """The shortest order by trying every permutation (for checking the others on small inputs)."""
    n = matrix.shape[0] - 1 - (1 if end is not None else 0)
    tail = [end] if end is not None else []
    return list(min(itertools.permutations(range(1, n + 1)),
                    key=lambda p: route_cost(matrix, [0, *p, *tail])))


# --------------------------------------------------------------------------- geometry


def _closest_on_polyline(p: Point2, path: list[Point2]) -> tuple[float, float]:
    """(distance from p to the polyline, arc length along it of the closest point)."""
    if len(path) == 1:
        return distance(p, path[0]), 0.0
    best, best_s, s = math.inf, 0.0, 0.0
    for a, b in zip(path, path[1:]):
        seg = distance(a, b)
        if seg > 0:
            t = max(0.0, min(1.0, ((p[0] - a[0]) * (b[0] - a[0]) + (p[1] - a[1]) * (b[1] - a[1])) / seg ** 2))
        else:
            t = 0.0
        q = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
        d = distance(p, q)
        if d < best:
            best, best_s = d, s + t * seg
        s += seg
    return best, best_s
