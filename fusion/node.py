"""The fusion node: edge messages in, shopper locations, zone events and carts out.

:class:`FusionNode` is transport-free: feed it messages with :meth:`handle`
(from ZeroMQ, a recording or the generator: see :func:`run`) and it calls
``emit`` with every message it produces. Outputs depend only on the input
sequence, so replaying a recording gives byte-identical outputs.

What happens to each input:

- ``person_observation`` -> floor tracker; a confirmed track born in an entry
  zone opens a shopper session and its cart (``cart_event`` new); standing in an
  exit zone closes it and emits the ``receipt``;
- ``hand_shelf_interaction`` -> attributed to the session whose floor track the
  camera's track id is bound to, then to the pick decider;
- ``weight_change`` -> pick/put-back decision -> ``cart_event`` update and the
  retained ``cart_state``;
- ``ble_sighting`` and ``node_status`` are counted (BLE positioning lands with
  the IPS issue).
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..cart.decisions import Decision, PickDecider
from ..cart.ledger import CartLedger
from ..config import StoreConfig, point_in_polygon
from ..contracts import (
    CartEvent,
    CartState,
    Envelope,
    HandShelfInteraction,
    PersonObservation,
    Receipt,
    ShopperLocation,
    Stamper,
    WeightChange,
    ZoneEvent,
)
from .tracker import FloorTrack, FloorTracker

log = logging.getLogger(__name__)


@dataclass
class Session:
    """A shopper's visit: bound to one floor track, owning one cart."""

    id: str
    track_id: str
    ledger: CartLedger
    zones: dict[str, float] = field(default_factory=dict)  # zone id -> entered ts
    last_location_ts: float = -1e18
    closed: bool = False
    lost_at: tuple[float, float, float] | None = None  # (ts, x, y) when its track was lost


class FusionNode:
    """Fuses edge observations into sessions and carts; see the module docstring."""

    def __init__(
        self,
        config: StoreConfig,
        emit: Callable[[Envelope], None],
        *,
        node_id: str = "fusion",
        run_id: str | None = None,
        location_period_s: float = 0.5,
        tracker: FloorTracker | None = None,
    ):
        self.config = config
        self.emit = emit
        self.stamper = Stamper(node_id, run_id)
        self.tracker = tracker or FloorTracker()
        self.decider = PickDecider(config)
        self.location_period_s = location_period_s
        self.sessions: dict[str, Session] = {}  # session id -> session
        self.by_track: dict[str, str] = {}  # floor track id -> session id
        self.counters: Counter[str] = Counter()
        self.now = float("-inf")

    # ------------------------------------------------------------------ input

    def handle(self, msg: Envelope) -> None:
        """Process one input message."""
        self.counters[f"in.{msg.type}"] += 1  # type: ignore[attr-defined]
        if msg.ts > self.now:
            self.now = msg.ts
        if isinstance(msg, PersonObservation):
            self._observation(msg)
        elif isinstance(msg, HandShelfInteraction):
            self._interaction(msg)
        elif isinstance(msg, WeightChange):
            self._apply(self.decider.weight(msg), msg.ts)
        self._housekeeping(msg.ts)

    def _observation(self, msg: PersonObservation) -> None:
        track = self.tracker.update(msg)
        if track is None or not track.confirmed:
            return
        sid = self.by_track.get(track.id)
        if sid is None:
            if self._in_kind(track.first_xy, "entry"):
                sid = self._open(track, msg.ts)
            else:
                sid = self._rebind(track, msg.ts)
                if not sid:
                    self.counters["tracks_outside_entry"] += 1
                    self.by_track[track.id] = ""  # a track not born at the entry and no lost session near
                    return
        if not sid:
            return
        session = self.sessions[sid]
        if session.closed:
            return
        self._zones(session, track, msg.ts)
        if msg.ts - session.last_location_ts >= self.location_period_s and not session.closed:
            session.last_location_ts = msg.ts
            x, y = track.xy
            vx, vy = track.velocity
            self._out(ShopperLocation, msg.ts, shopper=sid, track=track.id, x=round(x, 3), y=round(y, 3),
                      cov=tuple(tuple(round(v, 5) for v in row) for row in track.cov),
                      vx=round(vx, 3), vy=round(vy, 3), sources=tuple(sorted(track.cameras)))

    def _interaction(self, msg: HandShelfInteraction) -> None:
        track = self.tracker.track_for(msg.camera, msg.track_id)
        sid = self.by_track.get(track.id) if track else None
        if not sid or self.sessions[sid].closed:
            self.counters["interactions_unattributed"] += 1
            log.info("hand event %s from %s track %s has no open session", msg.event_id, msg.camera, msg.track_id)
            return
        self._apply(self.decider.hand(sid, msg, self.sessions[sid].ledger.quantities()), msg.ts)

    # ------------------------------------------------------------------ sessions

    def _open(self, track: FloorTrack, ts: float) -> str:
        n = len(self.sessions) + 1
        sid = "s-" + uuid.uuid5(uuid.NAMESPACE_OID, f"{self.stamper.run_id}/{n}").hex[:12]
        ledger = CartLedger(sid, self.config, opened_ts=ts)
        self.sessions[sid] = Session(sid, track.id, ledger)
        self.by_track[track.id] = sid
        self._out(CartEvent, ts, shopper=sid, phase="new", cart_version=0)
        self._publish_state(self.sessions[sid], ts)
        return sid

    def _rebind(self, track: FloorTrack, ts: float, max_gap_s: float = 15.0, walk_speed: float = 1.5) -> str:
        """Give a lost session back its shopper: the nearest session lost recently and reachable."""
        best, best_d = "", float("inf")
        x, y = track.first_xy
        for s in self.sessions.values():
            if s.closed or s.lost_at is None or not (0 <= track.born_ts - s.lost_at[0] <= max_gap_s):
                continue
            d = ((x - s.lost_at[1]) ** 2 + (y - s.lost_at[2]) ** 2) ** 0.5
            if d <= 1.0 + walk_speed * (track.born_ts - s.lost_at[0]) and d < best_d:
                best, best_d = s.id, d
        if best:
            session = self.sessions[best]
            session.track_id, session.lost_at = track.id, None
            self.by_track[track.id] = best
            self.counters["sessions_rebound"] += 1
        return best

    def _zones(self, session: Session, track: FloorTrack, ts: float) -> None:
        x, y = track.xy
        for zone in self.config.zones:
            inside = point_in_polygon(x, y, zone.polygon)
            was = zone.id in session.zones
            if inside and not was:
                session.zones[zone.id] = ts
                self._out(ZoneEvent, ts, shopper=session.id, zone=zone.id, phase="enter")
            elif not inside and was:
                entered = session.zones.pop(zone.id)
                self._out(ZoneEvent, ts, shopper=session.id, zone=zone.id, phase="exit",
                          dwell_s=round(ts - entered, 3))
            if inside and zone.kind == "exit" and ts - session.zones[zone.id] >= zone.min_dwell_s:
                self._close(session, ts)
                return

    def _close(self, session: Session, ts: float) -> None:
        ledger = session.ledger
        session.closed = True
        for zone_id, entered in sorted(session.zones.items()):
            self._out(ZoneEvent, ts, shopper=session.id, zone=zone_id, phase="exit", dwell_s=round(ts - entered, 3))
        session.zones.clear()
        ledger.closed_ts = ts
        self._out(CartEvent, ts, shopper=session.id, phase="end", cart_version=ledger.version)
        self._publish_state(session, ts)
        lines = ledger.receipt_lines()
        self._out(Receipt, ts, shopper=session.id,
                  receipt_id="r-" + uuid.uuid5(uuid.NAMESPACE_OID, f"{self.stamper.run_id}/{session.id}").hex[:12],
                  lines=tuple(lines), total=ledger.total(), currency=self.config.store.currency,
                  opened_ts=ledger.opened_ts, closed_ts=ts, needs_review=any(l.needs_review for l in ledger.lines()))

    def _apply(self, decisions: list[Decision], ts: float) -> None:
        for d in decisions:
            if d.shopper is None:
                self.counters["weight_changes_unattributed"] += 1
                log.warning("unattributed shelf change: %s", d.change.reason)
                continue
            session = self.sessions[d.shopper]
            if session.closed or not session.ledger.apply(d.key, d.change):
                self.counters["changes_dropped"] += 1
                continue
            self._out(CartEvent, ts, shopper=session.id, phase="update", change=d.change,
                      cart_version=session.ledger.version)
            self._publish_state(session, ts)

    def _publish_state(self, session: Session, ts: float) -> None:
        ledger = session.ledger
        self._out(CartState, ts, shopper=session.id, status="closed" if session.closed else "open",
                  lines=tuple(ledger.lines()), total=ledger.total(), cart_version=ledger.version)

    # ------------------------------------------------------------------ helpers

    def _housekeeping(self, ts: float) -> None:
        for track in self.tracker.prune(ts):
            sid = self.by_track.pop(track.id, None)
            if sid and not self.sessions[sid].closed:
                self.counters["sessions_lost_track"] += 1
                self.sessions[sid].lost_at = (track.last_ts, *track.xy)
                log.info("session %s lost its floor track %s; waiting to re-bind it", sid, track.id)
        self.decider.expire(ts)

    def _in_kind(self, xy: tuple[float, float], kind: str) -> bool:
        return any(point_in_polygon(xy[0], xy[1], z.polygon) for z in self.config.zones_of(kind))

    def _out(self, cls, ts: float, **fields) -> None:
        msg = self.stamper.make(cls, ts, **fields)
        self.counters[f"out.{msg.type}"] += 1  # type: ignore[attr-defined]
        self.emit(msg)


def run(node: FusionNode, source: Iterable[Envelope]) -> None:
    """Feed every message of ``source`` (generator, recording or live stream) to ``node``."""
    for msg in source:
        node.handle(msg)
