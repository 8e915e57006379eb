"""Shopper behaviour for the store simulator, and the truth it records.

:class:`ShopperPlanner` plans one shopper at a time on the store's walkable
grid (A* paths from :class:`~storesense.geometry.floor.FloorGrid`): the shopper
walks in through the door into the entry zone, stands there to check in
(app or scanned code), visits shelves (sometimes with a browsing detour
first), stands at a spot along the shelf's front, reaches into it (touches,
picks of 1-3 items, put-backs to the same plate, put-backs of a carried item
to the wrong plate), and leaves through the exit zone. Shoppers planned later
can coordinate with those planned before them: reaching into the same shelf
at the same time, or walking up to one and taking an item from their hand.

Everything a shopper does is recorded as truth on :class:`SimShopper`
(keyframes, headings, reaches, actions, handovers, check-in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...config import StoreConfig
from ...errors import StoresenseError
from ...geometry.floor import FloorGrid
from ...geometry.paths import smooth
from ...geometry.sight import segments_clear
from .geometry import points_in_polygon
from .synthetic import ShelfAction, TruthShopper

#: wrist goes this far behind the shelf front when reaching (metres)
REACH_DEPTH_M = 0.12
#: the point used for the camera's line of sight to the hand: this far in front of the shelf face
FACE_CLEARANCE_M = 0.05


@dataclass
class Reach:
    """One hand visit into a shelf (ground truth)."""

    shopper: str
    shelf: str
    plate: str
    t_in: float  # the wrist crosses into the shelf face
    t_out: float  # the wrist leaves it
    hand: str  # "left" / "right"
    target: tuple[float, float, float]  # wrist position inside the shelf, floor metres
    face_point: tuple[float, float, float]  # the same point just in front of the face
    kind: str  # "pick", "putback", "wrong_putback" or "touch"
    sku: str | None  # product moved (None for a touch)
    quantity: int  # +n taken off the plate, -n put onto it, 0 for a touch
    together_with: str | None = None  # another shopper reaching into the same shelf at the same time

    def to_json(self) -> dict:
        """Plain JSON-ready dict."""
        return {
            "shopper": self.shopper, "shelf": self.shelf, "plate": self.plate, "t_in": round(self.t_in, 3),
            "t_out": round(self.t_out, 3), "hand": self.hand, "target": [round(v, 3) for v in self.target],
            "face_point": [round(v, 3) for v in self.face_point],
            "kind": self.kind, "sku": self.sku, "quantity": self.quantity, "together_with": self.together_with,
        }


@dataclass
class Handover:
    """One shopper handing an item to another.

    ``paid_by``: who must pay for it. The random levels keep the old policy
    (``giver``: the item stays charged to the one who took it off the shelf);
    the named scenarios use ``receiver``: the item leaves the store with the
    receiver, who pays.
    """

    ts: float
    giver: str
    receiver: str
    sku: str
    quantity: int
    position: tuple[float, float]
    paid_by: str = "giver"

    def to_json(self) -> dict:
        """Plain JSON-ready dict."""
        return {"ts": round(self.ts, 3), "giver": self.giver, "receiver": self.receiver, "sku": self.sku,
                "quantity": self.quantity, "position": [round(v, 3) for v in self.position],
                "paid_by": self.paid_by}


@dataclass
class Stand:
    """A stretch of time a shopper stands still."""

    t0: float
    t1: float
    x: float
    y: float
    where: str  # "entry", "shelf:<id>", "browse", "handover", "exit"


@dataclass
class SimShopper(TruthShopper):
    """A simulated shopper's full truth.

    Charging policy: a shopper is charged for what they took off a shelf and
    did not put back (:meth:`charged`); an item handed to another shopper stays
    charged to the one who took it unless the handover says the receiver pays
    (:attr:`Handover.paid_by`, the named scenarios). A group (``group``: the
    id of the member who checked in for it) pays for all its members together.
    """

    height_m: float = 1.72
    phone: str = "hand"  # where the phone is carried: "hand", "pocket" or "none" (no app, no tag: no BLE)
    has_app: bool = True  # False: no app (checks in with a scanned code, phone "none"); True with phone "none": BLE off
    checkin_ts: float = 0.0
    checkin_method: str = "app"  # "app", "code", or "none" (a group member: the group checked in once)
    group: str | None = None  # id of the shopper who checked the group in (for every member, that one too)
    group_size: int = 1  # on the one who checked in: how many the check-in said
    checkin_gate: str | None = None  # the entry gate it happened at (stores with gates)
    headings: list[float] = field(default_factory=list)  # body heading (rad) on the interval ending at keyframe k
    reaches: list[Reach] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    stands: list[Stand] = field(default_factory=list)
    appearance: np.ndarray | None = field(default=None, repr=False)  # base colour histograms (2, 12), if drawn

    def charged(self) -> dict[str, int]:
        """SKU -> quantity this shopper must pay for (see the class docstring for the policy)."""
        out = self.cart()
        for h in self.handovers:
            if h.paid_by != "receiver":
                continue
            sign = -1 if h.giver == self.id else 1 if h.receiver == self.id else 0
            out[h.sku] = out.get(h.sku, 0) + sign * h.quantity
        return {k: v for k, v in out.items() if v > 0}

    def positions(self, times: np.ndarray) -> np.ndarray:
        """Positions (T, 2) at ``times``, NaN outside [enter_ts, exit_ts]."""
        times = np.asarray(times, float)
        kf = np.asarray(self.keyframes, float)
        out = np.stack([np.interp(times, kf[:, 0], kf[:, 1]), np.interp(times, kf[:, 0], kf[:, 2])], axis=-1)
        out[(times < self.enter_ts) | (times > self.exit_ts)] = np.nan
        return out

    def heading_at(self, times: np.ndarray) -> np.ndarray:
        """Body heading in radians (T,) at ``times`` (direction of walking, or facing while standing)."""
        kt = np.asarray([k[0] for k in self.keyframes])
        idx = np.clip(np.searchsorted(kt, np.asarray(times, float), side="left"), 0, len(kt) - 1)
        return np.asarray(self.headings)[idx]

    def moving_at(self, times: np.ndarray) -> np.ndarray:
        """Whether the shopper is walking (T,) bool at ``times``."""
        kf = np.asarray(self.keyframes, float)
        step = np.hypot(np.diff(kf[:, 1]), np.diff(kf[:, 2]))
        moving = np.r_[False, step > 1e-6]
        idx = np.clip(np.searchsorted(kf[:, 0], np.asarray(times, float), side="left"), 0, len(kf) - 1)
        return moving[idx]

    def to_json(self) -> dict:
        """Plain JSON-ready dict of the whole truth."""
        return {
            "id": self.id, "tag": self.tag, "height_m": round(self.height_m, 3), "phone": self.phone,
            "has_app": self.has_app,
            "enter_ts": round(self.enter_ts, 3), "exit_ts": round(self.exit_ts, 3),
            "checkin": {"ts": round(self.checkin_ts, 3), "method": self.checkin_method, "gate": self.checkin_gate},
            "group": self.group, "group_size": self.group_size,
            "charged": self.charged(),
            "actions": [{"ts": round(a.ts, 3), "shelf": a.shelf, "plate": a.plate, "sku": a.sku,
                         "quantity": a.quantity} for a in self.actions],
            "reaches": [r.to_json() for r in self.reaches],
            "handovers": [h.to_json() for h in self.handovers],
            "keyframes": [[round(t, 3), round(x, 3), round(y, 3)] for t, x, y in self.keyframes],
            "headings": [round(h, 4) for h in self.headings],
        }


@dataclass(frozen=True)
class ShelfFront:
    """The side of a shelf shoppers reach into (the footprint edge nearest the access point)."""

    shelf: str
    a: np.ndarray  # edge start (2,)
    b: np.ndarray  # edge end (2,)
    normal: np.ndarray  # unit normal pointing out of the shelf, towards the shopper
    access: np.ndarray  # access point (2,)

    @property
    def length(self) -> float:
        """Edge length in metres."""
        return float(np.linalg.norm(self.b - self.a))

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from a to b."""
        return (self.b - self.a) / self.length


def shelf_fronts(config: StoreConfig) -> dict[str, ShelfFront]:
    """Each shelf's front edge (the one whose midpoint is nearest the access point)."""
    out = {}
    for s in config.shelves:
        a, b = s.front_edge()
        out[s.id] = ShelfFront(s.id, a, b, s.front_normal(), np.asarray(s.access_point, float))
    return out


class PathFinder:
    """Shortest walkable paths on a :class:`FloorGrid`'s free cells, fast enough for crowds.

    The grid's :class:`~storesense.geometry.paths.GridGraph`, solved with
    Dijkstra from each goal once (predecessor trees are cached per goal cell),
    then smoothed by line of sight (:func:`~storesense.geometry.paths.smooth`),
    all later points of a path tested in one vectorised call.
    """

    def __init__(self, grid: FloorGrid):
        self.grid = grid
        self._pred: dict[tuple[int, int], np.ndarray] = {}

    def path(self, start: tuple[float, float], goal: tuple[float, float]) -> list[tuple[float, float]]:
        """Smoothed shortest path from ``start`` to ``goal`` (both snapped to free cells)."""
        g, s = self.grid.nearest_free(goal), self.grid.nearest_free(start)
        if g not in self._pred:
            self._pred[g] = self.grid.graph.dijkstra([g])[1][0]
        cells = self.grid.graph.chain(self._pred[g], g, s)  # the tree is rooted at the goal
        if cells is None:
            raise StoresenseError(f"no walkable path from {start} to {goal}")
        return smooth([self.grid.point(c) for c in reversed(cells)], self._lines_free, chunk=None)

    def _lines_free(self, a, bs) -> np.ndarray:
        """Whether each straight segment a-b (b in ``bs``) stays on free cells.

        Sampled rule: every segment gets as many points as the longest needs at
        half a cell apart (see :func:`~storesense.geometry.sight.segments_clear`).
        """
        g = self.grid
        a, bs = np.asarray(a, dtype=float), np.asarray(bs, dtype=float)
        n = max(2, int(float(np.max(np.linalg.norm(bs - a, axis=1))) / (g.resolution / 2)) + 1)
        return segments_clear(g.free, g.origin, g.resolution, a, bs, samples=n, outside_blocked=False)


class _Walker:
    """Builds one shopper's keyframes (t, x, y), headings and stands along walkable paths."""

    def __init__(self, planner: ShopperPlanner, start: tuple[float, float], t0: float, speed: float,
                 rng: np.random.Generator, heading: float):
        self.planner, self.speed, self.rng = planner, speed, rng
        self.pos, self.t = start, t0
        self.keyframes = [(t0, *start)]
        self.headings = [heading]
        self.stands: list[Stand] = []

    def travel_time(self, goal: tuple[float, float]) -> float:
        """Seconds to walk to ``goal`` at the nominal speed."""
        pts = self.planner.path(self.pos, goal)
        return sum(math.dist(a, b) for a, b in zip(pts, pts[1:])) / self.speed

    def walk_to(self, goal: tuple[float, float]) -> None:
        """Walk the shortest free path to ``goal`` (a free cell centre), speed varying per leg."""
        for p in self.planner.path(self.pos, goal)[1:]:
            d = math.dist(self.pos, p)
            if d < 1e-9:
                continue
            self.t += d / (self.speed * float(self.rng.uniform(0.85, 1.15)))
            self.headings.append(math.atan2(p[1] - self.pos[1], p[0] - self.pos[0]))
            self.pos = p
            self.keyframes.append((self.t, *p))

    def wait(self, seconds: float, where: str, facing: float | None = None) -> None:
        """Stand still for ``seconds`` facing ``facing`` (radians; default: keep the heading)."""
        seconds = max(seconds, 0.05)
        self.stands.append(Stand(self.t, self.t + seconds, self.pos[0], self.pos[1], where))
        self.t += seconds
        self.headings.append(self.headings[-1] if facing is None else facing)
        self.keyframes.append((self.t, *self.pos))


class ShopperPlanner:
    """Plans shoppers one after another; later ones may coordinate with earlier ones."""

    def __init__(self, config: StoreConfig, grid: FloorGrid, level, rng: np.random.Generator):
        self.config, self.grid, self.level, self.rng = config, grid, level, rng
        if not config.zones_of("entry") or not config.zones_of("exit"):
            raise StoresenseError("store config: the simulator needs an entry zone and an exit zone")
        if not config.shelves:
            raise StoresenseError("store config: the simulator needs at least one shelf")
        self.entry_zone = config.zones_of("entry")[0]
        self.exit_zone = config.zones_of("exit")[0]
        free = np.argwhere(grid.free)
        centres = np.stack([grid.origin[0] + (free[:, 1] + 0.5) * grid.resolution,
                            grid.origin[1] + (free[:, 0] + 0.5) * grid.resolution], axis=1)
        self.free_points = centres
        self.entry_points = centres[points_in_polygon(centres, np.asarray(self.entry_zone.polygon, float))]
        self.exit_points = centres[points_in_polygon(centres, np.asarray(self.exit_zone.polygon, float))]
        for zone, pts in ((self.entry_zone, self.entry_points), (self.exit_zone, self.exit_points)):
            if len(pts) == 0:
                raise StoresenseError(f"store config: zone {zone.id!r} has no walkable floor to stand on")
        zones = np.asarray(self.entry_zone.polygon, float), np.asarray(self.exit_zone.polygon, float)
        self.browse_points = centres[~(points_in_polygon(centres, zones[0]) | points_in_polygon(centres, zones[1]))]
        self.fronts = shelf_fronts(config)
        self._gate_free: dict[str, float] = {}  # gate id -> when the last shopper has stepped through
        self.weighed = {(w.shelf, w.plate) for w in config.weight_sensors}
        self.stock = {(s.id, p.id): p.stock for s in config.shelves for p in s.plates}
        self.finder = PathFinder(grid)
        self._earlier: list[SimShopper] = []
        #: draws who has no app (``level.no_app_share``) or BLE off (``level.ble_off_share``); None: nobody.
        #: A stream of its own, so every other draw of the plan is the same whatever those shares are.
        self.people_rng: np.random.Generator | None = None

    # -- geometry helpers

    def snap(self, p) -> tuple[float, float]:
        """The centre of the free cell nearest to ``p``."""
        return self.grid.point(self.grid.nearest_free((float(p[0]), float(p[1]))))

    def path(self, a: tuple[float, float], b: tuple[float, float]) -> list[tuple[float, float]]:
        """Smoothed shortest free path from ``a`` to ``b`` (free cell centres); starts exactly at ``a``."""
        pts = self.finder.path(a, b)
        pts[0] = a
        return pts

    def stand_spot(self, shelf: str, avoid: tuple[float, float] | None = None) -> tuple[float, float]:
        """A free spot in front of ``shelf``, at least 0.8 m along the front from ``avoid``."""
        f = self.fronts[shelf]
        # along the front, 0.45 m in from its ends; a short front (a 1.2 m gondola) leaves room to stand
        # beside it, so two shoppers can keep apart (people do not stand 20 cm from each other)
        half = max(0.45, f.length / 2 - 0.45)
        mid = (f.a + f.b) / 2
        m = float(np.dot(f.access - mid, f.direction))
        best = None
        for _ in range(8):
            u = float(self.rng.uniform(-half, half)) - m
            spot = self.snap(f.access + u * f.direction)
            sep = math.inf if avoid is None else abs(float(np.dot(np.subtract(spot, avoid), f.direction)))
            if best is None or sep > best[0]:
                best = (sep, spot)
            if sep >= 0.8:
                break
        return best[1]

    def _free_stand_spot(self, w: _Walker, shelf: str) -> tuple[float, float]:
        """A spot at ``shelf`` at least 0.7 m from where earlier shoppers stand around the arrival time.

        When the front is that crowded, the spot farthest from everybody there.
        """
        best = None
        for _ in range(10):
            spot = self.stand_spot(shelf)
            arrive = w.t + w.travel_time(spot)
            taken = [(st.x, st.y) for other in self._earlier for st in other.stands
                     if st.where == f"shelf:{shelf}" and st.t0 < arrive + 15.0 and st.t1 > arrive - 2.0]
            gap = min((math.dist(spot, p) for p in taken), default=math.inf)
            if best is None or gap > best[0]:
                best = (gap, spot)
            if gap >= 0.7:
                break
        return best[1]

    def reach_points(self, shelf: str, spot, z: float, along: float | None = None) -> tuple[tuple, tuple, float]:
        """Wrist target inside the shelf, the face point in front of it, and the facing angle.

        ``along``: where along the front the hand goes (metres from the front's first corner); default
        straight in front of ``spot``.
        """
        f = self.fronts[shelf]
        u = float(np.dot(np.subtract(spot, f.a), f.direction)) if along is None else along
        u = float(np.clip(u, min(0.1, f.length / 2), max(f.length - 0.1, f.length / 2)))
        on_edge = f.a + u * f.direction
        target = on_edge - REACH_DEPTH_M * f.normal
        face = on_edge + FACE_CLEARANCE_M * f.normal
        facing = math.atan2(-f.normal[1], -f.normal[0])
        return (float(target[0]), float(target[1]), z), (float(face[0]), float(face[1]), z), facing

    # -- planning

    def plan(self, index: int, t_arrive: float, earlier: list[SimShopper]) -> SimShopper:
        """Plan shopper number ``index`` (0-based) arriving at ``t_arrive``."""
        rng, lv = self.rng, self.level
        self._earlier = earlier
        shopper, w = self.start(index, t_arrive)

        holding: list[tuple[str, str]] = []  # (sku, plate) carried and still charged
        visits = self._choose_visits(w.pos)
        join_at = int(rng.integers(len(visits))) if rng.random() < lv.simultaneous_share else -1
        handover_at = int(rng.integers(len(visits) + 1)) if rng.random() < lv.handover_share else -1
        for k, (shelf_id, plates) in enumerate(visits):
            if k == handover_at:
                self._take_handover(shopper, w, earlier)
            if k == join_at and self._join_reach(shopper, w, earlier, holding):
                continue
            if rng.random() < lv.wander_share:
                w.walk_to(tuple(self.browse_points[int(rng.integers(len(self.browse_points)))]))
                w.wait(float(rng.uniform(1.0, 4.0)), "browse", float(rng.uniform(-math.pi, math.pi)))
            self._visit(shopper, w, shelf_id, plates, holding)
        if handover_at == len(visits):
            self._take_handover(shopper, w, earlier)
        return self.finish(shopper, w)

    def start(self, index: int, t_arrive: float, *, method: str | None = None, phone: str | None = None
              ) -> tuple[SimShopper, _Walker]:
        """Shopper number ``index`` walks in and checks in (``method`` and ``phone`` drawn unless given).

        With :attr:`people_rng` set and neither given, a share ``level.no_app_share`` of shoppers has
        no app: they check in with a scanned code and their phone sends nothing (``phone`` "none");
        of the others (the app's users), a share ``level.ble_off_share`` has BLE advertising off.
        """
        rng, lv = self.rng, self.level
        no_app = ble_off = False
        if self.people_rng is not None and method is None and phone is None:
            u = self.people_rng.random(2)
            no_app = bool(u[0] < getattr(lv, "no_app_share", 0.0))
            ble_off = not no_app and bool(u[1] < getattr(lv, "ble_off_share", 0.0))
        sid = f"shopper-{index + 1}"
        shopper = SimShopper(sid, f"tag-{index + 1:03d}", t_arrive, 0.0)
        shopper.height_m = float(np.clip(rng.normal(1.72, 0.08), 1.5, 1.95))
        shopper.phone = "pocket" if rng.random() < 0.4 else "hand"
        shopper.phone = phone or shopper.phone
        door = tuple(self.entry_points[int(rng.integers(len(self.entry_points)))])
        spot = tuple(self.entry_points[int(rng.integers(len(self.entry_points)))])
        w = _Walker(self, door, t_arrive, float(rng.uniform(0.75, 1.3)), rng, math.pi / 2)
        gate = None
        if self.entry_zone.gates:  # check in at the gate that frees first, queueing at the door until it does
            gate = min(self.entry_zone.gates, key=lambda g: (self._gate_free.get(g.id, -math.inf), g.id))
            spot = self.snap(gate.position)
            wait = self._gate_free.get(gate.id, -math.inf) - (w.t + w.travel_time(spot))
            if wait > 0:
                w.wait(wait, "entry")
        w.walk_to(spot)
        drawn = "code" if rng.random() < lv.code_checkin_share else "app"
        method = method or ("code" if no_app else drawn)
        if no_app or ble_off:
            shopper.phone = "none"
            shopper.has_app = not no_app
        stand = float(rng.uniform(2.5, 4.5) if method == "code" else rng.uniform(1.0, 2.5))
        shopper.checkin_ts = w.t + float(rng.uniform(0.3, stand - 0.3))
        shopper.checkin_method = method
        w.wait(stand, "entry")
        if gate is not None and method != "none":
            shopper.checkin_gate = gate.id
            self._gate_free[gate.id] = w.t + 0.8  # stepped through
        return shopper, w

    def finish(self, shopper: SimShopper, w: _Walker) -> SimShopper:
        """The shopper walks out through the exit zone; their truth is complete."""
        rng = self.rng
        w.walk_to(tuple(self.exit_points[int(rng.integers(len(self.exit_points)))]))
        w.wait(float(rng.uniform(0.5, 1.5)), "exit")
        shopper.exit_ts = w.t
        shopper.keyframes, shopper.headings, shopper.stands = w.keyframes, w.headings, w.stands
        shopper.actions.sort(key=lambda a: a.ts)
        shopper.reaches.sort(key=lambda r: r.t_in)
        return shopper

    def _choose_visits(self, start) -> list[tuple[str, list]]:
        """Shelves to visit in walking order (nearest next, sometimes not), each with its plates."""
        rng, lv = self.rng, self.level
        plates = [(s.id, p) for s in self.config.shelves for p in s.plates]
        n = int(rng.integers(lv.visits[0], lv.visits[1] + 1))
        chosen = rng.choice(len(plates), size=min(n, len(plates)), replace=False)
        by_shelf: dict[str, list] = {}
        for i in sorted(int(c) for c in chosen):
            by_shelf.setdefault(plates[i][0], []).append(plates[i][1])
        order, pos = [], np.asarray(start, float)
        left = list(by_shelf)
        while left:
            d = [np.linalg.norm(self.fronts[s].access - pos) for s in left]
            pick = left[int(np.argmin(d))] if rng.random() < 0.7 else left[int(rng.integers(len(left)))]
            order.append((pick, by_shelf[pick]))
            pos = self.fronts[pick].access
            left.remove(pick)
        return order

    def _reach(self, shopper: SimShopper, w: _Walker, shelf: str, plate, kind: str, sku: str | None, qty: int,
               t_in: float | None = None, together_with: str | None = None, dwell_s: float | None = None) -> Reach:
        """Stand at the current spot and reach into ``plate``; records truth and advances time.

        A plate with a configured position along the front is reached there (the hand goes to the
        plate, wherever the shopper stands); ``dwell_s`` fixes how long the hand stays in.
        """
        rng = self.rng
        along = None
        if plate.position_m is not None:
            along = self.config.shelf(shelf).plate_span(plate)[0]
        target, face, facing = self.reach_points(shelf, w.pos, plate.height, along)
        t_in = w.t + float(rng.uniform(0.2, 0.6)) if t_in is None else t_in
        t_out = t_in + (float(rng.uniform(0.8, 1.6)) + 0.3 * max(abs(qty) - 1, 0) if dwell_s is None else dwell_s)
        hand = "right" if rng.random() < 0.7 else "left"
        r = Reach(shopper.id, shelf, plate.id, t_in, t_out, hand, target, face, kind, sku, qty, together_with)
        shopper.reaches.append(r)
        if qty:
            shopper.actions.append(ShelfAction(t_out, shelf, plate.id, sku, qty))
            if kind != "wrong_putback":
                self.stock[(shelf, plate.id)] -= qty
        w.wait(t_out + float(rng.uniform(0.3, 0.7)) - w.t, f"shelf:{shelf}", facing)
        return r

    def _visit(self, shopper, w, shelf_id, plates, holding, t_first: float | None = None,
               together_with: str | None = None) -> list[Reach]:
        """Walk to a spot at the shelf and do this visit's reaches."""
        rng, lv = self.rng, self.level
        if t_first is None:
            w.walk_to(self._free_stand_spot(w, shelf_id))
            w.wait(float(rng.uniform(0.4, 1.5)), f"shelf:{shelf_id}")
        done = []
        for plate in plates:
            weighed = (shelf_id, plate.id) in self.weighed
            if rng.random() < lv.touch_share:
                done.append(self._reach(shopper, w, shelf_id, plate, "touch", None, 0, t_first, together_with))
                t_first, together_with = None, None
            qty = int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))
            qty = min(qty, self.stock[(shelf_id, plate.id)])
            if qty <= 0:
                continue
            for q in [qty] if weighed else [1] * qty:
                done.append(self._reach(shopper, w, shelf_id, plate, "pick", plate.sku, q, t_first, together_with))
                t_first, together_with = None, None
                holding.extend([(plate.sku, plate.id)] * q)
            share = lv.putback_share if weighed else lv.putback_share * lv.unweighed_putback_share
            if rng.random() < share:
                done.append(self._reach(shopper, w, shelf_id, plate, "putback", plate.sku, -1))
                holding.remove((plate.sku, plate.id))
        # an item carried from elsewhere put down here, on a plate holding another product
        shelf = self.config.shelf(shelf_id)
        foreign = [h for h in holding if all(h[0] != p.sku for p in shelf.plates)]
        if foreign and rng.random() < lv.wrong_place_share:
            ok = [p for p in shelf.plates
                  if (shelf_id, p.id) in self.weighed or rng.random() < lv.unweighed_putback_share]
            if ok:
                item = foreign[int(rng.integers(len(foreign)))]
                plate = ok[int(rng.integers(len(ok)))]
                done.append(self._reach(shopper, w, shelf_id, plate, "wrong_putback", item[0], -1))
                holding.remove(item)
        return done

    def _join_reach(self, shopper, w, earlier, holding) -> bool:
        """Go and reach into a shelf at the same time as an earlier shopper does; False if none fits."""
        rng = self.rng
        cands = [r for s in earlier for r in s.reaches
                 if r.together_with is None and w.t + 3.0 <= r.t_in <= w.t + 90.0]
        for r in sorted(cands, key=lambda r: r.t_in)[:12]:
            other = next(s for s in earlier if s.id == r.shopper)
            ox, oy = other.position(r.t_in)
            spot = self.stand_spot(r.shelf, avoid=(ox, oy))
            if w.travel_time(spot) * 1.2 + w.t + 0.5 > r.t_in - 0.4:
                continue
            w.walk_to(spot)
            t_in = max(w.t + 0.3, r.t_in + float(rng.uniform(-0.4, 0.4)))
            w.wait(t_in - 0.3 - w.t, f"shelf:{r.shelf}")
            plates = self.config.shelf(r.shelf).plates
            plate = plates[int(rng.integers(len(plates)))]
            if self._visit(shopper, w, r.shelf, [plate], holding, t_first=t_in, together_with=r.shopper):
                r.together_with = shopper.id
            return True
        return False

    def _take_handover(self, shopper, w, earlier) -> bool:
        """Walk up to an earlier shopper standing still and take an item from them; False if none fits."""
        rng = self.rng
        for giver in earlier:
            for st in giver.stands:
                if st.where in ("entry", "exit") or st.t1 - st.t0 < 2.5 or not (w.t + 2.0 <= st.t0 <= w.t + 60.0):
                    continue
                sku = self._handable(giver, st.t0 + 1.0)
                if sku is None:
                    continue
                ang = float(rng.uniform(-math.pi, math.pi))
                spot = self.snap((st.x + 0.7 * math.cos(ang), st.y + 0.7 * math.sin(ang)))
                if math.dist(spot, (st.x, st.y)) > 1.2:
                    continue
                if w.t + w.travel_time(spot) * 1.2 > st.t1 - 1.5:
                    continue
                w.walk_to(spot)
                ts = max(w.t + 0.5, st.t0 + 0.5)
                if ts > st.t1 - 0.3:
                    continue  # arrived too late after all; walk on
                w.wait(ts + 0.8 - w.t, "handover", math.atan2(st.y - spot[1], st.x - spot[0]))
                h = Handover(ts, giver.id, shopper.id, sku, 1, ((st.x + spot[0]) / 2, (st.y + spot[1]) / 2))
                giver.handovers.append(h)
                shopper.handovers.append(h)
                return True
        return False

    @staticmethod
    def _handable(giver: SimShopper, t: float) -> str | None:
        """A SKU the giver holds at ``t`` and keeps (charged) to the end, not yet handed away."""
        handed: dict[str, int] = {}
        for h in giver.handovers:
            if h.giver == giver.id:
                handed[h.sku] = handed.get(h.sku, 0) + h.quantity
        for sku in sorted({a.sku for a in giver.actions}):
            held, low = 0, math.inf
            for a in giver.actions:
                if a.sku != sku:
                    continue
                held += a.quantity
                if a.ts > t:
                    low = min(low, held)
            now = sum(a.quantity for a in giver.actions if a.sku == sku and a.ts <= t)
            if min(now, low) - handed.get(sku, 0) >= 1:
                return sku
        return None
