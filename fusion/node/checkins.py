"""Check-ins and BLE: which tag (so which account) each session is.

A check-in at a gate goes to the shopper standing there (the queue at the gates
makes tracks slip from one person to the next, which :meth:`CheckIns._checkin_at_gate`
undoes); one in an entry zone without gates to the untagged session there (several:
BLE decides). BLE fixes keep a session's track alive and may reveal swapped tracks.
"""

from __future__ import annotations

import logging
import math

from ...cart.decisions import Decision
from ...contracts import CheckIn
from ..identity import Fix, Session
from ..tracker import FloorTrack

log = logging.getLogger(__name__)


class CheckIns:
    """Part of :class:`~.core.FusionNode`: check-ins and BLE fixes (uses the node's state)."""

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

    def _at_gate(self, track: FloorTrack) -> bool:
        """Whether a track stands at one of the entry gates (within ``gate_radius_m``)."""
        x, y = track.xy
        r2 = self.gate_radius_m * self.gate_radius_m
        for gx, gy in self._gate_xy:
            if (x - gx) ** 2 + (y - gy) ** 2 <= r2:
                return True
        return False

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
