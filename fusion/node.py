"""The fusion node: edge messages in, shopper locations, zone events and carts out.

:class:`FusionNode` is transport-free: feed it messages with :meth:`handle`
(from ZeroMQ, a recording or the simulator: see :func:`run`) and it calls
``emit`` with every message it produces. Inputs pass through a
:class:`~storesense.fusion.reorder.ReorderBuffer` (bounded out-of-order window;
later messages are counted and dropped), so outputs depend only on the input
messages and a replay gives byte-identical outputs.

What happens to each input:

- ``person_observation``: grouped per camera frame, associated with the floor
  tracks (:mod:`.tracker`); a confirmed track at an entry zone opens a session
  and its cart (``cart_event`` new) when a check-in waits for it or when it
  walks in (a false positive standing at the door never does); a lost
  session is re-bound to the new track that fits it; a session standing in an
  exit zone is closed and gets its ``receipt``;
- ``check_in``: gives its shopper's tag to the shopper standing at its gate
  (stores whose entry zones have gates), otherwise to the session in that entry
  zone (several there: BLE decides);
- ``ble_sighting``: through the BLE positioner (``storesense.ips`` by default,
  when the store has three or more BLE nodes) into a fix for the tag,
  which keeps the session's track alive through occlusion, re-binds a lost
  session, and reveals swapped tracks (:mod:`.identity`);
- ``hand_shelf_interaction``: attributed to the session whose floor track the
  camera's track id is bound to, then to the pick decider;
- ``weight_change``: pick/put-back decision -> ``cart_event`` update and the
  retained ``cart_state``.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from typing import Callable, Iterable, Protocol

from ..cart.decisions import Decision, PickDecider
from ..cart.ledger import CartLedger
from ..config import StoreConfig
from ..geometry.polygons import distance_to_polygon, point_in_polygon
from ..contracts import (
    BleSighting,
    CartEvent,
    CartState,
    CheckIn,
    Envelope,
    HandShelfInteraction,
    NodeStatus,
    PersonObservation,
    Receipt,
    NearbyShopper,
    ShelfEvent,
    ShopperLocation,
    Stamper,
    WeightChange,
    ZoneEvent,
)
from .appearance import MIN_QUALITY, RunningAppearance, distance, unit
from .encounters import Decision as Verdict
from .encounters import EncounterBook
from .identity import Fix, IdentityBook, Session
from .reorder import ReorderBuffer
from .tracker import FloorTrack, FloorTracker

log = logging.getLogger(__name__)

#: a shopper standing this near a shelf could have reached into it (alternatives for a change of an unseen hand)
UNSEEN_NEAR_M = 1.5


class BlePositioner(Protocol):
    """Turns BLE sightings into position fixes of tags (see :class:`.ble.IpsBle`)."""

    def update(self, sighting: BleSighting) -> list[Fix]:
        """Take one sighting; return the fixes of its tag it completed."""


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
            from .ble import IpsBle

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
        # each zone with its box widened by that rounding margin, as :meth:`_zones` tests every observation
        self._zone_boxes = [(z, x0 - 1e-6, y0 - 1e-6, x1 + 1e-6, y1 + 1e-6)
                            for z in config.zones for x0, y0, x1, y1 in [self._boxes[z.id]]]

    @property
    def sessions(self) -> dict[str, Session]:
        """All sessions by id (open and closed)."""
        return self.identity.sessions

    # ------------------------------------------------------------------ input

    def handle(self, msg: Envelope) -> None:
        """Take one input message (it may be held briefly to restore timestamp order)."""
        self.counters[f"in.{msg.type}"] += 1  # type: ignore[attr-defined]
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

    def _learn_look(self, camera: str, obs: PersonObservation, track: FloorTrack, ts: float) -> None:
        """Remember how a camera track looks now, and a new session's reference while it is alone."""
        vec = unit(obs.appearance)
        key = (camera, obs.track_id)
        look = self._cam_look.get(key)
        if look is None:
            look = self._cam_look[key] = RunningAppearance()
        look.add(vec, ts, long_weight=None)  # only its recent colours are read (_hand_owner)
        if obs.appearance.quality < self.reference_quality:
            return  # partly hidden by someone: their colours may be mixed in
        near2 = self._nearest2(track, ts)  # squared distance to the nearest other live track
        clear = near2 >= self.encounters.clear_m ** 2
        if clear:  # how this floor track looks since it last met anyone
            tl = self._track_look.get(track.id)
            if tl is None:
                tl = self._track_look[track.id] = RunningAppearance()
            tl.add(vec, ts, long_weight=1.0 / 25, recent_weight=None)  # its long memory is read
        session = self.identity.session_of(track.id)
        if session is None:
            return
        self.encounters.observe(session.id, vec, ts, clear)
        if session.look_frozen:
            return  # a meeting left who this is open: its reference must not learn someone else
        if self._at_gate(track) and session.look.n < self.reference_max and near2 >= 0.5 ** 2:
            # standing at a gate, where the check-in ties the tag to this very track: the surest view there is
            session.look.add(vec, ts, long_weight=0.0, recent_weight=None)  # a reference: its long memory is read
            return
        if (near2 < self.reference_clear_m ** 2 or not self.encounters.sure(session.id)
                or session.look.n >= self.reference_max):
            return  # someone right next to them, or a meeting not yet decided: which one is which is unsure
        if ts - session.opened_ts > self.reference_s:
            return  # later views may be of someone the track swapped to: the reference is what the entry saw
        session.look.add(vec, ts, long_weight=0.0, recent_weight=None)

    def _anchor_look(self, session: Session, track: FloorTrack) -> None:
        """The check-in at a gate ties the tag to the track standing there: who this is starts afresh from it.

        Whatever the session learnt before (in the queue, where tracks swap) is
        dropped; the reference starts from the track's clear views since it
        last met anyone, and any doubt from meetings in the queue is settled.
        """
        session.look = RunningAppearance()
        own = self._track_look.get(track.id)
        if own is not None and own.long is not None:
            for _ in range(min(own.n, 8)):  # its mean, weighted as the views it was made of (at most 8)
                session.look.add(own.long, track.ts, long_weight=0.0, recent_weight=None)
        session.look_frozen = False
        session.doubt_since = None
        session.doubt_with.clear()
        session.sure_ts = track.ts

    def _at_gate(self, track: FloorTrack) -> bool:
        """Whether a track stands at one of the entry gates (within ``gate_radius_m``)."""
        x, y = track.xy
        r2 = self.gate_radius_m * self.gate_radius_m
        for gx, gy in self._gate_xy:
            if (x - gx) ** 2 + (y - gy) ** 2 <= r2:
                return True
        return False

    def _nearest2(self, track: FloorTrack, ts: float) -> float:
        """Squared distance from ``track`` to the nearest other live (confirmed, seen lately) track; inf if none."""
        x, y = track.xy
        best = math.inf
        for other in self.tracker.tracks.values():  # once per observation: kept to plain attribute reads
            if other.confirmed and ts - other.last_camera_ts < 0.5 and other is not track:
                ox, oy = other.filter.position()
                d2 = (ox - x) ** 2 + (oy - y) ** 2
                if d2 < best:
                    best = d2
        return best

    def _look_fit(self, session: Session, look) -> float | None:
        """Distance of a session's reference appearance from a track's recent one (None: unknown)."""
        if session.look.n < 8 or look is None:
            return None
        return distance(session.look.long, look)

    def _encounters(self, ts: float, leaving: set[str] = frozenset()) -> None:
        """Record where open sessions' tracks meet; act on the meetings appearance has decided."""
        positions, refs = {}, {}
        for s in self.identity.open_sessions.values():
            if s.closed or s.lost_at is not None:
                continue
            t = self.tracker.tracks.get(s.track_id)
            if t is not None:  # coasting tracks too: one that coasted into someone else swaps as easily
                positions[s.id] = t.xy
                refs[s.id] = s.look
        self.encounters.meet(positions, ts)
        live = sorted((*t.filter.position(), t.id) for t in self.tracker.tracks.values() if t.confirmed)
        meet_m = self.encounters.meet_m
        m2 = meet_m ** 2
        for i, (ax, ay, a) in enumerate(live):  # a track that meets anyone may come out as someone else
            for bx, by, b in live[i + 1:]:
                if bx - ax >= meet_m:
                    break  # sorted by x: the rest are farther still
                if (ax - bx) ** 2 + (ay - by) ** 2 < m2:
                    self._track_look.pop(a, None)
                    self._track_look.pop(b, None)
        for verdict in self.encounters.due(refs, ts, leaving):
            self._verdict(verdict, ts)
        if ts - self._reid_checked >= 0.5:
            self._reid_checked = ts
            self._reidentify(ts)

    def _reidentify(self, ts: float) -> None:
        """Give a session whose track clearly looks like someone else the track that looks like it.

        A session is *sure* while its track's clear look since the track last met
        anyone fits its reference (within ``look_sure_max``); it is a *stranger*
        when that look is farther than ``look_stranger_min``: the shopper was
        lost in some meeting. A stranger takes the live track that fits its
        reference best (within ``look_sure_max``, by ``look_reid_margin`` over
        the next), unless that track's own session is sure of it. The changes
        the stranger made since it was last sure go with its old track to the
        session that gets it (or to review); the changes made on the taken track
        since its session was last sure come along. Sessions left in doubt by a
        meeting are decided late when their views allow (:meth:`_late_decision`).
        """
        enc = self.encounters
        sessions = [s for s in self.identity.open_sessions.values()
                    if not s.closed and s.lost_at is None and s.look.n >= 8 and s.track_id in self.tracker.tracks]
        fit: dict[str, float] = {}
        for s in sessions:
            tl = self._track_look.get(s.track_id)
            if tl is None or tl.n < enc.min_post:
                continue
            d = distance(s.look.long, tl.long)
            if d is None:
                continue
            fit[s.id] = d
            if d <= self.look_sure_max:
                s.sure_ts = ts
        for s in sessions:
            # a meeting nothing decided then: do the views since decide it? (a swap re-binds: one per round)
            if s.doubt_since is not None and self._late_decision(s, ts):
                return
        looks = {tid: tl for tid, tl in self._track_look.items() if tl.n >= enc.min_post and tid in self.tracker.tracks}
        for s in sessions:
            if fit.get(s.id, 0.0) <= self.look_stranger_min or enc.cluster_of(s.id) is not None:
                continue
            ranked = sorted((d, tid) for tid, tl in looks.items() if tid != s.track_id
                            for d in [distance(s.look.long, tl.long)] if d is not None)
            if not ranked or ranked[0][0] > self.look_sure_max:
                continue
            if len(ranked) > 1 and ranked[1][0] - ranked[0][0] < self.look_reid_margin:
                continue
            tid = ranked[0][1]
            holder = self.identity.session_of(tid)
            if holder is not None and fit.get(holder.id, 1.0) <= self.look_sure_max:
                continue  # the track's own session is sure of it: look-alikes
            self._take_track(s, holder, tid, ts)
            return  # one re-binding per round: the looks of the others change with it

    def _late_decision(self, s: Session, ts: float) -> bool:
        """Decide a meeting nothing decided at the time, from the clear views gathered since.

        ``s`` met the sessions in ``s.doubt_with`` and appearance could not tell
        then who was who. Its track's clear look since it last met anyone
        (``late_views`` views at least) now settles it when it fits ``s``'s
        reference better than each of theirs by ``late_margin`` (one-sided) and,
        for each of them still in the store with a clear look of its own, the
        pair's bindings cost ``late_margin`` less than the pair swapped: then
        the review flags that doubt put on ``s``'s changes are taken back. When
        the swapped bindings are cheaper by ``late_swap_margin`` (and each track
        looks more like the other's reference), the tracks are given back and
        the changes since the meeting move with them (to review). Returns
        whether tracks were re-bound.
        """
        tl = self._track_look.get(s.track_id)
        if tl is None or tl.n < self.late_views or s.look.n < self.encounters.min_reference:
            return False
        own = distance(s.look.long, tl.long)
        if own is None:
            return False
        settled = True
        for oid in sorted(s.doubt_with):
            o = self.identity.sessions.get(oid)
            if o is None or o.look.n < self.encounters.min_reference:
                if own > self.look_sure_max:
                    settled = False  # nothing to compare with: only a close fit to its own reference settles it
                continue
            theirs = distance(o.look.long, tl.long)
            if theirs is None or theirs - own < self.late_margin:
                settled = False
            if o.closed or o.lost_at is not None:
                continue
            ol = self._track_look.get(o.track_id)
            if ol is None or ol.n < self.late_views or o.track_id not in self.tracker.tracks:
                continue
            o_own, o_theirs = distance(o.look.long, ol.long), distance(s.look.long, ol.long)
            if o_own is None or o_theirs is None:
                settled = False
                continue
            gap = (theirs + o_theirs) - (own + o_own)
            if gap < self.late_margin:
                settled = False
            if (gap <= -self.late_swap_margin and theirs < own and o_theirs < o_own
                    and o.doubt_since is not None and s.id in o.doubt_with):
                self._late_swap(s, o, ts)
                return True
        if settled:
            self._settle(s, ts)
        return False

    def _settle(self, s: Session, ts: float) -> None:
        """``s`` is sure of its track again: its doubt ends, and the review flags it put on changes go."""
        s.doubt_since = None
        s.doubt_with.clear()
        s.look_frozen = False
        self.counters["doubts_settled"] += 1
        touched = set()
        for key, (sid, before) in s.doubt_flagged.items():
            ledger = self.identity.sessions[sid].ledger
            now = ledger.changes.get(key)
            if now is not None and now.needs_review and now.quantity == before.quantity and now.sku == before.sku:
                ledger.changes[key] = before
                touched.add(sid)
                self.counters["changes_unflagged"] += 1
        s.doubt_flagged.clear()
        for sid in sorted(touched):
            self._publish_state(self.identity.sessions[sid], ts)

    def _late_swap(self, a: Session, b: Session, ts: float) -> None:
        """Give ``a`` and ``b`` each other's tracks after a meeting decided late; the changes since move along."""
        self.counters["late_swaps"] += 1
        since = min(a.doubt_since, b.doubt_since)  # type: ignore[type-var]
        log.warning("views since a meeting %.1f s ago say %s and %s came out of it swapped: re-bound",
                    ts - since, a.id, b.id)
        self.identity.swap_tracks(a, b)
        a.bound_ts = b.bound_ts = ts
        a.fixes.clear()
        b.fixes.clear()
        self._move_changes([(a, b, a.doubt_since), (b, a, b.doubt_since)], since, 0.0, ts, unsure=True)
        for x, y in ((a, b), (b, a)):
            x.doubt_with.discard(y.id)
            x.doubt_flagged.clear()  # what was in doubt moved, flagged, with the tracks
            if not x.doubt_with:
                x.doubt_since = None
                x.look_frozen = False

    def _take_track(self, s: Session, holder: Session | None, tid: str, ts: float) -> None:
        """``s`` takes track ``tid`` from ``holder`` (or from nobody); the holder gets ``s``'s old track."""
        old = s.track_id
        self.counters["sessions_reidentified"] += 1
        log.warning("session %s looks like track %s (held by %s), not its own %s: re-bound", s.id, tid,
                    holder.id if holder else "nobody", old)
        s.track_id, s.bound_ts = tid, ts
        self.identity.by_track[tid] = s.id
        s.fixes.clear()
        moves = []
        if holder is not None:
            holder.track_id, holder.bound_ts = old, ts
            self.identity.by_track[old] = holder.id
            holder.fixes.clear()
            moves.append((holder, s, max(holder.sure_ts, holder.opened_ts)))
            moves.append((s, holder, max(s.sure_ts, s.opened_ts)))
        else:
            self.identity.by_track[old] = ""
        if moves:
            self._move_changes(moves, 0.0, 0.0, ts, unsure=True)
        if holder is None:
            self._flag_changes(s, max(s.sure_ts, s.opened_ts), ts, "identity in doubt: its track turned out to be someone else's")

    def _verdict(self, v: Verdict, ts: float) -> None:
        """Re-bind the tracks of a decided meeting and move its cart changes, or send them to review."""
        c = v.cluster
        members = [self.identity.sessions[m] for m in sorted(c.members) if m in self.identity.sessions]
        members = [m for m in members if not m.closed]
        if v.assignment is None:
            self.counters["encounters_undecided"] += 1
            self.counters["encounters_undecided:" + v.reason] += 1
            for s in members:
                own = self._track_look.get(s.track_id)
                d = distance(s.look.long, own.long) if own is not None and own.n >= self.encounters.min_post \
                    and s.look.n >= 8 else None
                if d is not None and d <= self.look_sure_max and all(
                        o.look.n < 8 or (distance(o.look.long, own.long) or 0.0) >= d + self.encounters.margin
                        for o in members if o is not s):
                    continue  # its track still looks like it, and like none of the others: its changes stand
                others = ", ".join(o.id for o in members if o is not s)
                self._flag_changes(s, c.start_ts, ts, f"identity in doubt: met {others} and {v.reason}", doubt=True,
                                   alternatives=sorted(o.id for o in members if o is not s))
                if s.doubt_since is None:
                    s.doubt_since = c.start_ts  # and so are its changes from now on, until its looks settle it
                s.doubt_with |= {o.id for o in members if o is not s}
                s.look_frozen = s.look.n >= self.encounters.min_reference  # a reference to keep; none yet: learn on
            return
        if all(v.assignment.get(s.id, s.id) == s.id for s in members):
            self.counters["encounters_confirmed"] += 1
            return
        self.counters["encounters_swapped"] += 1
        by_id = {s.id: s for s in members}
        old_track = {s.id: s.track_id for s in members}
        moves = []  # (from session, to session)
        for s in members:
            src = by_id.get(v.assignment.get(s.id, s.id))
            if src is None or src is s:
                continue
            s.track_id = old_track[src.id]
            self.identity.by_track[s.track_id] = s.id
            s.bound_ts = ts
            s.fixes.clear()
            moves.append((src, s))
        log.warning("appearance re-bound tracks after a meeting %.1f s ago: %s", ts - c.start_ts,
                    ", ".join(f"{a.id} -> {b.id}" for a, b in moves))
        unsure = v.margin < 2 * self.encounters.margin
        self._move_changes(moves, c.start_ts, c.last_close_ts, ts, unsure)

    def _move_changes(self, moves: list[tuple], since: float, contact_until: float, ts: float,
                      unsure: bool) -> None:
        """Move the changes each ``(src, dst)`` pair's source made since ``since`` to the destination.

        A ``(src, dst, since)`` triple gives the pair its own ``since``.

        A change made while they were in contact (until ``contact_until``), or
        any when ``unsure``, goes to review: whose hand it was is not certain.
        """
        decisions, stamps = [], {}
        for move in moves:
            src, dst = move[0], move[1]
            # a decision lands up to a settle time after the hand that caused it
            start = (move[2] if len(move) > 2 else since) - 1.0
            ledger = src.ledger
            undone = {k.split(":undo")[0] for k in ledger.changes if ":undo" in k}
            for key, change in list(ledger.changes.items()):
                decided = ledger.decided_ts.get(key, 0.0)
                if decided < start or ":undo" in key or key in undone or not change.quantity:
                    continue
                n = sum(1 for k in ledger.changes if k.startswith(key + ":undo")) + 1
                review = unsure or decided <= contact_until + 1.0 or change.needs_review
                undo = change.model_copy(update={"quantity": -change.quantity, "needs_review": review,
                                                 "reason": f"moved to {dst.id}: tracks were swapped"})
                redo = change.model_copy(update={"needs_review": review,
                                                 "reason": change.reason + f"; moved from {src.id}: tracks were swapped",
                                                 "alternatives": _with(change.alternatives, [src.id], dst.id)})
                decisions += [Decision(src.id, f"{key}:undo{n}", undo), Decision(dst.id, f"{key}:mv{n}", redo)]
                src.doubt_flagged.pop(key, None)  # moved: a later settling of src's doubt leaves it alone
                stamps[(dst.id, f"{key}:mv{n}")] = decided
        self._apply(decisions, ts)
        for (sid, key), decided in stamps.items():  # a moved change keeps the time it was first decided
            ledger = self.identity.sessions[sid].ledger
            if key in ledger.decided_ts:
                ledger.decided_ts[key] = decided

    def _flag_changes(self, s: Session, since: float, ts: float, why: str, doubt: bool = False,
                      alternatives: Iterable[str] = ()) -> None:
        """Send the changes ``s`` made since ``since`` to review, saying ``why``, naming ``alternatives``.

        ``doubt``: flagged for an identity doubt that later views may settle
        (:meth:`_settle`), which then takes the flag back.
        """
        ledger, flagged = s.ledger, False
        for key, change in list(ledger.changes.items()):
            if ledger.decided_ts.get(key, 0) >= since - 1.0 and not change.needs_review and change.quantity:
                ledger.changes[key] = change.model_copy(update={
                    "needs_review": True, "reason": f"{change.reason}; {why}",
                    "alternatives": _with(change.alternatives, alternatives, s.id)})
                if doubt:
                    s.doubt_flagged[key] = (s.id, change)
                flagged = True
        if flagged:
            self.counters["changes_flagged_identity"] += 1
            self._publish_state(s, ts)

    def _appearance_veto(self, a: Session, b: Session) -> int | None:
        """What appearance says of ``a`` and ``b``'s current bindings: 1 right, -1 wrong, 0 cannot tell.

        None when either session has no reference appearance (a stream without descriptors).
        """
        if a.look.n < 8 or b.look.n < 8:
            return None
        ta, tb = self.tracker.tracks.get(a.track_id), self.tracker.tracks.get(b.track_id)
        if ta is None or tb is None:
            return 0
        fits = [self._look_fit(a, ta.look.recent), self._look_fit(b, tb.look.recent),
                self._look_fit(a, tb.look.recent), self._look_fit(b, ta.look.recent)]
        if any(f is None for f in fits):
            return 0
        gain = fits[2] + fits[3] - fits[0] - fits[1]
        return 1 if gain > self.look_swap_margin / 2 else -1 if gain < -self.look_swap_margin / 2 else 0

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
        self._zones(session, track, ts)
        if not session.closed and ts - session.last_location_ts >= self.location_period_s:
            session.last_location_ts = ts
            x, y = track.xy
            vx, vy = track.velocity
            self._out(ShopperLocation, ts, shopper=session.id, track=track.id, x=round(x, 3), y=round(y, 3),
                      cov=tuple(tuple(round(v, 5) for v in row) for row in track.cov),
                      vx=round(vx, 3), vy=round(vy, 3), sources=self._sources(track, ts))

    def _open(self, track: FloorTrack, ts: float) -> Session:
        n = len(self.identity.sessions) + 1
        sid = "s-" + uuid.uuid5(uuid.NAMESPACE_OID, f"{self.stamper.run_id}/{n}").hex[:12]
        session = Session(sid, track.id, CartLedger(sid, self.config, opened_ts=ts), opened_ts=ts)
        self.identity.open(session)
        self._out(CartEvent, ts, shopper=sid, phase="new", cart_version=0)
        self._publish_state(session, ts)
        return session

    def _match_checkins(self, ts: float) -> None:
        """Give pending check-ins to untagged sessions standing in the check-in's zone."""
        keep = []
        for ci in self._pending_checkins:
            if ts - ci.ts > self.checkin_wait_s:
                self.counters["checkins_unmatched"] += 1
                log.warning("check-in %s in %s matched no shopper track within %.0f s", ci.tag, ci.zone,
                            self.checkin_wait_s)
                continue
            if ci.gate is not None:
                decided = self._checkin_at_gate(ci, ts)
                if decided is not None:
                    if not decided:
                        keep.append(ci)  # nobody at the gate yet (the track is still tentative): look again
                    continue
            zone = next((z for z in self._entry if z.id == ci.zone), None)
            zones = [zone] if zone is not None else self._entry
            candidates = [
                s for s in self.identity.open_sessions.values()
                if not s.closed and s.tag is None and s.track_id in self.tracker.tracks
                and self._near(self.tracker.tracks[s.track_id].xy_at(ci.ts), zones)
            ]
            # shoppers at the gate whose track has no session yet are candidates too
            for track in list(self.tracker.tracks.values()):
                if (track.confirmed and not self.identity.by_track.get(track.id)
                        and track.born_ts <= ci.ts + 1.0 and self._near(track.xy_at(ci.ts), zones)):
                    candidates.append(self._open(track, ts))
            if not candidates:
                keep.append(ci)
                continue
            if len(candidates) > 1:
                # several shoppers at the gate: the tag's BLE fixes will tell whose phone it is
                self.counters["checkins_ambiguous"] += 1
                self.identity.pend(ci.tag, candidates)
            else:
                self.identity.attach_tag(candidates[0], ci.tag, ci.ts)
        self._pending_checkins = keep

    def _checkin_at_gate(self, ci: CheckIn, ts: float) -> bool | None:
        """Give a gate's check-in to the shopper standing at that gate when it was made.

        Returns True when decided (the nearest untagged shopper within
        ``gate_radius_m``, clearly nearer than the next), False when nobody
        stands there yet, None when two shoppers stand equally near: the
        zone's candidates and BLE decide then. (Check-ins naming a gate the
        store does not have lost their gate on arrival.)

        A shopper who checked in before does not check in again: when their
        track stands nearer the gate than anyone untagged, it is the newcomer
        who stands there (in the queue a track slips from one person to the
        next). The newcomer takes that track and the earlier shopper the
        untagged one (busy tuning seeds 10-41: the track at the gate was the
        newcomer's in 14 of 14 such check-ins; a meeting then decides the
        earlier shopper's track by appearance). When nobody untagged has stood
        there for ``gate_takeover_s`` after the check-in, the newcomer takes the
        earlier shopper's track all the same (:meth:`_take_checked_in_track`;
        those check-ins matched nobody before: 10 on busy seeds 10-41).
        """
        _, gate = self.config.gate(ci.gate)  # type: ignore[arg-type]
        near = []
        taken: tuple[float, FloorTrack, Session] | None = None  # the nearest track of someone checked in before
        for track in self.tracker.tracks.values():
            session = self.identity.session_of(track.id)
            if session is not None and session.tag and track.confirmed and session.tag != ci.tag:
                d = math.dist(track.xy_at(ci.ts), gate.position)
                if d <= self.gate_radius_m and (taken is None or d < taken[0]):
                    taken = (d, track, session)
            if not track.confirmed or track.born_ts > ci.ts + 0.5 or (session is not None and session.tag):
                continue
            if self.identity.by_track.get(track.id) and session is None:
                continue  # bound to a closed session
            d = math.dist(track.xy_at(ci.ts), gate.position)
            if d <= self.gate_radius_m:
                near.append((d, track.id, track, session))
        near.sort(key=lambda n: n[:2])
        if not near:
            if taken is None or ts - ci.ts < self.gate_takeover_s:
                return False
            # nobody untagged there for a while, but someone checked in before stands at the gate: the newcomer
            self._take_checked_in_track(ci, taken[1], taken[2], ts)
            return True
        if len(near) > 1 and near[1][0] - near[0][0] < self.gate_margin_m:
            self.counters["checkins_gate_ambiguous"] += 1
            return None
        _, _, track, session = near[0]
        session = session or self._open(track, ts)
        if taken is not None and taken[0] < near[0][0]:
            # someone who checked in earlier stands nearer the gate than anyone untagged: it is the newcomer
            # who stands there, on a track that swapped onto them; the earlier shopper gets the other track
            _, track, earlier = taken
            self.identity.swap_tracks(session, earlier)
            session.bound_ts = earlier.bound_ts = ts
            self._slipped(ci, earlier, "the track standing there was %s's; re-bound")
        self._tag_at_gate(session, ci, track)
        return True

    def _tag_at_gate(self, session: Session, ci: CheckIn, track: FloorTrack) -> None:
        """The shopper on ``track`` checked in at a gate: the session gets the tag and its look starts there."""
        self.identity.attach_tag(session, ci.tag, ci.ts)
        session.tag_at_gate = True
        self._anchor_look(session, track)
        self.counters["checkins_at_gate"] += 1

    def _slipped(self, ci: CheckIn, earlier: Session, what: str) -> None:
        """``earlier``'s track slipped to the newcomer checking in: its BLE fixes so far say nothing now."""
        earlier.fixes.clear()
        self.counters["checkins_took_swapped_track"] += 1
        log.warning("check-in %s at %s: " + what, ci.tag, ci.gate, earlier.id)

    def _take_checked_in_track(self, ci: CheckIn, track: FloorTrack, earlier: Session, ts: float) -> None:
        """The newcomer checking in stands on ``earlier``'s track: a new session takes it.

        ``earlier`` takes the nearest track within 2 m that no checked-in
        shopper holds (a session opened on it meanwhile, untagged, was the
        earlier shopper's: its changes move over and it is voided); with none,
        it is lost and re-binds like any shopper whose track died.
        """
        x, y = track.xy
        free = []
        for t in self.tracker.tracks.values():
            tx, ty = t.xy
            d2 = (tx - x) ** 2 + (ty - y) ** 2
            if t is track or not t.confirmed or d2 > 4.0:
                continue
            holder = self.identity.session_of(t.id)
            if holder is None and self.identity.by_track.get(t.id):
                continue  # bound to a closed session
            if holder is not None and (holder.tag or holder.id in self._member_of or holder.id in self._groups_led):
                continue
            free.append(((d2, t.id), t, holder))
        self.identity.by_track.pop(track.id, None)
        session = self._open(track, ts)
        if free:
            _, other, holder = min(free, key=lambda f: f[0])
            earlier.track_id, earlier.bound_ts = other.id, ts
            self.identity.by_track[other.id] = earlier.id
            if holder is not None:
                moved = [Decision(earlier.id, key, change) for key, change in holder.ledger.changes.items()]
                self._void(holder, ts)
                self._apply(moved, ts)
        else:
            earlier.track_id, earlier.lost_at = "", (ts, x, y)
        self._slipped(ci, earlier, "only %s's track stands there; it is the newcomer's now")
        self._tag_at_gate(session, ci, track)

    def _fix(self, tag: str, fix: Fix) -> None:
        if tag in self.identity.pending:
            if self.identity.weigh_pending(tag, fix, self.tracker.tracks) is not None:
                self.counters["checkins_decided_by_ble"] += 1
            return
        session = self.identity.session_of_tag(tag)
        if session is None:
            return
        self.identity.add_fix(session, fix)
        track = self.tracker.tracks.get(session.track_id)
        if session.lost_at is None and track is not None:
            if fix.ts - track.last_camera_ts > 1.0:  # no camera sees the shopper: coast on BLE
                self.tracker.update_fix(track, fix.ts, (fix.x, fix.y), fix.cov)
                self.counters["ble_fixes_applied"] += 1
            swapped = self.identity.check_swap(session, self.tracker.tracks, fix.ts)
            if swapped:
                a, b, since = swapped
                if (since <= max(a.tag_ts, b.tag_ts) + 3.0 and fix.ts - min(a.tag_ts, b.tag_ts) <= 30.0
                        and not (a.tag_at_gate and b.tag_at_gate)):
                    # they have not met since checking in (lately): the tags were mixed up at the gate
                    self.identity.swap_tracks(a, b)
                    tag_a, tag_b = a.tag, b.tag
                    self.identity.attach_tag(a, tag_b, fix.ts)  # type: ignore[arg-type]
                    self.identity.attach_tag(b, tag_a, fix.ts)  # type: ignore[arg-type]
                    self.counters["checkin_tags_swapped"] += 1
                else:
                    verdict = self._appearance_veto(a, b) if self.appearance else None
                    if verdict is None or verdict == 1:  # no appearance in the stream, or it agrees
                        self._swap_carts(a, b, since, fix.ts)
                    else:
                        # BLE alone moved items to the wrong shopper far more often than not (issue 12):
                        # unless appearance agrees the bindings stay; if it cannot tell, the changes since go to review
                        self.identity.swap_tracks(a, b)
                        if verdict == 0:
                            self._flag_since(a, b, since, fix.ts)
                        self.counters["ble_swaps_refused" if verdict else "ble_swaps_undecided"] += 1

    def _flag_since(self, a: Session, b: Session, since: float, ts: float) -> None:
        """Send the changes both sessions made since ``since`` to review: who made them is in doubt."""
        for s, other in ((a, b), (b, a)):
            self._flag_changes(s, since, ts, f"identity in doubt: BLE suggests a swap with {other.id} "
                                             "that appearance cannot confirm", alternatives=[other.id])

    def _swap_carts(self, a: Session, b: Session, since: float, ts: float) -> None:
        """Tracks of ``a`` and ``b`` were swapped at ``since``: move the changes made after, to review."""
        self.counters["identity_swaps"] += 1
        log.warning("sessions %s and %s had swapped tracks since %.1f s ago; re-bound", a.id, b.id, ts - since)
        self._move_changes([(a, b), (b, a)], since, since, ts, unsure=True)

    def _interaction(self, msg: HandShelfInteraction) -> None:
        session = self.identity.session_of(getattr(self.tracker.track_for(msg.camera, msg.track_id), "id", None))
        if session is None:
            self.counters["interactions_unattributed"] += 1
            log.info("hand event %s from %s track %s has no open session", msg.event_id, msg.camera, msg.track_id)
            return
        if self.appearance:
            session = self._hand_owner(session, msg)
        self._apply(self.decider.hand(session.id, msg, session.ledger.quantities()), msg.ts)

    def _hand_owner(self, session: Session, msg: HandShelfInteraction) -> Session:
        """The session a hand belongs to: the bound one, unless the camera track clearly looks like a neighbour.

        A neighbour is an open session whose track stands within 2 m of the
        bound one; it takes the hand when the camera track's recent colours fit
        its reference by ``look_hand_margin`` better than the bound session's.
        """
        look = self._cam_look.get((msg.camera, msg.track_id))
        if look is None or look.recent is None or msg.ts - look.ts > 1.0:
            return session
        own = self._look_fit(session, look.recent)
        track = self.tracker.tracks.get(session.track_id)
        if own is None or own < self.look_own_ok or track is None:
            return session
        x, y = track.xy
        best, best_d = session, own - self.look_hand_margin
        for other in self.identity.open_sessions.values():
            if other is session or other.closed or other.lost_at is not None:
                continue
            t = self.tracker.tracks.get(other.track_id)
            if t is None or (t.xy[0] - x) ** 2 + (t.xy[1] - y) ** 2 > 4.0:
                continue
            d = self._look_fit(other, look.recent)
            if d is not None and d < best_d:
                best, best_d = other, d
        if best is not session:
            self.counters["hands_reattributed_by_appearance"] += 1
        return best

    def _cart_of(self, session_id: str) -> dict[str, int]:
        s = self.identity.sessions.get(self._member_of.get(session_id, session_id))
        return s.ledger.quantities() if s else {}

    # ------------------------------------------------------------------ zones and closing

    def _zones(self, session: Session, track: FloorTrack, ts: float) -> None:
        x, y = track.xy
        for zone, x0, y0, x1, y1 in self._zone_boxes:
            inside = (x0 <= x <= x1 and y0 <= y <= y1) and point_in_polygon(x, y, zone.polygon)
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
        if review:
            for key, change in list(ledger.changes.items()):
                ledger.changes[key] = change.model_copy(update={"needs_review": True,
                                                                "reason": f"{change.reason}; {review}"})
        if session.tag is None:  # a check-in still undecided between this shopper and others: decide now
            for tag, scores in list(self.identity.pending.items()):
                if session.id in scores and self.identity.decide(tag) is session:
                    self.counters["checkins_decided_at_exit"] += 1
                    break
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

    def _apply(self, decisions: list[Decision], ts: float) -> None:
        for d in decisions:
            if d.shopper is None:
                self._unattributed(d, ts)
                continue
            session = self.identity.sessions[self._member_of.get(d.shopper, d.shopper)]  # a group: its one cart
            actor = self.identity.sessions[d.shopper]
            if d.unseen and d.change.shelf:  # whoever else stood at the shelf may have made it
                others = [n.shopper for n in self._near_shelf(d.change.shelf, UNSEEN_NEAR_M) if n.shopper != actor.id]
                d = Decision(d.shopper, d.key, d.change.model_copy(update={
                    "alternatives": _with(d.change.alternatives, others, actor.id)}), d.weight)
            if self.persistent_doubt and actor.doubt_since is not None and d.change.quantity and not d.change.needs_review:
                # whose track this is has been unsure since a meeting nothing decided: a person checks
                actor.doubt_flagged[d.key] = (session.id, d.change)
                d = Decision(d.shopper, d.key, d.change.model_copy(update={
                    "needs_review": True, "reason": d.change.reason + "; identity in doubt since a meeting "
                                                                      f"{ts - actor.doubt_since:.0f} s ago",
                    "alternatives": _with(d.change.alternatives, sorted(actor.doubt_with), actor.id)}), d.weight)
            if session.ledger.closed_ts is not None or not session.ledger.apply(d.key, d.change, ts):
                self.counters["changes_dropped"] += 1
                continue
            self.counters["review_changes" if d.change.needs_review else "sure_changes"] += 1
            self._out(CartEvent, ts, shopper=session.id, phase="update", change=d.change,
                      cart_version=session.ledger.version)
            self._publish_state(session, ts)

    def _unattributed(self, d: Decision, ts: float) -> None:
        """A load change no hand explains: to the hub's review queue with its evidence, never only a log line."""
        self.counters["shelf_changes_unattributed"] += 1
        c, w = d.change, d.weight
        nearby = self._near_shelf(c.shelf, 3.0) if c.shelf else []
        log.warning("unattributed shelf change (to review): %s", c.reason)
        self._out(ShelfEvent, ts, kind="unattributed", shelf=c.shelf or "", plate=c.plate or "", sku=c.sku,
                  quantity=c.quantity, delta_g=w.delta_g if w else 0.0, change_ts=w.started_ts if w else None,
                  nearby=tuple(nearby), evidence=c.evidence, reason=c.reason)

    def _near_shelf(self, shelf_id: str, within_m: float) -> list[NearbyShopper]:
        """Open sessions whose tracks stand within ``within_m`` of a shelf, nearest first."""
        shelf = self.config.shelf(shelf_id)
        nearby = []
        for s in self.identity.open_sessions.values():
            track = self.tracker.tracks.get(s.track_id)
            if s.closed or track is None:
                continue
            dist = distance_to_polygon(track.xy[0], track.xy[1], shelf.polygon)
            if dist <= within_m:
                nearby.append(NearbyShopper(shopper=s.id, distance_m=round(dist, 2)))
        nearby.sort(key=lambda n: (n.distance_m, n.shopper))
        return nearby

    def _stock_changes(self, ts: float) -> None:
        """Tell the hub where the shelf inventory now believes misplaced items lie (or no longer lie)."""
        for m in self.decider.inventory.drain():
            self.counters["misplaced_updates"] += 1
            self._out(ShelfEvent, ts, kind="misplaced", shelf=m.shelf, plate=m.plate, sku=m.sku, count=m.count,
                      since_ts=m.since_ts, reason=f"{m.count} × {m.sku} on {m.plate} against its planogram"
                      if m.count else f"no {m.sku} left on {m.plate}")

    def _publish_state(self, session: Session, ts: float) -> None:
        ledger = session.ledger
        self._out(CartState, ts, shopper=session.id, status="closed" if session.closed else "open",
                  lines=tuple(ledger.lines()), total=ledger.total(), cart_version=ledger.version)

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
        if self.appearance and ts - self._look_checked >= 0.2:
            self._look_checked = ts
            self._encounters(ts)
            if len(self._cam_look) > 512:  # camera tracks not seen for 10 s are gone
                self._cam_look = {k: v for k, v in self._cam_look.items() if ts - v.ts < 10.0}
        kept = {s.track_id for s in self.identity.open_sessions.values() if s.fixes}
        for track in self.tracker.prune(ts, kept_alive=kept):
            session = self.identity.lost(track)
            if session is None:
                continue
            self.counters["sessions_lost_track"] += 1
            if self._near(track.xy, self._exit, margin=1.5):
                # lost on the way out, where the cameras end: the shopper left
                self.counters["sessions_closed_at_exit_loss"] += 1
                self._close(session, ts)
        for session in list(self.identity.open_sessions.values()):
            if not session.closed and session.lost_at is not None and ts - session.lost_at[0] > self.lost_close_s:
                if session.ledger.changes:
                    # nobody saw this shopper leave: close the cart, its lines go to review
                    self.counters["sessions_closed_lost"] += 1
                    self._close(session, ts, review=f"track lost {ts - session.lost_at[0]:.0f} s before closing")
                else:
                    self.counters["sessions_voided_lost"] += 1  # a session that never bought anything: drop it
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


def _with(alternatives: Iterable[str], more: Iterable[str], own: str) -> tuple[str, ...]:
    """``alternatives`` and ``more`` (first seen first), without ``own``: whom else a reviewer should consider."""
    return tuple(dict.fromkeys(a for a in (*alternatives, *more) if a != own))[:12]


def run(node: FusionNode, source: Iterable[Envelope]) -> None:
    """Feed every message of ``source`` (simulator, recording or live stream) to ``node``, then flush."""
    for msg in source:
        node.handle(msg)
    node.flush()

