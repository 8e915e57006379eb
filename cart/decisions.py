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

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

from ..config import StoreConfig
from ..contracts import CartChange, HandShelfInteraction, WeightChange

log = logging.getLogger(__name__)

#: confidence of a hands-only pick on a shelf with a single product and no load cell
HANDS_ONLY_CONFIDENCE = 0.6


@dataclass
class HandVisit:
    """A shopper's hand inside one shelf, from enter to exit."""

    shopper: str
    shelf: str
    enter_ts: float
    exit_ts: float | None = None
    keypoint_score: float = 1.0
    evidence: list[str] = field(default_factory=list)


@dataclass
class Decision:
    """A cart change for a shopper (``shopper`` is None when nobody could be attributed)."""

    shopper: str | None
    key: str
    change: CartChange


class PickDecider:
    """Turns hand visits and weight changes into cart changes."""

    def __init__(self, config: StoreConfig, *, review_below: float = 0.6, memory_s: float = 30.0):
        self.config = config
        self.review_below = review_below
        self.memory_s = memory_s
        self.visits: list[HandVisit] = []
        self.misplaced: dict[tuple[str, str], dict[str, int]] = {}  # (shelf, plate) -> sku -> items
        self._weighed = {ws.shelf for ws in config.weight_sensors}

    def hand(self, shopper: str, msg: HandShelfInteraction, in_cart: dict[str, int]) -> list[Decision]:
        """Record a hand event of ``shopper``; decides hands-only shelves on exit."""
        try:
            self.config.shelf(msg.shelf)
        except KeyError:
            log.warning("hand event %s names shelf %r, which the store config does not have; ignored",
                        msg.event_id, msg.shelf)
            return []
        # several cameras may report the same reach: one visit per shopper and shelf at a time
        if msg.phase == "enter":
            visit = next((v for v in reversed(self.visits) if v.shopper == shopper and v.shelf == msg.shelf
                          and (v.exit_ts is None or msg.ts - v.exit_ts < 0.3)), None)
            if visit is not None:
                visit.exit_ts = None  # the same reach seen by another camera, or a hand back in at once
                visit.evidence.append(msg.event_id)
                return []
            self.visits.append(HandVisit(shopper, msg.shelf, msg.ts, None, msg.keypoint_score, [msg.event_id]))
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
                return []
        if visit is None:  # the enter was missed: reconstruct it from the dwell time
            visit = HandVisit(shopper, msg.shelf, msg.ts - msg.dwell_s, None, msg.keypoint_score, [])
            self.visits.append(visit)
        visit.exit_ts = msg.ts
        visit.keypoint_score = min(visit.keypoint_score, msg.keypoint_score)
        visit.evidence.append(msg.event_id)
        if msg.shelf in self._weighed:
            return []  # the load cell will tell
        return [self._hands_only(visit, in_cart)]

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
        """
        try:
            plate = self.config.plate(msg.shelf, msg.plate)
        except KeyError:
            log.warning("weight change %s names plate %r of shelf %r, which the store config does not have; "
                        "ignored", msg.event_id, msg.plate, msg.shelf)
            return []
        shopper, attribution, visit, n_shoppers = self._attribute(msg)
        held = cart_of(shopper) if shopper else {}
        sku, qty, fit, how = self._explain(msg, plate.sku, held)
        if qty == 0:
            return []  # less than half an item: noise or a nudge
        reason = f"{'picked' if qty > 0 else 'put back'} {abs(qty)} × {sku}: {msg.delta_g:+.0f} g on {msg.plate}"
        if how:
            reason += f" ({how})"
        evidence = (msg.event_id, *(visit.evidence if visit else ()))
        if shopper is None:
            change = CartChange(sku=sku, quantity=qty, confidence=0.0, needs_review=True, shelf=msg.shelf,
                                plate=msg.plate, evidence=evidence, reason=reason + "; no hand seen")
            return [Decision(None, msg.event_id, change)]
        confidence = fit * attribution
        if n_shoppers > 1:
            reason += f"; {n_shoppers} shoppers reaching into the shelf"
        if qty < 0 and held.get(sku, 0) < -qty:
            confidence *= 0.5
            reason += f"; the shopper held {held.get(sku, 0)} × {sku}"
        key = (msg.shelf, msg.plate)
        if how == "put back on the wrong plate":
            self.misplaced.setdefault(key, {})[sku] = self.misplaced.get(key, {}).get(sku, 0) - qty
        elif how == "a misplaced item taken":
            self.misplaced[key][sku] -= qty
        change = CartChange(sku=sku, quantity=qty, confidence=round(confidence, 3),
                            needs_review=confidence < self.review_below, shelf=msg.shelf, plate=msg.plate,
                            evidence=evidence, reason=reason)
        return [Decision(shopper, msg.event_id, change)]

    def _attribute(self, msg: WeightChange) -> tuple[str | None, float, HandVisit | None, int]:
        """Whose hand changed the load: (shopper, attribution confidence, visit, shoppers reaching)."""
        sensor = self.config.sensor_for_plate(msg.shelf, msg.plate)
        change_end = msg.ts - (sensor.settle_s if sensor else 0.5)
        candidates = []
        for v in self.visits:
            if v.shelf != msg.shelf:
                continue
            end = v.exit_ts if v.exit_ts is not None else msg.ts
            if v.enter_ts <= msg.ts and end >= msg.started_ts - 1.0:
                # the load starts changing while the hand is in, and settles after it left
                inside = v.enter_ts - 0.2 <= msg.started_ts <= end + 0.2
                gap = abs(end - change_end)
                candidates.append((math.exp(-0.5 * (gap / 0.5) ** 2) * (1.0 if inside else 0.2), v))
        if not candidates:
            return None, 0.0, None, 0
        per_shopper: dict[str, float] = {}
        for score, v in candidates:
            per_shopper[v.shopper] = per_shopper.get(v.shopper, 0.0) + score
        _, visit = max(candidates, key=lambda c: (c[0], c[1].enter_ts))
        total = sum(per_shopper.values())
        attribution = per_shopper[visit.shopper] / total if total > 0 else 1.0 / len(per_shopper)
        return visit.shopper, attribution, visit, len(per_shopper)

    def _explain(self, msg: WeightChange, planned: str, held: dict[str, int]) -> tuple[str, int, float, str]:
        """The product and count that best explain a load change: (sku, signed qty, fit 0..1, how)."""
        options = [(planned, 1.0, "")]
        if msg.delta_g > 0:  # something put down: maybe an item that belongs elsewhere
            options += [(s, 0.9, "put back on the wrong plate") for s, n in held.items() if n > 0 and s != planned]
        else:  # something taken: maybe an item someone misplaced here
            options += [(s, 0.9, "a misplaced item taken")
                        for s, n in self.misplaced.get((msg.shelf, msg.plate), {}).items() if n > 0]
        best = (planned, 0, 0.0, "")
        best_score = -1.0
        for sku, prior, how in options:
            unit = self.config.product(sku).unit_weight_g
            units = -msg.delta_g / unit
            qty = int(round(units))
            if qty == 0:
                continue
            if how == "put back on the wrong plate" and -qty > held.get(sku, 0):
                continue
            if how == "a misplaced item taken" and qty > self.misplaced[(msg.shelf, msg.plate)].get(sku, 0):
                continue
            residual_g = abs(units - qty) * unit
            sigma_g = max(msg.noise_g * math.sqrt(2), 1.0) + 0.02 * unit
            fit = math.exp(-0.5 * (residual_g / (2 * sigma_g)) ** 2)
            if fit * prior > best_score:
                best, best_score = (sku, qty, fit, how), fit * prior
        return best

    def expire(self, ts: float) -> None:
        """Forget hand visits that ended (or, never seen to end, began) more than ``memory_s`` ago."""
        self.visits = [v for v in self.visits
                       if (v.exit_ts is None and ts - v.enter_ts <= self.memory_s)
                       or (v.exit_ts is not None and ts - v.exit_ts <= self.memory_s)]
