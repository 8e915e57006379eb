"""Pick and put-back decisions from hand events, shelf weight and the planogram.

:class:`PickDecider` keeps each shopper's hand visits to shelves (hand enter to
hand exit). A settled weight change on a plate is attributed to the shopper
whose hand was in that shelf when the load changed; its sign says pick or
put-back, its size divided by the product's unit weight says how many. The
decision's confidence combines how well the weight fits a whole number of items
with how clearly one shopper was reaching. Shelves without load cells are
decided from the hand events alone, at lower confidence. A load increase that
fits an item the shopper holds better than the plate's own product is an item
put back on the wrong plate; it is remembered, so a later pick of it there is
recognised too. Anything below
``review_below`` is flagged for review with its evidence, never silently guessed.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..config import StoreConfig
from ..contracts import CartChange, HandShelfInteraction, WeightChange
from ..errors import ConfigError
from .inventory import ShelfInventory

log = logging.getLogger(__name__)

#: confidence of a hands-only pick on a shelf with a single product and no load cell
HANDS_ONLY_CONFIDENCE = 0.6

#: prior of the number of items one reach takes, used to share a load change among several hands
DEFAULT_QUANTITY_PRIOR = {0: 0.15, 1: 0.6, 2: 0.17, 3: 0.06}

#: one reach settles one load change per plate: a hand already charged with a change there is unlikely
#: to have made another
EXPLAINED_FACTOR = 0.02


def _median(values: list[float]) -> float:
    """``float(np.median(values))`` without numpy's overhead (a visit holds a handful of heights).

    The middle value, or for an even count the two middle ones as numpy's mean takes them, ``(a + b) / 2``,
    each sum started at numpy's ``0.0`` (a -0.0 comes out as 0.0): the same bits. With a NaN numpy decides (its
    median is NaN then).
    """
    s = sorted(values)
    n = len(s)
    if n == 0 or any(v != v for v in s):
        return float(np.median(values))
    h = n // 2
    return 0.0 + s[h] if n % 2 else (0.0 + s[h - 1] + s[h]) / 2


@dataclass
class HandVisit:
    """A shopper's hand inside one shelf, from enter to exit."""

    shopper: str
    shelf: str
    enter_ts: float
    exit_ts: float | None = None
    keypoint_score: float = 1.0
    evidence: list[str] = field(default_factory=list)
    heights: list[float] = field(default_factory=list)  # wrist heights on the shelf face, metres
    alongs: list[float] = field(default_factory=list)  # where along the front (m from its first corner)
    explained: set[str] = field(default_factory=set)  # plates whose load change this visit was charged with


@dataclass
class Decision:
    """A cart change for a shopper (``shopper`` is None when nobody could be attributed)."""

    shopper: str | None
    key: str
    change: CartChange
    weight: WeightChange | None = None  # the load change behind it, if any
    #: the only hand seen fits the change poorly: someone whose hand was not seen may have made it (the
    #: caller names who stood at the shelf as alternatives)
    unseen: bool = False


class PickDecider:
    """Turns hand visits and weight changes into cart changes."""

    def __init__(self, config: StoreConfig, *, review_below: float = 0.6, memory_s: float = 30.0,
                 quantity_prior: dict[int, float] | None = None, putback_share: float = 0.1,
                 height_sigma_m: float = 0.15, timing_sigma_s: float = 0.3, along_sigma_m: float = 0.12,
                 combine_s: float = 0.5, dwell_per_item_s: float | None = 0.3, dwell_one_s: float = 1.2,
                 dwell_sigma_s: float = 0.5, lone_hand_min: float = 0.03):
        self.config = config
        #: one hand in the shelf whose timing (:meth:`_timing`) fits the load change below this was probably
        #: not the one that made it (a taker's hand not seen, or a wrist on a neighbour's skeleton): to review
        self.lone_hand_min = lone_hand_min
        #: a hand that moves more items stays in longer: a reach of ``q`` items lasts about
        #: ``dwell_one_s + dwell_per_item_s * (q - 1)`` (normal, ``dwell_sigma_s``); None: dwell is not used.
        #: Defaults from the simulator's reaches; a store should fit them to its own reviewed transactions
        self.dwell_per_item_s = dwell_per_item_s
        self.dwell_one_s = dwell_one_s
        self.dwell_sigma_s = dwell_sigma_s
        self.review_below = review_below
        #: how many items one reach moves (0: a touch, or a reach to another plate of the shelf); a store
        #: should fit this to its own reviewed transactions
        self.quantity_prior = quantity_prior or DEFAULT_QUANTITY_PRIOR
        self.putback_share = putback_share
        self.height_sigma_m = height_sigma_m
        self.timing_sigma_s = timing_sigma_s
        self.memory_s = memory_s
        self.along_sigma_m = along_sigma_m
        #: load changes on adjacent plates of one shelf level within this many seconds, on plates that share a
        #: product wider than a plate, are one item resting across them: one event
        self.combine_s = combine_s
        self.pending: list[WeightChange] = []
        self.doubt = ""  # why the last explained change is in doubt (another product fits about as well)
        self._runner_up: tuple[float, str, int] | None = None
        self._run: set[str] = set()  # while a joined change is decided: the plates it spans
        self._spans: dict[tuple[str, str], tuple[int, float, frozenset[str]]] = {}  # plate -> (level, centre, wide skus)
        self._row: dict[tuple[str, str], int] = {}  # plate -> index along its shelf level
        self._wide = {p.sku for p in config.products if p.width_m}  # products that may rest across plates
        self._fronts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # shelf -> front edge, normal (front)
        self._reached: tuple[str, tuple[float, float] | None] | None = None  # the last hand event's reach point
        for shelf in config.shelves:
            for level in {p.level for p in shelf.plates}:
                row = sorted((p for p in shelf.plates if p.level == level), key=lambda p: shelf.plate_span(p)[0])
                for k, p in enumerate(row):
                    self._row[(shelf.id, p.id)] = k
            for p in shelf.plates:
                width = shelf.plate_span(p)[1]
                wide = frozenset(k for k in p.skus if (config.product(k).width_m or 0.0) > width + 1e-9)
                if self._wide:
                    self._spans[(shelf.id, p.id)] = (p.level, shelf.plate_span(p)[0], wide)
        self.visits: list[HandVisit] = []
        # :meth:`expire` skips its pass while nothing can be due: no visit of ``_expire_list`` (the visit list it
        # last rebuilt) ends (exit, or enter while open) before ``_expire_floor``; :meth:`hand` lowers it for
        # every end it sets, and to a visit's enter when it takes the visit's exit back
        self._expire_list = self.visits
        self._expire_floor = math.inf
        #: the store's belief of what lies on each plate; decisions read it and every decided change updates it
        self.inventory = ShelfInventory(config)
        self._weighed = {ws.shelf for ws in config.weight_sensors}

    def hand(self, shopper: str, msg: HandShelfInteraction, in_cart: dict[str, int]) -> list[Decision]:
        """Record a hand event of ``shopper``; decides hands-only shelves on exit."""
        # every enter or exit time this sets on a visit is msg.ts, or msg.ts - dwell_s for an enter never seen
        low = min(msg.ts, msg.ts - msg.dwell_s)
        if low < self._expire_floor:
            self._expire_floor = low
        try:
            self.config.shelf(msg.shelf)
        except KeyError:
            log.warning("hand event %s names shelf %r, which the store config does not have; ignored",
                        msg.event_id, msg.shelf)
            return []
        point = self.reach_point(msg)
        height, along = point if point is not None else (None, None)
        # several cameras may report the same reach: one visit per shopper and shelf at a time
        if msg.phase == "enter":
            visit = next((v for v in reversed(self.visits) if v.shopper == shopper and v.shelf == msg.shelf
                          and (v.exit_ts is None or msg.ts - v.exit_ts < 0.3)), None)
            if visit is not None:
                visit.exit_ts = None  # the same reach seen by another camera, or a hand back in at once
                if visit.enter_ts < self._expire_floor:  # open again: it is due from its enter on
                    self._expire_floor = visit.enter_ts
                visit.evidence.append(msg.event_id)
                visit.heights += [height] if height is not None else []
                visit.alongs += [along] if along is not None else []
                return []
            self.visits.append(HandVisit(shopper, msg.shelf, msg.ts, None, msg.keypoint_score, [msg.event_id],
                                         [height] if height is not None else [],
                                         alongs=[along] if along is not None else []))
            return []
        visit = next(
            (v for v in reversed(self.visits) if v.shopper == shopper and v.shelf == msg.shelf and v.exit_ts is None),
            None,
        )
        if visit is None:
            recent = next((v for v in reversed(self.visits) if v.shopper == shopper and v.shelf == msg.shelf
                           and v.exit_ts is not None and msg.ts - v.exit_ts < 1.0), None)
            if recent is not None:  # another camera already reported this hand leaving
                recent.evidence.append(msg.event_id)
                recent.heights += [height] if height is not None else []
                recent.alongs += [along] if along is not None else []
                return []
        if visit is None:  # the enter was missed: reconstruct it from the dwell time
            visit = HandVisit(shopper, msg.shelf, msg.ts - msg.dwell_s, None, msg.keypoint_score, [])
            self.visits.append(visit)
        visit.exit_ts = msg.ts
        visit.keypoint_score = min(visit.keypoint_score, msg.keypoint_score)
        visit.evidence.append(msg.event_id)
        visit.heights += [height] if height is not None else []
        visit.alongs += [along] if along is not None else []
        if msg.shelf in self._weighed:
            return []  # the load cell will tell
        return [self._hands_only(visit, in_cart)]

    def reach_height(self, msg: HandShelfInteraction) -> float | None:
        """Height above the floor (m) where the wrist met the shelf's front face (see :meth:`reach_point`)."""
        point = self.reach_point(msg)
        return None if point is None else point[0]

    def reach_point(self, msg: HandShelfInteraction) -> tuple[float, float] | None:
        """Where the wrist met the shelf's front face: (height above the floor, distance along the front), m.

        The wrist pixel's viewing ray (the camera's calibration) is cut with the
        vertical plane through the shelf's front edge. None when the event has
        no wrist position, the camera is not fully calibrated, or the ray runs
        along the face.
        """
        if msg.wrist is None:
            return None
        if self._reached is not None and self._reached[0] == msg.event_id:
            return self._reached[1]  # the fusion asks twice per hand event (whose hand, then which plate)
        point = self._reach_point(msg)
        self._reached = (msg.event_id, point)
        return point

    def _reach_point(self, msg: HandShelfInteraction) -> tuple[float, float] | None:
        try:
            camera = self.config.camera(msg.camera)
            origin, direction = camera.pixel_ray(msg.wrist)
            a, b, _ = self.front(msg.shelf)
        except (KeyError, ConfigError):
            return None
        normal = np.array([b[1] - a[1], a[0] - b[0], 0.0])
        denom = float(normal @ direction)
        if abs(denom) < 1e-6:
            return None
        s = float(normal @ (np.array([a[0], a[1], 0.0]) - origin)) / denom
        if s <= 0:
            return None
        hit = origin + s * direction
        along = float((hit[:2] - a[:2]) @ (b[:2] - a[:2])) / float(np.linalg.norm(b[:2] - a[:2]))
        return float(hit[2]), along

    def front(self, shelf_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A shelf's front edge (its two corners) and the edge's unit normal towards the shoppers, found once per
        shelf (the config does not change while we run). Raises KeyError for a shelf the config does not have."""
        front = self._fronts.get(shelf_id)
        if front is None:
            shelf = self.config.shelf(shelf_id)
            a, b = shelf.front_edge()
            front = self._fronts[shelf_id] = (a, b, shelf.front_normal())
        return front

    def _plate_match(self, visit: HandVisit, shelf: str, plate: str) -> float | None:
        """How likely the visit's hand reached ``plate`` rather than another plate of the shelf (None: unknown).

        Compares the median wrist height on the face with each plate's height
        (normal error of ``height_sigma_m``); plates at the same height tie.
        """
        unit = self.config.shelf(shelf)
        plates = unit.plates
        if not visit.heights or len(plates) < 2:
            return None
        h = _median(visit.heights)
        u = _median(visit.alongs) if visit.alongs else None
        lik = {}
        for p in plates:
            lik[p.id] = math.exp(-0.5 * ((h - p.height) / self.height_sigma_m) ** 2)
            if u is not None and p.position_m is not None:  # plates placed along the front: where the hand was
                centre, width = unit.plate_span(p)
                off = max(0.0, abs(u - centre) - width / 2)
                lik[p.id] *= math.exp(-0.5 * (off / self.along_sigma_m) ** 2)
            lik[p.id] += 1e-6
        run = self._run if plate in self._run else {plate}  # an item across plates: a hand at any of them
        return sum(lik[p] for p in run) / sum(lik.values())

    def _hands_only(self, visit: HandVisit, in_cart: dict[str, int]) -> Decision:
        plates = self.config.shelf(visit.shelf).plates
        sku = plates[0].sku
        confidence = HANDS_ONLY_CONFIDENCE * min(1.0, visit.keypoint_score / 0.5)
        reason = "hand in shelf without a load cell"
        if len(plates) > 1:
            confidence = min(confidence, 0.3)
            reason += f"; {len(plates)} products on the shelf, assumed {sku}"
        if in_cart.get(sku, 0) > 0:
            confidence = min(confidence, 0.4)
            reason += f"; shopper already holds {sku}: pick or put-back?"
        change = CartChange(sku=sku, quantity=1, confidence=round(confidence, 3),
                            needs_review=confidence < self.review_below, shelf=visit.shelf, plate=plates[0].id,
                            evidence=tuple(visit.evidence), reason=reason)
        return Decision(visit.shopper, visit.evidence[-1], change)

    def weight(self, msg: WeightChange, cart_of: Callable[[str], dict[str, int]] = lambda shopper: {}
               ) -> list[Decision]:
        """Decide what a settled weight change means and whose cart it belongs to.

        ``cart_of(shopper)`` gives what a shopper holds, to recognise an item put
        back on the wrong plate (and a shopper putting back what they never took).
        In a store with products wider than a plate, a change waits up to
        ``combine_s`` for its neighbours' (:meth:`due` decides them).
        """
        if (msg.shelf, msg.plate) in self._spans:
            self.pending.append(msg)
            return self.due(msg.ts, cart_of)
        return self._decide(msg, cart_of)

    def due(self, now: float, cart_of: Callable[[str], dict[str, int]] = lambda shopper: {}) -> list[Decision]:
        """Decide the held changes whose neighbours can no longer arrive (``now`` = the current time).

        Held changes on adjacent plates of one shelf level, of one sign, starting
        within ``combine_s`` of each other, on plates that share a wide product,
        are one item (or several) resting across them: they are summed into one
        change on the run's first plate.
        """
        if not self.pending:
            return []
        groups: list[list[WeightChange]] = []
        for m in sorted(self.pending, key=lambda m: (m.started_ts, m.event_id)):
            joined = [g for g in groups if any(self._joins(m, o) for o in g)]
            merged = [m] + [x for g in joined for x in g]  # m may link groups that were apart
            groups = [g for g in groups if not any(g is j for j in joined)] + [merged]
        out: list[Decision] = []
        for g in groups:
            if max(m.ts for m in g) + self.combine_s > now:
                continue
            for m in g:
                self.pending.remove(m)
            if len(g) == 1:
                out += self._decide(g[0], cart_of)
                continue
            g.sort(key=lambda m: self._row[(m.shelf, m.plate)])
            first = g[0]
            merged = first.model_copy(update={
                "delta_g": round(sum(m.delta_g for m in g), 1), "total_g": round(sum(m.total_g for m in g), 1),
                "noise_g": math.sqrt(sum(m.noise_g ** 2 for m in g)), "started_ts": min(m.started_ts for m in g),
                "ts": max(m.ts for m in g)})
            extra = tuple(m.event_id for m in g[1:])
            self._run = {m.plate for m in g}
            try:
                decided = self._decide(merged, cart_of)
            finally:
                self._run = set()
            for d in decided:
                d.change = d.change.model_copy(update={
                    "evidence": d.change.evidence + extra,
                    "reason": d.change.reason + f"; one item across plates {', '.join(m.plate for m in g)}"})
                out.append(d)
        return out

    def _joins(self, m: WeightChange, o: WeightChange) -> bool:
        """Whether two held changes are one item resting across adjacent plates (see :meth:`due`)."""
        a, b = self._spans[(m.shelf, m.plate)], self._spans[(o.shelf, o.plate)]
        if not (m.shelf == o.shelf and a[0] == b[0] and (m.delta_g > 0) == (o.delta_g > 0)
                and abs(self._row[(m.shelf, m.plate)] - self._row[(o.shelf, o.plate)]) == 1
                and abs(m.started_ts - o.started_ts) <= self.combine_s):
            return False
        if a[2] & b[2] or m.delta_g > 0:  # a wide product of both plates, or something laid across them
            return True
        # taken: a wide item the inventory knows lies misplaced there (it rests on up to 4 plates from where it
        # was laid, which is where the inventory counts it)
        row = self._row[(m.shelf, m.plate)]
        near = [p for (sh, p), (lv, _, _) in self._spans.items()
                if sh == m.shelf and lv == a[0] and 0 <= row - self._row[(sh, p)] <= 3]
        return any(set(self.inventory.misplaced(m.shelf, p)) & self._wide for p in near)

    def _decide(self, msg: WeightChange, cart_of: Callable[[str], dict[str, int]]) -> list[Decision]:
        """Decide one (possibly combined) load change."""
        try:
            plate = self.config.plate(msg.shelf, msg.plate)
        except KeyError:
            log.warning("weight change %s names plate %r of shelf %r, which the store config does not have; "
                        "ignored", msg.event_id, msg.plate, msg.shelf)
            return []
        reaching = self._reaching(msg)
        shopper = reaching[0][0] if reaching else None
        held = cart_of(shopper) if shopper else {}
        sku, qty, fit, how = self._explain(msg, plate.skus, held)
        doubt = self.doubt
        if qty == 0:
            return []  # less than half an item: noise or a nudge
        # the load changed whoever did it: the inventory follows the best explanation
        self.inventory.take(msg.shelf, msg.plate, sku, qty, msg.ts)
        reason = f"{'picked' if qty > 0 else 'put back'} {abs(qty)} × {sku}: {msg.delta_g:+.0f} g on {msg.plate}"
        if how:
            reason += f" ({how})"
        if doubt:  # half the confidence already: a person checks
            reason += f"; {doubt}"
        if shopper is None:
            change = CartChange(sku=sku, quantity=qty, confidence=0.0, needs_review=True, shelf=msg.shelf,
                                plate=msg.plate, evidence=(msg.event_id,), reason=reason + "; no hand seen")
            return [Decision(None, msg.event_id, change, msg)]
        if len(reaching) > 1 and not how:
            return self._split(msg, sku, qty, fit, reason, reaching, cart_of)
        _, attribution, visit = reaching[0]
        confidence = fit * attribution
        unseen = False
        if len(reaching) > 1:
            reason += f"; {len(reaching)} shoppers reaching into the shelf"
        else:  # alone, the share says nothing: how well does this one hand explain the change at all?
            alone = self._timing(msg, visit.enter_ts, visit.exit_ts)
            if alone < self.lone_hand_min:
                unseen = True
                confidence = min(confidence, self.review_below / 2)
                reason += (f"; the only hand seen fits its timing poorly ({alone:.3f}): someone whose hand was not "
                           "seen may have made it")
        if qty < 0 and held.get(sku, 0) < -qty:
            confidence *= 0.5
            reason += f"; the shopper held {held.get(sku, 0)} × {sku}"
        change = CartChange(sku=sku, quantity=qty, confidence=round(confidence, 3),
                            needs_review=confidence < self.review_below, shelf=msg.shelf, plate=msg.plate,
                            evidence=(msg.event_id, *visit.evidence), reason=reason,
                            alternatives=tuple(s for s, _, _ in reaching[1:12]))
        visit.explained.add(msg.plate)
        return [Decision(shopper, msg.event_id, change, unseen=unseen)]

    def _reaching(self, msg: WeightChange) -> list[tuple[str, float, HandVisit]]:
        """Shoppers whose hands were in the shelf around the load change: (shopper, share, visit), likeliest first.

        One visit per shopper (the one whose timing fits best). The share is how
        well a hand alone explains the change (:meth:`_timing` × plate match),
        normalised over the shoppers; :meth:`_split` weighs combinations.
        """
        best: dict[str, tuple[float, HandVisit]] = {}
        for v in self.visits:
            if v.shelf != msg.shelf:
                continue
            end = v.exit_ts if v.exit_ts is not None else msg.ts
            if v.enter_ts <= msg.ts and end >= msg.started_ts - 1.0:
                match = self._plate_match(v, msg.shelf, msg.plate)
                score = self._timing(msg, v.enter_ts, v.exit_ts) * (1.0 if match is None else match)
                score *= EXPLAINED_FACTOR if msg.plate in v.explained else 1.0
                if v.shopper not in best or (score, v.enter_ts) > (best[v.shopper][0], best[v.shopper][1].enter_ts):
                    best[v.shopper] = (score, v)
        total = sum(score for score, _ in best.values())
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], -kv[1][1].enter_ts, kv[0]))
        return [(shopper, score / total if total > 0 else 1.0 / len(ranked), v) for shopper, (score, v) in ranked]

    def _timing(self, msg: WeightChange, first_in: float, last_out: float | None) -> float:
        """Likelihood that hands in the shelf from ``first_in`` to ``last_out`` made the change ``msg``.

        The load starts changing shortly after the first hand goes in and
        settles ``settle_s`` after the last hand leaves; both offsets are taken
        as normal with ``timing_sigma_s``. A hand not seen leaving
        (``last_out`` None) cannot have ended the change, which settled only
        once no hand was in; a floor keeps a missed hand event from ruling a
        shopper out altogether.
        """
        sensor = self.config.sensor_for_plate(msg.shelf, msg.plate)
        change_end = msg.ts - (sensor.settle_s if sensor else 0.5)
        s = self.timing_sigma_s
        start = math.exp(-0.5 * ((msg.started_ts - first_in - 0.2) / s) ** 2)
        end = 0.0 if last_out is None else math.exp(-0.5 * ((change_end - last_out - 0.1) / s) ** 2)
        return max(start, 0.05) * max(end, 0.05)

    def _split(self, msg: WeightChange, sku: str, qty: int, fit: float, reason: str,
               reaching: list[tuple[str, float, HandVisit]], cart_of: Callable[[str], dict[str, int]]
               ) -> list[Decision]:
        """Share one load change among the shoppers reaching into the shelf around it.

        Every split (items per shopper, summing to the change; a shopper may also
        put back items they held) is weighed by ``quantity_prior`` per shopper,
        by how well the hands taking part explain the change's timing (the
        first one in starts it, the last one out ends it) and by how well their
        wrist heights fit the plate. The most probable split wins and its
        posterior probability is the confidence: one item each for two hands is
        sure enough, while three items between two hands (who took two?) goes
        to review with the alternative in its reason.
        """
        who = reaching[:3]
        held = [cart_of(s).get(sku, 0) for s, _, _ in who]
        match = [self._plate_match(v, msg.shelf, msg.plate) for _, _, v in who]
        if qty > 0:
            ranges = [range(-h, qty + 1) for h in held]
        else:
            ranges = [range(-min(h, -qty), 1) for h in held]
        scored: list[tuple[float, float, tuple[int, ...]]] = []  # (p with dwell, p without, split)
        for combo in itertools.product(*ranges):
            active = [k for k, q in enumerate(combo) if q]
            if sum(combo) != qty or not active:
                continue
            exits = [who[k][2].exit_ts for k in active]
            p = self._timing(msg, min(who[k][2].enter_ts for k in active),
                             None if None in exits else max(exits))  # type: ignore[type-var]
            dwell = 1.0
            for q, m, (_, _, v) in zip(combo, match, who):
                # a hand at another plate takes nothing from this one; at this plate it takes q by the prior
                p *= self._reach_prior(q) if m is None else m * self._reach_prior(q) + (0.0 if q else 1.0 - m)
                p *= EXPLAINED_FACTOR if q and msg.plate in v.explained else 1.0
                if q and len(who) > 1:
                    dwell *= self._dwell_ratio(v, abs(q))
            scored.append((p * dwell, p, combo))
        if not scored:  # put back more than the reaching shoppers held together: the likeliest hand did it
            scored = [(1.0, 1.0, (qty,) + (0,) * (len(who) - 1))]
        # the hands' dwell picks the likelier split; whether a person checks it stays with timing and plates
        # (dwell is a weak cue: it must not turn a coin toss into a silent charge)
        scored.sort(key=lambda pc: -pc[0])
        _, p_best, split = scored[0]
        total = sum(p for _, p, _ in scored)
        posterior = min(1.0, p_best / total) if total > 0 else 0.0
        confidence = fit * posterior
        names = ", ".join(f"{s} {q:+d}" for (s, _, _), q in zip(who, split))
        why = reason
        if len(who) > 1:
            why += f"; {len(reaching)} shoppers reaching into the shelf: {names} (p={posterior:.2f}"
            if len(scored) > 1:
                why += "; next " + ", ".join(f"{s} {q:+d}" for (s, _, _), q in zip(who, scored[1][2]))
            why += ")"
        out = []
        for k, ((shopper, _, visit), q) in enumerate(zip(who, split)):
            if q:
                c = confidence * (0.5 if q < 0 and held[k] < -q else 1.0)
                change = CartChange(sku=sku, quantity=q, confidence=round(c, 3), needs_review=c < self.review_below,
                                    shelf=msg.shelf, plate=msg.plate, evidence=(msg.event_id, *visit.evidence),
                                    reason=why, alternatives=tuple(o for o, _, _ in who if o != shopper))
                key = msg.event_id if sum(1 for x in split if x) == 1 else f"{msg.event_id}:{shopper}"
                out.append(Decision(shopper, key, change))
                visit.explained.add(msg.plate)
        return out

    def _dwell_ratio(self, visit: HandVisit, q: int) -> float:
        """How much better (or worse) a hand's time in the shelf fits ``q`` items than one (1.0: no evidence)."""
        if self.dwell_per_item_s is None or visit.exit_ts is None or q == 1:
            return 1.0
        dwell, s = visit.exit_ts - visit.enter_ts, self.dwell_sigma_s
        one = (dwell - self.dwell_one_s) / s
        many = (dwell - self.dwell_one_s - self.dwell_per_item_s * (q - 1)) / s
        return math.exp(0.5 * (one * one - many * many))

    def _reach_prior(self, q: int) -> float:
        """Prior probability that one shopper's reach moved ``q`` items (negative: put back)."""
        if q < 0:
            return self.putback_share * self._reach_prior(-q)
        top = max(self.quantity_prior)
        return self.quantity_prior.get(q, self.quantity_prior[top] * 0.5 ** (q - top))

    def _explain(self, msg: WeightChange, planned: list[str], held: dict[str, int]) -> tuple[str, int, float, str]:
        """The product and count that best explain a load change: (sku, signed qty, fit 0..1, how).

        Candidates: the plate's planogram products; for a load increase, items
        the shopper holds (one of another product: put back on the wrong
        plate); for a decrease, items the shelf inventory knows lie misplaced
        there (preferred over the planogram's product when both fit: the
        misplaced item is known to be there). When another product fits about
        as well (half the score or more), the fit is halved, so the change goes
        to review with both in its reason. A put-back of a planogram product
        the shopper does not hold is unlikely when they hold another item that
        fits. When nothing fits, one item of any catalog product that does (the
        planogram may be wrong: the weight and the catalog win), at half
        confidence (to review).
        """
        misplaced = self.inventory.misplaced(msg.shelf, msg.plate)
        options = [(s, 1.0, "") for s in planned]
        if msg.delta_g > 0:  # something put down: maybe an item that belongs elsewhere
            options = [(s, 1.0 if held.get(s, 0) > 0 or not held else 0.3, "") for s in planned]
            options += [(s, 0.9, "put back on the wrong plate") for s, n in held.items()
                        if n > 0 and s not in planned]
        else:  # something taken: maybe an item someone misplaced here
            options += [(s, 1.05, "a misplaced item taken") for s in sorted(misplaced)]
        best, best_score = self._best(msg, options, held, misplaced)
        runner = self._runner_up
        self.doubt = ""
        if best_score >= 0.2 and runner is not None and runner[0] >= 0.5 * best_score:
            # another product fits about as well (near-equal weights, a misplaced item or the plate's own?)
            self.doubt = f"{abs(runner[2])} × {runner[1]} fits too"
            best = (best[0], best[1], best[2] * 0.5, best[3])
        if best_score < 0.2 and abs(msg.delta_g) >= max(20.0, 6 * msg.noise_g):
            # nothing the plate should hold fits a clear change: the planogram may be wrong
            known = {o[0] for o in options}
            extra = [(p.sku, 0.2, "not this plate's planogram product: by weight")
                     for p in self.config.products if p.sku not in known]
            alt, alt_score = self._best(msg, extra, held, misplaced, max_qty=1)  # one unknown item, not many
            if alt_score > best_score:  # decided by weight alone: half the confidence, so a person checks
                best = (alt[0], alt[1], alt[2] * 0.5, alt[3])
        return best

    def _best(self, msg: WeightChange, options, held: dict[str, int], misplaced: dict[str, int],
              max_qty: int | None = None) -> tuple[tuple[str, int, float, str], float]:
        best = ("" if not options else options[0][0], 0, 0.0, "")
        best_score = -1.0
        scored: list[tuple[float, str, int]] = []
        for sku, prior, how in options:
            unit = self.config.product(sku).unit_weight_g
            units = -msg.delta_g / unit
            qty = int(round(units))
            if qty == 0 or (max_qty is not None and abs(qty) > max_qty):
                continue
            if how == "put back on the wrong plate" and -qty > held.get(sku, 0):
                continue
            if how == "a misplaced item taken" and qty > misplaced.get(sku, 0):
                continue
            residual_g = abs(units - qty) * unit
            sigma_g = max(msg.noise_g * math.sqrt(2), 1.0) + 0.02 * unit
            fit = math.exp(-0.5 * (residual_g / (2 * sigma_g)) ** 2)
            many = 2 * max(self.quantity_prior)
            if abs(qty) > many:  # a dozen light items matching a heavy load is a coincidence, not one reach
                prior *= 0.5 ** (abs(qty) - many)
            scored.append((fit * prior, sku, qty))
            if fit * prior > best_score:
                best, best_score = (sku, qty, fit, how), fit * prior
        others = [x for x in scored if x[1] != best[0]]
        self._runner_up = max(others) if others else None  # the best explanation by another product
        return best, best_score

    def expire(self, ts: float) -> None:
        """Forget hand visits that ended (or, never seen to end, began) more than ``memory_s`` ago."""
        if self.visits is self._expire_list and ts - self._expire_floor <= self.memory_s:
            return  # every visit ends at or after the floor: none is due (the node calls this after every message)
        self.visits = [v for v in self.visits
                       if (v.exit_ts is None and ts - v.enter_ts <= self.memory_s)
                       or (v.exit_ts is not None and ts - v.exit_ts <= self.memory_s)]
        self._expire_list = self.visits
        # when each visit is due: memory_s after its exit, or after its enter while open (an exit taken back
        # lowers the floor in :meth:`hand`)
        self._expire_floor = min((v.enter_ts if v.exit_ts is None else v.exit_ts for v in self.visits),
                                 default=math.inf)
