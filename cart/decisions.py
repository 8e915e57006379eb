"""Pick and put-back decisions from hand events, shelf weight and the planogram.

:class:`PickDecider` keeps each shopper's hand visits to shelves (hand enter to
hand exit). A settled weight change on a plate is attributed to the shopper
whose hand was in that shelf when the load changed; its sign says pick or
put-back, its size divided by the product's unit weight says how many. The
decision's confidence combines how well the weight fits a whole number of items
with how clearly one shopper was reaching. Shelves without load cells are
decided from the hand events alone, at lower confidence. Anything below
``review_below`` is flagged for review with its evidence, never silently guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..config import StoreConfig
from ..contracts import CartChange, HandShelfInteraction, WeightChange

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
        self._weighed = {ws.shelf for ws in config.weight_sensors}

    def hand(self, shopper: str, msg: HandShelfInteraction, in_cart: dict[str, int]) -> list[Decision]:
        """Record a hand event of ``shopper``; decides hands-only shelves on exit."""
        if msg.phase == "enter":
            self.visits.append(HandVisit(shopper, msg.shelf, msg.ts, None, msg.keypoint_score, [msg.event_id]))
            return []
        visit = next(
            (v for v in reversed(self.visits) if v.shopper == shopper and v.shelf == msg.shelf and v.exit_ts is None),
            None,
        )
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

    def weight(self, msg: WeightChange) -> list[Decision]:
        """Decide what a settled weight change means and whose cart it belongs to."""
        try:
            plate = self.config.plate(msg.shelf, msg.plate)
        except KeyError:
            return []
        product = self.config.product(plate.sku)
        units = -msg.delta_g / product.unit_weight_g
        qty = int(round(units))
        if qty == 0:
            return []  # less than half an item: noise or a nudge
        residual_g = abs(units - qty) * product.unit_weight_g
        sigma_g = max(msg.noise_g * math.sqrt(2), 1.0) + 0.02 * product.unit_weight_g
        weight_conf = math.exp(-0.5 * (residual_g / (2 * sigma_g)) ** 2)

        sensor = self.config.sensor_for_plate(msg.shelf, msg.plate)
        settle = sensor.settle_s if sensor else 0.5
        change_end = msg.ts - settle
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
        reason = f"{'picked' if qty > 0 else 'put back'} {abs(qty)} × {plate.sku}: {msg.delta_g:+.0f} g on {msg.plate}"
        if not candidates:
            change = CartChange(sku=plate.sku, quantity=qty, confidence=0.0, needs_review=True, shelf=msg.shelf,
                                plate=msg.plate, evidence=(msg.event_id,), reason=reason + "; no hand seen")
            return [Decision(None, msg.event_id, change)]
        per_shopper: dict[str, float] = {}
        for score, v in candidates:
            per_shopper[v.shopper] = per_shopper.get(v.shopper, 0.0) + score
        score, visit = max(candidates, key=lambda c: (c[0], c[1].enter_ts))
        total = sum(per_shopper.values())
        attribution = per_shopper[visit.shopper] / total if total > 0 else 1.0 / len(per_shopper)
        confidence = weight_conf * attribution
        if len(per_shopper) > 1:
            reason += f"; {len(per_shopper)} shoppers reaching into the shelf"
        change = CartChange(sku=plate.sku, quantity=qty, confidence=round(confidence, 3),
                            needs_review=confidence < self.review_below, shelf=msg.shelf, plate=msg.plate,
                            evidence=(msg.event_id, *visit.evidence), reason=reason)
        return [Decision(visit.shopper, msg.event_id, change)]

    def expire(self, ts: float) -> None:
        """Forget hand visits that ended (or, never seen to end, began) more than ``memory_s`` ago."""
        self.visits = [v for v in self.visits
                       if (v.exit_ts is None and ts - v.enter_ts <= self.memory_s)
                       or (v.exit_ts is not None and ts - v.exit_ts <= self.memory_s)]
