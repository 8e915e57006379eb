"""Who is who by appearance: a session's reference look, meetings, re-binding and doubt.

Camera nodes send colour descriptors (:mod:`storesense.fusion.appearance`); here
they become each session's reference (learnt at the gate and while alone), each
floor track's look since it last met anyone, and the verdicts on meetings
(:mod:`storesense.fusion.encounters`) that keep, swap or doubt the bindings.
"""

from __future__ import annotations

import logging
import math

from ...contracts import PersonObservation
from ..appearance import LazyLongAppearance, RunningAppearance, distance, unit
from ..encounters import Decision as Verdict
from ..identity import Session
from ..tracker import FloorTrack

log = logging.getLogger(__name__)


class Looks:
    """Part of :class:`~.core.FusionNode`: appearance, meetings and re-binding (uses the node's state)."""

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
                tl = self._track_look[track.id] = LazyLongAppearance()  # often forgotten unread: blended when read
            tl.add(vec, ts, long_weight=1.0 / 25, recent_weight=None)  # its long memory is read
        session = self.identity.session_of(track.id)
        if session is None:
            return
        self.encounters.observe(session.id, vec, ts, clear)
        if session.look_frozen:
            return  # a meeting left who this is open: its reference must not learn someone else
        if session.look.n < self.reference_max and near2 >= 0.5 ** 2 and self._at_gate(track):
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
