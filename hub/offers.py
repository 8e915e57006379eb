"""Zone offers: entering or dwelling in a zone sends an offer to the shopper's app topic.

Rules come from the store config (``hub.offers``). The engine listens to the
hub store: a stored ``zone_event`` *enter* fires the zone's enter rules; a
dwell rule fires once the shopper has been inside the zone for its
``min_dwell_s``, judged from a ``zone_event`` *dwell* or from any later
position or zone event of that shopper while the visit lasts (so it works
whether or not the fusion node sends dwell events). Caps are kept in the
database: each rule at most ``max_per_shopper`` times per session and not
again within ``cooldown_s``, at most ``hub.max_offers_per_shopper`` offers of
any kind per session, none at all after the shopper opted out, and at most one
per rule per zone visit. Offers are delivered at most once: the offer is
recorded before it is published.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from ..config import OfferRule, StoreConfig
from ..contracts import CartEvent, Envelope, Offer, ShopperLocation, Stamper, ZoneEvent
from .store import HubChange, HubStore

log = logging.getLogger(__name__)


class OfferEngine:
    """Evaluates the zone offer rules on every stored zone event and position."""

    def __init__(self, config: StoreConfig, store: HubStore, publish: Callable[[Envelope], None] | None = None,
                 stamper: Stamper | None = None):
        self.config = config
        self.store = store
        self.publish = publish
        self.stamper = stamper or Stamper("hub-offers")
        self.rules: dict[str, list[OfferRule]] = {}
        for rule in config.hub.offers:
            self.rules.setdefault(rule.zone, []).append(rule)
        self.sent: deque[Offer] = deque(maxlen=1000)  # the latest offers, for inspection
        self._lock = threading.Lock()
        # shopper -> zone -> (enter ts, enter event id) for visits in progress
        self._inside: dict[str, dict[str, tuple[float, str]]] = {}
        for s, z, ts, eid in store.zone_presence():
            self._inside.setdefault(s, {})[z] = (ts, eid)

    def attach(self) -> OfferEngine:
        """Start listening to the store."""
        self.store.add_listener(self._on_change)
        return self

    def detach(self) -> None:
        """Stop listening."""
        self.store.remove_listener(self._on_change)

    def _on_change(self, change: HubChange) -> None:
        if change.kind == "message" and change.msg is not None and self.rules:
            self.handle(change.msg)

    def handle(self, msg: Envelope) -> list[Offer]:
        """Evaluate the rules for one stored message; returns the offers sent."""
        out: list[Offer] = []
        with self._lock:
            if isinstance(msg, ZoneEvent):
                visits = self._inside.setdefault(msg.shopper, {})
                if msg.phase == "enter":
                    visits[msg.zone] = (msg.ts, msg.event_id)
                    for rule in self.rules.get(msg.zone, ()):
                        if rule.trigger == "enter":
                            out += self._fire(rule, msg.shopper, msg.event_id, msg.event_id, msg.ts)
                elif msg.phase == "dwell":
                    visit = visits.setdefault(msg.zone, (msg.ts - msg.dwell_s, msg.event_id))
                    for rule in self.rules.get(msg.zone, ()):
                        if rule.trigger == "dwell" and msg.dwell_s >= rule.min_dwell_s:
                            out += self._fire(rule, msg.shopper, visit[1], msg.event_id, msg.ts)
                else:
                    visits.pop(msg.zone, None)
                out += self._dwell(msg.shopper, msg.ts, msg.event_id, skip_zone=msg.zone)
            elif isinstance(msg, ShopperLocation):
                out += self._dwell(msg.shopper, msg.ts, msg.event_id)
            elif isinstance(msg, CartEvent) and msg.phase == "end":
                self._inside.pop(msg.shopper, None)
        return out

    def _dwell(self, shopper: str, ts: float, event_id: str, skip_zone: str | None = None) -> list[Offer]:
        out: list[Offer] = []
        for zone, (entered, visit) in list(self._inside.get(shopper, {}).items()):
            if zone == skip_zone:
                continue
            for rule in self.rules.get(zone, ()):
                if rule.trigger == "dwell" and ts - entered >= rule.min_dwell_s:
                    out += self._fire(rule, shopper, visit, event_id, ts)
        return out

    def _fire(self, rule: OfferRule, shopper: str, visit: str, trigger: str, ts: float) -> list[Offer]:
        if not self.store.record_offer(shopper, rule.id, visit, trigger, ts, max_per_shopper=rule.max_per_shopper,
                                       cooldown_s=rule.cooldown_s, max_total=self.config.hub.max_offers_per_shopper):
            return []
        offer: Offer = self.stamper.make(Offer, ts, shopper=shopper, offer=rule.id, zone=rule.zone,  # type: ignore[assignment]
                                         title=rule.title, text=rule.text, trigger=trigger)
        self.sent.append(offer)
        if self.publish is not None:
            try:
                self.publish(offer)
            except Exception:  # noqa: BLE001 - an offer lost to a broker problem must not stop the ingest
                log.exception("could not publish offer %s to %s", rule.id, shopper)
        return [offer]
