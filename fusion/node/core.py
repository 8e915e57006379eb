"""The fusion node's core: inputs in order, frames to the floor tracker, sessions, zones and receipts.

The package docstring (:mod:`storesense.fusion.node`) says what happens to each
input; check-ins, appearance and carts are the mixins in :mod:`.checkins`,
:mod:`.looks` and :mod:`.carts`, which work on the state :class:`FusionNode`
sets up here.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from typing import Callable, Iterable, Protocol

from ...cart.decisions import Decision, PickDecider
from ...cart.ledger import CartLedger
from ...config import StoreConfig
from ...contracts import (
    BleSighting,
    CartEvent,
    CheckIn,
    Envelope,
    HandShelfInteraction,
    NodeStatus,
    PersonObservation,
    Receipt,
    ShopperLocation,
    Stamper,
    WeightChange,
    ZoneEvent,
)
from ...geometry.polygons import distance_to_polygon, point_in_polygon, rectangle_interior
from ..appearance import MIN_QUALITY, RunningAppearance, distance
from ..encounters import EncounterBook
from ..identity import Fix, IdentityBook, Session
from ..reorder import ReorderBuffer
from ..tracker import FloorTrack, FloorTracker
from .carts import Carts, _with
from .checkins import CheckIns
from .looks import Looks

log = logging.getLogger(__name__)
_EMPTY = (math.inf, math.inf, -math.inf, -math.inf)  # an open box no point is in
_IN: dict[str, str] = {}  # message type -> its input counter's name


class BlePositioner(Protocol):
    """Turns BLE sightings into position fixes of tags (see :class:`.ble.IpsBle`)."""

    def update(self, sighting: BleSighting) -> list[Fix]:
        """Take one sighting; return the fixes of its tag it completed."""


class FusionNode(CheckIns, Looks, Carts):
    """Fuses edge observations into sessions and carts; see the module docstring."""

    def __init__(
        self,
        config: StoreConfig,
        emit: Callable[[Envelope], None],
        *,
        node_id: str = "fusion",
        run_id: str | None = None,
        location_period_s: float = 0.5,
        reorder_window_s: float = 0.15,
        tracker: FloorTracker | None = None,
        ble: BlePositioner | None | str = "auto",
        checkin_wait_s: float = 8.0,
        entry_margin_m: float = 0.75,
        session_hits: int = 3,
        walk_in_m: float = 1.5,
        lost_close_s: float = 30.0,
        gate_radius_m: float = 0.7,
        gate_margin_m: float = 0.3,
        gate_takeover_s: float = 2.0,
        appearance: bool = True,
        reference_s: float = 8.0,
        reference_quality: float = 0.8,
        reference_clear_m: float = 1.0,
        reference_max: int = 60,
        look_sure_max: float = 0.22,
        persistent_doubt: bool = True,
        look_stranger_min: float = 0.32,
        look_reid_margin: float = 0.1,
        look_own_ok: float = 0.4,
        look_swap_margin: float = 0.15,
        look_hand_margin: float = 0.15,
        late_views: int = 8,
        late_margin: float = 0.06,
        late_swap_margin: float = 0.12,
        encounters: EncounterBook | None = None,
        group_window_s: float = 15.0,
        reach_check: bool = True,
        reach_keep_m: float = 0.45,
        reach_margin_m: float = 0.2,
        orphan_hands: bool = True,
    ):
        self.config = config
        self.emit = emit
        # ids carry the store and the run: unique across restarts (a fresh random run id unless one is
        # given, for a replay or a crash recovery) and across stores
        self.run_id = run_id if run_id is not None else uuid.uuid4().hex
        self.stamper = Stamper(node_id, f"{config.store.id}/{self.run_id}")
        self.tracker = tracker or FloorTracker()
        self.identity = IdentityBook()
        self.decider = PickDecider(config)
        if ble == "auto":  # BLE positioning whenever the store has enough receivers
            from ..ble import IpsBle

            ble = IpsBle(config) if len(config.ble_nodes) >= 3 else None
        self.ble = ble
        self.location_period_s = location_period_s
        self.checkin_wait_s = checkin_wait_s
        self.entry_margin_m = entry_margin_m
        self.session_hits = session_hits
        self.walk_in_m = walk_in_m
        self.lost_close_s = lost_close_s
        self.gate_radius_m = gate_radius_m
        self.gate_margin_m = gate_margin_m
        self.gate_takeover_s = gate_takeover_s
        self.appearance = appearance
        self.reference_s = reference_s
        self.reference_quality = reference_quality
        self.reference_clear_m = reference_clear_m
        self.reference_max = reference_max
        self.look_sure_max = look_sure_max
        self.persistent_doubt = persistent_doubt
        self.look_stranger_min = look_stranger_min
        self.look_reid_margin = look_reid_margin
        self.look_own_ok = look_own_ok
        self.look_swap_margin = look_swap_margin
        self.look_hand_margin = look_hand_margin
        self.late_views = late_views
        self.late_margin = late_margin
        self.late_swap_margin = late_swap_margin
        self.encounters = encounters or EncounterBook()
        self._cam_look: dict[tuple[str, int], RunningAppearance] = {}  # camera track -> its recent colours
        self._track_look: dict[str, RunningAppearance] = {}  # floor track -> its clear colours since it last met anyone
        self._reid_checked = float("-inf")
        self._look_checked = float("-inf")
        self.reorder = ReorderBuffer(reorder_window_s)
        self.counters: Counter[str] = Counter()
        self.now = float("-inf")
        self._frame: tuple[str, int, float] | None = None
        self._frame_obs: list[PersonObservation] = []
        self._pending_checkins: list[CheckIn] = []
        self.group_window_s = group_window_s
        self.reach_check = reach_check
        self.reach_keep_m = reach_keep_m
        self.reach_margin_m = reach_margin_m
        self.orphan_hands = orphan_hands
        self._orphans: dict[str, list] = {}  # floor track without a session -> (decision, ts, nearby) charged to it
        self._groups: dict[str, tuple[int, float]] = {}  # group check-in's tag -> (size, check-in ts)
        self._member_of: dict[str, str] = {}  # member session -> the session that checked the group in
        self._groups_led: set[str] = set()
        self._merge_checked = float("-inf")
        self._retry: dict[str, float] = {}  # track without a session -> when it was last considered
        self._entry = config.zones_of("entry")
        self._exit = config.zones_of("exit")
        self._gates = [g for z in self._entry for g in z.gates]
        self._gate_xy = [(g.position[0], g.position[1]) for g in self._gates]
        # bounding boxes of the zones: a point outside one (by more than rounding) is outside its zone
        self._boxes = {z.id: (min(p[0] for p in z.polygon), min(p[1] for p in z.polygon),
                              max(p[0] for p in z.polygon), max(p[1] for p in z.polygon)) for z in config.zones}
        # each zone (and its id) with its box widened by that rounding margin, as :meth:`_zones` tests every
        # observation, and the open box a point is inside the zone in without the polygon test (a rectangle's, which
        # lies within the widened box; else an empty one)
        self._zone_boxes = [(z, z.id, x0 - 1e-6, y0 - 1e-6, x1 + 1e-6, y1 + 1e-6,
                             rectangle_interior(z.polygon) or _EMPTY)
                            for z in config.zones for x0, y0, x1, y1 in [self._boxes[z.id]]]

    @property
    def sessions(self) -> dict[str, Session]:
        """All sessions by id (open and closed)."""
        return self.identity.sessions

    # ------------------------------------------------------------------ input

    def handle(self, msg: Envelope) -> None:
        """Take one input message (it may be held briefly to restore timestamp order)."""
        kind = msg.type  # type: ignore[attr-defined]
        self.counters[_IN.get(kind) or _IN.setdefault(kind, f"in.{kind}")] += 1  # (the key made once per type)
        if isinstance(msg, NodeStatus):  # edge nodes have no MQTT link: their health reaches the hub through us
            self.counters["out.node_status"] += 1
            self.emit(msg)  # unchanged (its own node, event id and ts), so the hub stores it idempotently
            return
        late_before = self.reorder.late
        due = self.reorder.push(msg)
        if self.reorder.late > late_before:
            self.counters["late_dropped"] += 1
            log.info("dropped %s %s: %.3f s older than what was already fused", msg.type, msg.event_id,  # type: ignore[attr-defined]
                     self.reorder.released_ts - msg.ts)
        for m in due:
            self._process(m)

    def flush(self) -> None:
        """Process everything still held: at the end of input, or when a live input pauses.

        Messages older than what is released afterwards count as late and are dropped.
        """
        for m in self.reorder.flush():
            self._process(m)
        self._end_frame()
        if self.decider.pending:  # load changes held for their neighbours on adjacent plates
            self._apply(self.decider.due(math.inf, self._cart_of), self.now)
            self._stock_changes(self.now)

    def _process(self, msg: Envelope) -> None:
        if msg.ts > self.now:
            self.now = msg.ts
        if isinstance(msg, PersonObservation):
            key = (msg.camera, msg.frame, msg.ts)
            if key != self._frame:
                self._end_frame()
                self._frame = key
            self._frame_obs.append(msg)
            return
        self._end_frame()
        if isinstance(msg, HandShelfInteraction):
            self._interaction(msg)
        elif isinstance(msg, WeightChange):
            self._apply(self.decider.weight(msg, self._cart_of), msg.ts)
            self._stock_changes(msg.ts)
        elif isinstance(msg, CheckIn):
            if msg.gate is not None and not any(g.id == msg.gate for z in self._entry for g in z.gates):
                self.counters["checkins_unknown_gate"] += 1
                log.warning("check-in %s names gate %r, which the store config does not have; matched by its zone",
                            msg.event_id, msg.gate)
                msg = msg.model_copy(update={"gate": None})
            self._pending_checkins.append(msg)
            if msg.group_size > 1:  # a group checked in once: its members join the shopper who did
                self._groups[msg.tag] = (msg.group_size, msg.ts)
            self._match_checkins(msg.ts)
        elif isinstance(msg, BleSighting) and self.ble is not None:
            for fix in self.ble.update(msg):
                self._fix(msg.tag, fix)
        self._housekeeping(msg.ts)

    def _end_frame(self) -> None:
        if self._frame is None:
            return
        camera, _, ts = self._frame
        obs, self._frame, self._frame_obs = self._frame_obs, None, []
        for o, track in self.tracker.update_frame(camera, ts, obs):
            self._track_updated(track, ts)
            if self.appearance and o.appearance is not None and o.appearance.quality >= MIN_QUALITY:
                self._learn_look(camera, o, track, ts)
        self._housekeeping(ts)

    # ------------------------------------------------------------------ appearance

    # ------------------------------------------------------------------ tracks and sessions

    def _track_updated(self, track: FloorTrack, ts: float) -> None:
        if not track.confirmed:
            return
        session = self.identity.session_of(track.id)
        if session is None:
            known = self.identity.by_track.get(track.id)
            if known or track.hits < self.session_hits:
                return  # bound to a closed session, or not seen long enough yet
            at_entry = self._near(track.xy, self._entry) or (known is None and self._near(track.first_xy, self._entry))
            if known == "" and not at_entry and ts - self._retry.get(track.id, -1e18) < 1.0:
                return  # a track without a session (staff, a false positive): look again once a second
            self._retry[track.id] = ts
            # a shopper lost nearby is more likely than a newcomer, unless a check-in waits for one
            session = None if (at_entry and self._pending_checkins) else self.identity.rebind(track, ts)
            if session is not None:
                self.counters["sessions_rebound"] += 1
            elif at_entry:
                walked_in = math.dist(track.xy, track.first_xy) >= self.walk_in_m
                if not (self._pending_checkins or walked_in):
                    return  # at the door: a check-in or walking in makes a shopper (a static false positive never)
                session = self._open(track, ts)
                self._match_checkins(ts)
            else:
                if known is None:
                    self.counters["tracks_without_session"] += 1
                self.identity.by_track[track.id] = ""
                return
        if self._orphans and track.id in self._orphans and not session.closed:
            self._adopt_orphans(session, track.id, ts)
        self._zones(session, track, ts)
        if not session.closed and ts - session.last_location_ts >= self.location_period_s:
            session.last_location_ts = ts
            x, y = track.xy
            vx, vy = track.velocity
            (c00, c01), (c10, c11) = track.cov
            self._out(ShopperLocation, ts, shopper=session.id, track=track.id, x=round(x, 3), y=round(y, 3),
                      cov=((round(c00, 5), round(c01, 5)), (round(c10, 5), round(c11, 5))),
                      vx=round(vx, 3), vy=round(vy, 3), sources=self._sources(track, ts))

    def _open(self, track: FloorTrack, ts: float) -> Session:
        n = len(self.identity.sessions) + 1
        sid = "s-" + uuid.uuid5(uuid.NAMESPACE_OID, f"{self.stamper.run_id}/{n}").hex[:12]
        session = Session(sid, track.id, CartLedger(sid, self.config, opened_ts=ts), opened_ts=ts)
        self.identity.open(session)
        self._out(CartEvent, ts, shopper=sid, phase="new", cart_version=0)
        self._publish_state(session, ts)
        return session

    # ------------------------------------------------------------------ zones and closing

    def _zones(self, session: Session, track: FloorTrack, ts: float) -> None:
        x, y = track.xy
        zones = session.zones
        for zone, zid, x0, y0, x1, y1, (i0, j0, i1, j1) in self._zone_boxes:
            # inside: within the widened box (most zones are not), and inside the rectangle or the polygon
            if x0 <= x <= x1 and y0 <= y <= y1 and (
                    (i0 < x < i1 and j0 < y < j1) or point_in_polygon(x, y, zone.polygon)):
                if zid not in zones:
                    zones[zid] = ts
                    self._out(ZoneEvent, ts, shopper=session.id, zone=zid, phase="enter")
                if zone.kind == "exit" and ts - zones[zid] >= zone.min_dwell_s:
                    self._close(session, ts)
                    return
            elif zid in zones:
                entered = zones.pop(zid)
                self._out(ZoneEvent, ts, shopper=session.id, zone=zid, phase="exit", dwell_s=round(ts - entered, 3))

    def _close(self, session: Session, ts: float, review: str = "") -> None:
        """Close a session: end its cart and emit the receipt (all lines to review when ``review`` says why)."""
        if self.appearance and self.encounters.cluster_of(session.id) is not None:
            # leaving in the middle of a meeting's doubt: decide it now, the leaver may be the other one
            track_id = session.track_id
            self._encounters(ts, leaving={session.id})
            session = self.identity.session_of(track_id) or session
        if self.appearance and session.doubt_since is not None and session.track_id in self.tracker.tracks:
            # a meeting left who this is open: the views up to the exit decide it, if they can
            track_id = session.track_id
            self._late_decision(session, ts)
            session = self.identity.session_of(track_id) or session
        self.encounters.drop(session.id)
        ledger = session.ledger
        if session.tag is None:  # a check-in still undecided between this shopper and others: decide now
            for tag, scores in list(self.identity.pending.items()):
                if session.id in scores and self.identity.decide(tag) is session:
                    self.counters["checkins_decided_at_exit"] += 1
                    break
        alike: list[str] = []
        untagged = session.tag is None and session.id not in self._member_of and any(
            c.quantity for c in ledger.changes.values())
        if untagged:
            # nobody can be billed for this cart: its items were taken by someone no check-in names (or
            # by a checked-in shopper whose session this track's hands were not bound to): a person checks
            alike = self._look_alikes(session)
            review = "; ".join(r for r in (review, "no check-in matched this shopper: nobody to bill") if r)
            if alike:
                review += "; looks most like " + ", ".join(alike)
            self.counters["receipts_untagged_to_review"] += 1
        if review:
            for key, change in list(ledger.changes.items()):
                why, met = review, []
                if untagged:  # whoever this was may be a checked-in shopper whose session lost them in a meeting
                    met = [m for m in self.encounters.met_before(session.id, ledger.decided_ts.get(key, ts))
                           if getattr(self.identity.sessions.get(m), "tag", None)]
                    if met:
                        why += "; met checked-in " + ", ".join(met) + " before this change"
                ledger.changes[key] = change.model_copy(update={
                    "needs_review": True, "reason": f"{change.reason}; {why}",
                    "alternatives": _with(change.alternatives, [*met, *alike], session.id)})
        self.encounters.forget(session.id)
        self.identity.close(session)
        for zone_id, entered in sorted(session.zones.items()):
            self._out(ZoneEvent, ts, shopper=session.id, zone=zone_id, phase="exit", dwell_s=round(ts - entered, 3))
        session.zones.clear()
        self.tracker.remove(session.track_id)  # the shopper left: nobody else may inherit the track
        # a group's cart (group check-in) stays open until its last member has left; the receipt is the group's
        lead_id = self._member_of.get(session.id)
        if lead_id is not None:  # a member left: their picks are on the group's cart
            ledger.closed_ts = ts
            self._out(CartEvent, ts, shopper=session.id, phase="end", cart_version=ledger.version)
            lead = self.identity.sessions[lead_id]
            if lead.closed and not self._group_open(lead_id):
                self._receipt(lead, ts)
            return
        if self._group_open(session.id):
            self.counters["group_receipts_held"] += 1
            return
        self._receipt(session, ts)

    def _look_alikes(self, session: Session, n: int = 3) -> list[str]:
        """The checked-in sessions whose reference looks nearest ``session``'s (at most ``n``; none without looks).

        For the reviewer of a cart nobody can be billed for: its shopper is most
        likely one of them, whose own session followed someone else meanwhile.
        """
        if session.look.n < 8:
            return []
        ranked = sorted((d, s.id) for s in self.identity.sessions.values()
                        if s.tag and s is not session and s.look.n >= 8
                        for d in [distance(session.look.long, s.look.long)] if d is not None)
        return [sid for _, sid in ranked[:n]]

    def _group_open(self, lead_id: str) -> bool:
        """Whether a member of ``lead_id``'s group is still in the store."""
        return any(lead == lead_id and not self.identity.sessions[m].closed for m, lead in self._member_of.items())

    def _receipt(self, session: Session, ts: float) -> None:
        """End a session's cart and emit its receipt."""
        ledger = session.ledger
        ledger.closed_ts = ts
        self._out(CartEvent, ts, shopper=session.id, phase="end", cart_version=ledger.version)
        self._publish_state(session, ts)
        self._out(Receipt, ts, shopper=session.id,
                  receipt_id="r-" + uuid.uuid5(uuid.NAMESPACE_OID, f"{self.stamper.run_id}/{session.id}").hex[:12],
                  lines=tuple(ledger.receipt_lines()), total=ledger.total(), currency=self.config.store.currency,
                  opened_ts=ledger.opened_ts, closed_ts=ts,
                  needs_review=any(c.needs_review for c in ledger.changes.values()))

    # ------------------------------------------------------------------ helpers

    def _merge_duplicates(self, ts: float) -> None:
        for keep, drop in self.tracker.find_duplicates(ts):
            if keep.id not in self.tracker.tracks or drop.id not in self.tracker.tracks:
                continue  # one of them was already folded into a third track this round
            s_keep, s_drop = self.identity.session_of(keep.id), self.identity.session_of(drop.id)
            if s_keep is not None and s_drop is not None and (
                    (s_keep.tag and s_drop.tag) or abs(s_keep.opened_ts - s_drop.opened_ts) > 1.0):
                continue  # two checked-in shoppers, or two who entered apart: people walking together
            self.counters["tracks_merged"] += 1
            self.tracker.merge(keep, drop)
            if drop.id in self._orphans:  # what the dropped track was charged, the kept one was
                self._orphans.setdefault(keep.id, []).extend(self._orphans.pop(drop.id))
            self.identity.by_track.pop(drop.id, None)
            if s_drop is None:
                continue
            if s_keep is None:
                s_drop.track_id = keep.id
                self.identity.by_track[keep.id] = s_drop.id
                continue
            # one shopper got two sessions: keep the first, move the other's cart over and void it
            first, second = sorted((s_keep, s_drop), key=lambda s: (s.opened_ts, s.id))
            first.track_id = keep.id
            self.identity.by_track[keep.id] = first.id
            if second.tag and not first.tag:
                self.identity.attach_tag(first, second.tag, ts)
            moved = [Decision(first.id, key, change) for key, change in second.ledger.changes.items()]
            self._void(second, ts)
            self._apply(moved, ts)
            self.counters["sessions_merged"] += 1

    def _adopt_members(self, ts: float) -> None:
        """Give each checked-in group its members: untagged shoppers who came in with the one who checked in.

        Once the group's tag is bound to a session, the untagged open sessions
        opened within ``group_window_s`` of the check-in (first come first)
        fill the group's places; a member's cart changes so far move to the
        group's cart, and later ones go there.
        """
        for tag, (size, checkin_ts) in list(self._groups.items()):
            lead = self.identity.session_of_tag(tag)
            if ts - checkin_ts > 2 * self.group_window_s:
                del self._groups[tag]
            if lead is None or lead.closed:
                continue
            places = size - 1 - sum(1 for m, l in self._member_of.items() if l == lead.id)
            if places <= 0:
                del self._groups[tag]
                continue
            cands = sorted((s for s in self.identity.open_sessions.values()
                            if not s.closed and s.tag is None and s is not lead and s.id not in self._member_of
                            and s.id not in self._groups_led and abs(s.opened_ts - checkin_ts) <= self.group_window_s
                            and not any(s.id in scores for scores in self.identity.pending.values())),
                           key=lambda s: (abs(s.opened_ts - checkin_ts), s.id))
            for member in cands[:places]:
                self._member_of[member.id] = lead.id
                self._groups_led.add(lead.id)
                self.counters["group_members"] += 1
                moved = [Decision(lead.id, key, change) for key, change in member.ledger.changes.items()]
                member.ledger.changes.clear()
                self._apply(moved, ts)
                if moved:
                    self._publish_state(member, ts)

    def _void(self, session: Session, ts: float) -> None:
        """Close a session that turned out to duplicate another, without a receipt."""
        self.encounters.drop(session.id)
        self.encounters.forget(session.id)
        self.identity.close(session)
        session.ledger.changes.clear()
        session.ledger.closed_ts = ts
        self._out(CartEvent, ts, shopper=session.id, phase="end", cart_version=0)
        self._publish_state(session, ts)
        lead_id = self._member_of.get(session.id)
        if lead_id is not None and self.identity.sessions[lead_id].closed and not self._group_open(lead_id):
            self._receipt(self.identity.sessions[lead_id], ts)  # the group's last member is gone

    def _housekeeping(self, ts: float) -> None:
        if self.decider.pending:  # load changes held for their neighbours on adjacent plates, now due
            self._apply(self.decider.due(ts, self._cart_of), ts)
            self._stock_changes(ts)
        if ts - self._merge_checked >= 0.2:
            self._merge_checked = ts
            self._merge_duplicates(ts)
            if self._groups:
                self._adopt_members(ts)
            if self._pending_checkins:  # a check-in waiting for its shopper: look again (not only when someone comes)
                self._match_checkins(ts)
            if self._orphans:
                self._drop_orphans(ts)
        if self.appearance and ts - self._look_checked >= 0.2:
            self._look_checked = ts
            self._encounters(ts)
            if len(self._cam_look) > 512:  # camera tracks not seen for 10 s are gone
                self._cam_look = {k: v for k, v in self._cam_look.items() if ts - v.ts < 10.0}
        due = self.tracker.prune_due(ts)  # (if not, prune would return at once: nothing to gather or call)
        kept = {s.track_id for s in self.identity.open_sessions.values() if s.fixes} if due else ()
        for track in self.tracker.prune(ts, kept_alive=kept) if due else ():
            session = self.identity.lost(track)
            if session is None:
                continue
            self.counters["sessions_lost_track"] += 1
            if self._near(track.xy, self._exit, margin=1.5):
                # lost on the way out, where the cameras end: the shopper left
                self.counters["sessions_closed_at_exit_loss"] += 1
                self._close(session, ts)
        lost_close_s = self.lost_close_s
        # those lost too long ago (most calls: none); closing one may close others, so each is checked again
        overdue = [s for s in self.identity.open_sessions.values()
                   if s.lost_at is not None and ts - s.lost_at[0] > lost_close_s]
        for session in overdue:
            if not session.closed and session.lost_at is not None and ts - session.lost_at[0] > lost_close_s:
                if session.ledger.changes or session.tag is not None:
                    # nobody saw this shopper leave: close the cart, its lines go to review (a checked-in
                    # shopper gets a receipt even when it is empty: their visit ends, and items charged
                    # elsewhere that name them can still reach them)
                    self.counters["sessions_closed_lost"] += 1
                    self._close(session, ts, review=f"track lost {ts - session.lost_at[0]:.0f} s before closing")
                else:
                    self.counters["sessions_voided_lost"] += 1  # nobody checked in, nothing bought: drop it
                    self._void(session, ts)
        self.decider.expire(ts)

    @staticmethod
    def _sources(track: FloorTrack, ts: float) -> tuple[str, ...]:
        """What positioned the track lately: the cameras of the last second, and "ble"."""
        cams = sorted(cam for cam, (_, t) in track.seen_by.items() if ts - t <= 1.0)
        return tuple(cams + (["ble"] if ts - track.last_fix_ts <= 2.0 else []))

    def _near(self, xy: tuple[float, float], zones, margin: float | None = None) -> bool:
        """Inside one of ``zones`` or within ``margin`` (default ``entry_margin_m``) of it."""
        m = self.entry_margin_m if margin is None else margin
        x, y = xy
        for z in zones:
            x0, y0, x1, y1 = self._boxes[z.id]
            if math.hypot(max(x0 - x, 0.0, x - x1), max(y0 - y, 0.0, y - y1)) > m + 1e-6:
                continue  # farther than the margin from the zone's box, so from the zone
            if distance_to_polygon(x, y, z.polygon) <= m:
                return True
        return False

    def _out(self, cls, ts: float, **fields) -> None:
        msg = self.stamper.make(cls, ts, **fields)
        self.counters[f"out.{msg.type}"] += 1  # type: ignore[attr-defined]
        self.emit(msg)


def run(node: FusionNode, source: Iterable[Envelope]) -> None:
    """Feed every message of ``source`` (simulator, recording or live stream) to ``node``, then flush."""
    for msg in source:
        node.handle(msg)
    node.flush()

