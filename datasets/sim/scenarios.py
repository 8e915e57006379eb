"""Named hard-case scenarios: the cases real stores get wrong, each scripted, seeded and with its truth.

:func:`simulate_scenario` plays one scenario of :data:`SCENARIOS` in any store
config (shelves, plates and products are chosen from its planogram by the
seed) and renders it through the same sensors as :func:`.simulator.simulate`
(cameras, BLE, load cells, check-ins, at the ``quiet`` level's sensing
imperfections, with none of its random behaviours). The same config, name and
seed give byte-identical messages. The truth follows the simulator's charging
policy, with two additions the scenarios need: an item handed over is paid by
the receiver, and an item left on the floor is paid by nobody.

The CMU AutoCheckout competition (2020) scored its baseline per scripted case
the same way; :mod:`storesense.datasets.scoring.carts` scores these.
"""

from __future__ import annotations

import dataclasses
import math
import types
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...config import StoreConfig
from ...errors import StoresenseError
from .shoppers import Handover, Reach, ShopperPlanner, SimShopper, _Walker
from .geometry import SHELF_HEIGHT_M
from .simulator import DEFAULT_START_TS, HONEST, LEVELS, SimScenario, _grid, render
from .synthetic import ShelfAction

#: sensing as the quiet level, behaviour scripted (no random put-backs, touches, detours, handovers)
SCENARIO_LEVEL = dataclasses.replace(LEVELS["quiet"], name="scenario", putback_share=0.0, wrong_place_share=0.0,
                                     touch_share=0.0, handover_share=0.0, simultaneous_share=0.0,
                                     wander_share=0.0, code_checkin_share=0.0,
                                     **{k: 0.0 for k in HONEST})  # scripted: who has the app is the script's


#: the sensors run this long after the last shopper left (the fusion closes a session it saw leave only as
#: time goes on, as in a store that stays open)
TAIL_S = 10.0


class Actor:
    """One scripted shopper: walks, reaches, hands over, leaves; records the truth as it goes."""

    def __init__(self, script: Script, shopper: SimShopper, walker: _Walker):
        self.script, self.shopper, self.w = script, shopper, walker
        self.spot: tuple[float, float] | None = None

    @property
    def t(self) -> float:
        """This shopper's clock (when they are free for the next step)."""
        return self.w.t

    def go(self, shelf: str, avoid: tuple[float, float] | None = None) -> Actor:
        """Walk to a spot at ``shelf`` (at least 0.8 m along the front from ``avoid``) and look."""
        p = self.script.planner
        p._earlier = [types.SimpleNamespace(stands=x.w.stands) for x in self.script.actors if x is not self]
        spot = p.stand_spot(shelf, avoid=avoid) if avoid is not None else p._free_stand_spot(self.w, shelf)
        self.w.walk_to(spot)
        self.spot = self.w.pos
        self.w.wait(float(p.rng.uniform(0.4, 1.2)), f"shelf:{shelf}")
        return self

    def wait_until(self, t: float, where: str = "browse") -> Actor:
        """Stand still until ``t``."""
        if t > self.w.t:
            self.w.wait(t - self.w.t, where)
        return self

    def reach(self, shelf: str, plate_id: str, kind: str, sku: str | None, qty: int, *,
              t_in: float | None = None, dwell_s: float | None = None) -> Reach:
        """One hand visit into ``plate_id`` moving ``qty`` items (+ taken, - put down)."""
        plate = self.script.config.plate(shelf, plate_id)
        return self.script.planner._reach(self.shopper, self.w, shelf, plate, kind, sku, qty, t_in, None, dwell_s)

    def pick(self, shelf: str, plate_id: str, qty: int = 1, sku: str | None = None, **kw) -> Reach:
        """Take ``qty`` items of the plate's product (or ``sku``) off the plate."""
        sku = sku or self.script.config.plate(shelf, plate_id).sku
        return self.reach(shelf, plate_id, "pick", sku, qty, **kw)

    def put(self, shelf: str, plate_id: str, sku: str, qty: int = 1, **kw) -> Reach:
        """Put ``qty`` held items of ``sku`` on the plate (its own plate, or a wrong one)."""
        plate = self.script.config.plate(shelf, plate_id)
        kind = "putback" if sku in plate.skus else "wrong_putback"
        return self.reach(shelf, plate_id, kind, sku, -qty, **kw)

    def drop(self, sku: str) -> None:
        """Leave a held item on the floor (or any surface no sensor watches): nobody pays for it."""
        self.w.wait(float(self.script.planner.rng.uniform(1.0, 2.0)), "browse")
        self.shopper.actions.append(ShelfAction(self.w.t - 0.5, "floor", "floor", sku, -1))

    def hand_to(self, other: Actor, sku: str) -> Handover:
        """Walk up to ``other`` and hand them one item of ``sku``; the receiver pays for it."""
        ox, oy = other.w.pos
        ang = float(self.script.planner.rng.uniform(-math.pi, math.pi))
        spot = self.script.planner.snap((ox + 0.7 * math.cos(ang), oy + 0.7 * math.sin(ang)))
        self.w.walk_to(spot)
        ts = max(self.w.t, other.w.t) + 0.5
        self.wait_until(ts, "handover")
        other.wait_until(ts, "handover")
        h = Handover(ts, self.shopper.id, other.shopper.id, sku, 1, ((ox + spot[0]) / 2, (oy + spot[1]) / 2),
                     paid_by="receiver")
        self.shopper.handovers.append(h)
        other.shopper.handovers.append(h)
        self.wait_until(ts + 1.0, "handover")
        other.wait_until(ts + 1.0, "handover")
        return h

    def leave(self) -> SimShopper:
        """Walk out through the exit zone."""
        return self.script.planner.finish(self.shopper, self.w)


class Script:
    """Builds one scenario's shoppers in a store, seeded."""

    def __init__(self, config: StoreConfig, name: str, seed: int, start_ts: float = DEFAULT_START_TS):
        self.config, self.name, self.seed, self.start_ts = config, name, seed, start_ts
        self.seq = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())])
        self.rng = np.random.default_rng(self.seq.spawn(1)[0])
        self.planner = ShopperPlanner(config, _grid(config), SCENARIO_LEVEL, self.rng)
        self.actors: list[Actor] = []
        self.fusion_config: StoreConfig | None = None
        self.weighed = [(s.id, p.id) for s in config.shelves for p in s.plates
                        if config.sensor_for_plate(s.id, p.id) is not None]
        if len(self.weighed) < 3:
            raise StoresenseError(f"scenario {name}: the store needs at least 3 weighed plates")

    def shopper(self, t: float | None = None, *, method: str = "app", phone: str | None = None) -> Actor:
        """A new shopper walking in at ``t`` (default: a second after the store opens)."""
        t = self.start_ts + 1.0 if t is None else t
        shopper, w = self.planner.start(len(self.actors), t, method=method, phone=phone)
        a = Actor(self, shopper, w)
        self.actors.append(a)
        return a

    def plates(self, n: int, *, distinct_skus: bool = True, shelves: int = 1, narrow: bool = False
               ) -> list[tuple[str, str]]:
        """``n`` weighed plates drawn by the seed (different products; over at least ``shelves`` shelves;
        ``narrow``: only plates of products no wider than a plate)."""
        pool = [c for c in self.weighed if not (narrow and self.config.product(self.config.plate(*c).sku).width_m)]
        for _ in range(200):
            idx = self.rng.choice(len(pool), size=n, replace=False)
            chosen = [pool[int(i)] for i in idx]
            skus = [self.config.plate(*c).sku for c in chosen]
            if distinct_skus and len(set(skus)) < n:
                continue
            if len({c[0] for c in chosen}) >= min(shelves, n):
                return chosen
        raise StoresenseError(f"scenario {self.name}: no {n} weighed plates fit in store {self.config.store.id}")

    def shelf_with(self, n: int) -> tuple[str, list[str]]:
        """A shelf with at least ``n`` weighed plates of different products, and ``n`` of them (seeded)."""
        by_shelf: dict[str, list[str]] = {}
        for s, p in self.weighed:
            by_shelf.setdefault(s, []).append(p)
        ok = sorted(s for s, ps in by_shelf.items() if len({self.config.plate(s, p).sku for p in ps}) >= n)
        if not ok:
            raise StoresenseError(f"scenario {self.name}: no shelf with {n} weighed plates of different products")
        shelf = ok[int(self.rng.integers(len(ok)))]
        plates, seen = [], set()
        for i in self.rng.permutation(len(by_shelf[shelf])):
            p = by_shelf[shelf][int(i)]
            sku = self.config.plate(shelf, p).sku
            if sku not in seen:
                plates.append(p)
                seen.add(sku)
        return shelf, sorted(plates[:n], key=lambda p: self.config.shelf(shelf).plate_span(
            self.config.plate(shelf, p))[0] + 100 * self.config.plate(shelf, p).level)

    def other_plate(self, sku: str, *, same_weight: bool) -> tuple[str, str]:
        """A weighed plate whose planogram does not hold ``sku``: the nearest in product weight, or any."""
        unit = self.config.product(sku).unit_weight_g
        cands = [c for c in self.weighed if sku not in self.config.plate(*c).skus]
        if same_weight:
            return min(cands, key=lambda c: (abs(self.config.product(self.config.plate(*c).sku).unit_weight_g - unit),
                                             c))
        return cands[int(self.rng.integers(len(cands)))]


def _single_picks(s: Script) -> None:
    a = s.shopper()
    for shelf, plate in sorted(s.plates(3, shelves=2), key=lambda _: float(s.rng.random())):
        a.go(shelf)
        a.pick(shelf, plate)
    a.leave()


def _one_reach_several(s: Script) -> None:
    a = s.shopper()
    shelf, plate = s.plates(1)[0]
    a.go(shelf)
    a.pick(shelf, plate, int(s.rng.integers(2, 4)))
    a.leave()


def _quick_adjacent(s: Script) -> None:
    a = s.shopper()
    n = 3 if _has_shelf_with(s, 3) else 2
    shelf, plates = s.shelf_with(n)
    a.go(shelf)
    t = None
    for plate in plates:
        r = a.pick(shelf, plate, t_in=t)
        t = r.t_out + float(s.rng.uniform(0.4, 0.7))  # the next reach right after the last one
        a.wait_until(t - 0.3, f"shelf:{shelf}")
    a.leave()


def _has_shelf_with(s: Script, n: int) -> bool:
    try:
        s.shelf_with(n)
        return True
    except StoresenseError:
        return False


def _putback_same(s: Script) -> None:
    a = s.shopper()
    (shelf, plate), (shelf2, plate2) = s.plates(2, shelves=2)
    sku = s.config.plate(shelf, plate).sku
    a.go(shelf)
    a.pick(shelf, plate, int(s.rng.integers(1, 3)))
    if s.rng.random() < 0.5:  # changes their mind at once, or after another shelf
        a.go(shelf2)
        a.pick(shelf2, plate2)
        a.go(shelf)
    a.put(shelf, plate, sku)
    a.leave()


def _putback_wrong(s: Script) -> tuple:
    """One shopper takes an item and puts it back on another plate; returns (shopper, that plate, sku)."""
    a = s.shopper()
    shelf, plate = s.plates(1)[0]
    sku = s.config.plate(shelf, plate).sku
    a.go(shelf)
    a.pick(shelf, plate)
    wrong = s.other_plate(sku, same_weight=bool(s.seed % 2 == 0))  # even seeds: a product of the same weight
    a.go(wrong[0])
    a.put(*wrong, sku)
    a.leave()
    return a, wrong, sku


def _misplaced_taken(s: Script) -> None:
    a, wrong, sku = _putback_wrong(s)
    b = s.shopper(a.shopper.exit_ts + float(s.rng.uniform(2.0, 10.0)))
    b.go(wrong[0])
    b.pick(*wrong, sku=sku)  # the misplaced item, from the plate it was left on
    b.leave()


def _long_hold(s: Script) -> None:
    a = s.shopper()
    for shelf, plate in s.plates(2, shelves=2):
        a.go(shelf)
        a.pick(shelf, plate, dwell_s=float(s.rng.uniform(6.0, 12.0)))
    a.leave()


def _rest_two_take_one(s: Script) -> None:
    a = s.shopper()
    shelf, plate = s.plates(1)[0]
    sku = s.config.plate(shelf, plate).sku
    a.go(shelf)
    a.pick(shelf, plate, 2)
    a.wait_until(a.t + float(s.rng.uniform(1.0, 3.0)), f"shelf:{shelf}")
    # both items rest on the plate, the hand stays on them, then lifts one
    r = a.put(shelf, plate, sku, 2, dwell_s=float(s.rng.uniform(1.5, 3.0)))
    a.pick(shelf, plate, 1, t_in=r.t_out + 0.1)
    a.leave()


def _floor_drop(s: Script) -> None:
    a = s.shopper()
    (shelf, plate), (shelf2, plate2) = s.plates(2, shelves=2)
    a.go(shelf)
    a.pick(shelf, plate)
    a.go(shelf2)
    a.pick(shelf2, plate2)
    a.drop(s.config.plate(shelf, plate).sku)
    a.leave()


def _together(s: Script, same_plate: bool) -> None:
    a = s.shopper()
    b = s.shopper(s.start_ts + 1.0 + float(s.rng.uniform(0.5, 3.0)))
    if same_plate:
        shelf, plate = s.plates(1)[0]
        plates = [plate, plate]
    else:
        shelf, plates = s.shelf_with(2)
    a.go(shelf)
    b.go(shelf, avoid=a.spot)
    if not same_plate:  # crossing arms: each reaches the plate nearer the other
        sa = s.config.shelf(shelf)
        along = [sa.plate_span(s.config.plate(shelf, p))[0] for p in plates]
        f = s.planner.fronts[shelf]
        ua, ub = (float(np.dot(np.subtract(x.spot, f.a), f.direction)) for x in (a, b))
        if (along[0] < along[1]) == (ua < ub):
            plates = plates[::-1]
    t = max(a.t, b.t) + 0.5
    a.pick(shelf, plates[0], t_in=t)
    b.pick(shelf, plates[1], t_in=t + float(s.rng.uniform(-0.3, 0.3)))
    a.leave()
    b.leave()


def _handover(s: Script) -> None:
    a = s.shopper()
    b = s.shopper(s.start_ts + 1.0 + float(s.rng.uniform(1.0, 4.0)))
    (shelf, plate), (shelf2, plate2) = s.plates(2, shelves=2)
    a.go(shelf)
    a.pick(shelf, plate)
    b.go(shelf2)
    b.pick(shelf2, plate2)
    a.hand_to(b, s.config.plate(shelf, plate).sku)
    a.leave()
    b.leave()


def _crowd(s: Script) -> None:
    n = int(s.rng.integers(3, 5))
    actors = [s.shopper(s.start_ts + 1.0 + 1.5 * i + float(s.rng.uniform(0, 1.0))) for i in range(n)]
    for a in actors:
        held: list[tuple[str, str]] = []
        for shelf, plate in s.plates(3, shelves=2):
            a.go(shelf)
            a.pick(shelf, plate)
            held.append((s.config.plate(shelf, plate).sku, plate))
        if s.rng.random() < 0.5:  # a put-back to a wrong place
            sku, _ = held[int(s.rng.integers(len(held)))]
            wrong = s.other_plate(sku, same_weight=False)
            a.go(wrong[0])
            a.put(*wrong, sku)
    for a in actors:
        a.leave()


def _wrong_planogram(s: Script) -> None:
    a = s.shopper()
    shelf, plate = s.plates(1, narrow=True)[0]  # one plate's entry is wrong (not a whole run of a wide product)
    true_sku = s.config.plate(shelf, plate).sku
    unit = s.config.product(true_sku).unit_weight_g
    # the planogram says another product, of a clearly different weight
    others = [p.sku for p in s.config.products if abs(p.unit_weight_g - unit) > 0.3 * unit]
    said = others[int(s.rng.integers(len(others)))]
    data = s.config.model_dump(mode="json", exclude_none=True)
    for sh in data["shelves"]:
        for p in sh["plates"]:
            if sh["id"] == shelf and p["id"] == plate:
                p["sku"] = said
    s.fusion_config = StoreConfig.model_validate(data)
    a.go(shelf)
    a.pick(shelf, plate)
    a.leave()


def _group(s: Script) -> None:
    size = int(s.rng.integers(2, 4))
    lead = s.shopper()
    lead.shopper.group, lead.shopper.group_size = lead.shopper.id, size
    members = [s.shopper(s.start_ts + 1.6 + 0.9 * i, method="none", phone="none") for i in range(size - 1)]
    for m in members:
        m.shopper.group, m.shopper.tag = lead.shopper.id, lead.shopper.tag
    for a, (shelf, plate) in zip([lead, *members], s.plates(size, shelves=2)):
        a.go(shelf)
        a.pick(shelf, plate)
    together = s.rng.random() < 0.5
    order = [lead, *members]
    for k, a in enumerate(order):  # together, or in parts (the last one some time later)
        if not together and k == len(order) - 1:
            shelf, plate = s.plates(1)[0]
            a.go(shelf)
            a.pick(shelf, plate)
        a.leave()


def _no_app(s: Script) -> None:
    a = s.shopper(method="code", phone="none")
    for shelf, plate in s.plates(2, shelves=2):
        a.go(shelf)
        a.pick(shelf, plate)
    a.leave()


@dataclass(frozen=True)
class ScenarioSpec:
    """A named scenario: what it tests and how it is built."""

    name: str
    description: str
    build: Callable[[Script], None]


SCENARIOS: dict[str, ScenarioSpec] = {spec.name: spec for spec in (
    ScenarioSpec("single-picks", "one shopper picks single items from several shelves, in any order",
                 _single_picks),
    ScenarioSpec("one-reach-several", "2-3 items of one plate in one reach", _one_reach_several),
    ScenarioSpec("quick-adjacent", "2-3 different products from neighbouring plates of one shelf in quick "
                                   "succession", _quick_adjacent),
    ScenarioSpec("putback-same", "a pick, then a put-back to the same plate (at once or after another shelf)",
                 _putback_same),
    ScenarioSpec("putback-wrong", "a put-back to a wrong plate (even seeds: one holding a product of about the "
                                  "same weight)", _putback_wrong),
    ScenarioSpec("misplaced-taken", "an item misplaced by one shopper, later taken from there by another",
                 _misplaced_taken),
    ScenarioSpec("long-hold", "the hand rests on the item 6-12 s before lifting it", _long_hold),
    ScenarioSpec("rest-two-take-one", "two held items rested on their plate, then only one taken again",
                 _rest_two_take_one),
    ScenarioSpec("floor-drop", "an item picked, then left on the floor (no sensor sees it): nobody pays",
                 _floor_drop),
    ScenarioSpec("same-plate-together", "two shoppers take the same product from the same plate at the same "
                                        "moment", lambda s: _together(s, True)),
    ScenarioSpec("crossing-arms", "two shoppers take different products from one shelf at the same moment, "
                                  "each reaching the plate nearer the other", lambda s: _together(s, False)),
    ScenarioSpec("handover", "one shopper hands an item to another: the receiver pays", _handover),
    ScenarioSpec("crowd", "3-4 shoppers close together, 3 picks each, some put back on wrong plates", _crowd),
    ScenarioSpec("wrong-planogram", "a plate's planogram entry names the wrong product: weight and catalog "
                                    "must win", _wrong_planogram),
    ScenarioSpec("group", "a family of 2-3 checked in once, sharing one cart; leaving together or in parts",
                 _group),
    ScenarioSpec("no-app", "a shopper with no app and no BLE tag (checked in with a scanned code)", _no_app),
)}


def scenario_names() -> list[str]:
    """Every scenario name, in the table's order."""
    return list(SCENARIOS)


def simulate_scenario(config: StoreConfig, name: str, seed: int = 0, *, start_ts: float = DEFAULT_START_TS,
                      appearance: bool = True) -> SimScenario:
    """Play scenario ``name`` in ``config`` with ``seed``; the result's ``fusion_config`` (when set) is the
    config the fusion must be given (the wrong-planogram scenario's planogram differs from the truth)."""
    try:
        spec = SCENARIOS[name]
    except KeyError:
        raise StoresenseError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None
    script = Script(config, name, seed, start_ts)
    spec.build(script)
    truth = sorted((a.shopper for a in script.actors), key=lambda s: s.enter_ts)
    for s in truth:
        s.actions.sort(key=lambda a: a.ts)
        s.reaches.sort(key=lambda r: r.t_in)
    seq = np.random.SeedSequence([int(seed), zlib.crc32(name.encode())])
    seq.spawn(1)  # the planning stream; render() spawns the sensors' streams after it
    scenario = render(config, SCENARIO_LEVEL, truth, script.planner, seq, seed=seed, start_ts=start_ts,
                      camera_fps=None, shelf_height_m=SHELF_HEIGHT_M, appearance=appearance, run_id=f"scn-{name}-{seed}",
                      tail_s=TAIL_S)
    scenario.scenario = name
    scenario.fusion_config = script.fusion_config
    return scenario
