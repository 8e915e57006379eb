"""Shopper identity: sessions bound to floor tracks, kept right with BLE.

A :class:`Session` is one shopper's visit. It opens when a confirmed floor
track appears in an entry zone, and learns the shopper's app tag from the
:class:`~storesense.contracts.CheckIn` made there. From then on the session's
tag is heard by the BLE nodes; its position fixes are compared with the bound
floor track:

- when the track is lost (occlusion, a gap between cameras), the session waits
  and is re-bound to the new track nearest its last BLE fix (or, without BLE,
  nearest to where it was lost and reachable in the time since);
- when the BLE fixes of two sessions consistently fit the *other* session's
  track better, the tracks were swapped (crowding, a camera id switch): the
  :class:`IdentityBook` swaps the bindings and reports it, so the caller can
  move and flag the cart changes made in between.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import islice


from ..cart.ledger import CartLedger
from .appearance import RunningAppearance, distance
from .tracker import FloorTrack


@dataclass
class Fix:
    """A position fix of a tag (e.g. from BLE), metres, with covariance."""

    ts: float
    x: float
    y: float
    cov: tuple[tuple[float, float], tuple[float, float]]


@dataclass
class Session:
    """A shopper's visit: bound to one floor track, owning one cart."""

    id: str
    track_id: str
    ledger: CartLedger
    opened_ts: float
    tag: str | None = None
    zones: dict[str, float] = field(default_factory=dict)  # zone id -> entered ts
    last_location_ts: float = -1e18
    closed: bool = False
    lost_at: tuple[float, float, float] | None = None  # (ts, x, y) when its track was lost
    fixes: deque = field(default_factory=lambda: deque(maxlen=200))
    tag_ts: float = 0.0  # when the tag was attached
    tag_at_gate: bool = False  # the tag came from a check-in at a gate the shopper stood at (not a guess)
    bound_ts: float = 0.0  # when the current track binding started
    look: RunningAppearance = field(default_factory=RunningAppearance)  # reference colours, learnt at the entry
    sure_ts: float = 0.0  # when its track last looked like its reference
    doubt_since: float | None = None  # a meeting left who this is open since then (None: sure)
    doubt_with: set = field(default_factory=set)  # the sessions it met then
    look_frozen: bool = False  # the reference stopped learning: the track may have been someone else's since
    doubt_flagged: dict = field(default_factory=dict)  # change key -> (cart's session id, the change unflagged)


def _d2(fix: Fix, xy: tuple[float, float], track_cov) -> float:
    """Squared Mahalanobis distance of a fix from a position with covariance ``track_cov``."""
    (a1, b1), (c1, e1) = fix.cov
    (a2, b2), (c2, e2) = track_cov
    a, b, c, e = a1 + a2, b1 + b2, c1 + c2, e1 + e2
    det = a * e - b * c
    if det <= 0:
        return float("inf")
    dx, dy = fix.x - xy[0], fix.y - xy[1]
    return (e * dx * dx - (b + c) * dx * dy + a * dy * dy) / det


def _later(fixes, ts: float, n: int) -> bool:
    """Whether at least ``n`` of ``fixes`` are later than ``ts`` (counted from the newest, stopping at ``n``)."""
    for f in reversed(fixes):
        if f.ts > ts:
            n -= 1
            if n <= 0:
                return True
    return False


def _last_later(fixes, ts: float, n: int) -> list:
    """``[f for f in fixes if f.ts > ts][-n:]``: for ``n`` > 0 found from the newest, stopping at ``n``."""
    if n <= 0:
        return [f for f in fixes if f.ts > ts][-n:]
    out = []
    for f in reversed(fixes):
        if f.ts > ts:
            out.append(f)
            if len(out) == n:
                break
    out.reverse()
    return out


def _d2c(fix: Fix, xy: tuple[float, float], track_cov) -> float:
    """``_d2`` clipped at 25, so one multipath outlier cannot decide alone."""
    return min(_d2(fix, xy, track_cov), 25.0)


class IdentityBook:
    """Sessions, their tags and their floor-track bindings."""

    def __init__(self, *, swap_window: int = 10, swap_ratio: float = 0.35, min_swap_gain: float = 40.0):
        self.sessions: dict[str, Session] = {}
        #: the sessions not closed, in opening order: what every periodic scan walks (a store open all day
        #: closes thousands of sessions; scans over all of them would slow the node down hour by hour)
        self.open_sessions: dict[str, Session] = {}
        self.by_track: dict[str, str] = {}  # floor track id -> session id ("" = track with no session)
        self.by_tag: dict[str, str] = {}  # tag -> session id
        self.pending: dict[str, dict[str, float]] = {}  # undecided check-in tag -> candidate -> log-likelihood
        self.pending_fixes: dict[str, int] = {}
        self.decide_margin = 3.0
        self.swap_window = swap_window
        self.swap_ratio = swap_ratio
        self.min_swap_gain = min_swap_gain

    def open(self, session: Session) -> None:
        """Register a new session bound to its track."""
        self.sessions[session.id] = session
        self.open_sessions[session.id] = session
        self.by_track[session.track_id] = session.id
        session.bound_ts = session.opened_ts

    def close(self, session: Session) -> None:
        """Mark a session closed (it left, or it duplicated another): it is kept, but no scan walks it again."""
        session.closed = True
        self.open_sessions.pop(session.id, None)

    def swap_tracks(self, a: Session, b: Session) -> None:
        """Give ``a`` and ``b`` each other's floor tracks."""
        a.track_id, b.track_id = b.track_id, a.track_id
        self.by_track[a.track_id], self.by_track[b.track_id] = a.id, b.id

    def session_of(self, track_id: str | None) -> Session | None:
        """The open session bound to a floor track."""
        sid = self.by_track.get(track_id or "")
        s = self.sessions.get(sid) if sid else None
        return s if s is not None and not s.closed else None

    def attach_tag(self, session: Session, tag: str, ts: float | None = None) -> None:
        """Give a session its shopper's tag (from a check-in) at time ``ts``."""
        old = self.by_tag.get(tag)
        if old and old in self.sessions and self.sessions[old].tag == tag:
            self.sessions[old].tag = None
        session.tag = tag
        if ts is not None:
            session.tag_ts = ts
        self.by_tag[tag] = session.id

    def pend(self, tag: str, candidates: list[Session]) -> None:
        """A check-in that several shoppers at the gate could have made: decide it later from BLE."""
        self.pending[tag] = {c.id: 0.0 for c in candidates}
        self.pending_fixes[tag] = 0

    def weigh_pending(self, tag: str, fix: Fix, tracks: dict[str, FloorTrack]) -> Session | None:
        """Add a fix of a pending tag to each candidate's log-likelihood; returns the session once decided.

        A candidate whose track is gone or who got another tag drops out; the
        tag is decided when one candidate leads the next by ``decide_margin``
        (a likelihood ratio of about 20) after at least three fixes, or when one
        candidate is left.
        """
        scores = self.pending.get(tag)
        if scores is None:
            return None
        for sid in list(scores):
            s = self.sessions.get(sid)
            track = tracks.get(s.track_id) if s is not None else None
            if s is None or s.closed or s.tag is not None or track is None:
                del scores[sid]
                continue
            scores[sid] -= 0.5 * min(_d2(fix, track.xy_at(fix.ts), track.cov), 25.0)
        self.pending_fixes[tag] += 1
        if not scores:
            del self.pending[tag]
            return None
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        if len(ranked) == 1 or (self.pending_fixes[tag] >= 3 and ranked[0][1] - ranked[1][1] >= self.decide_margin):
            return self.decide(tag)
        return None

    def decide(self, tag: str) -> Session | None:
        """Give a pending tag to its most likely candidate now (e.g. when a candidate leaves)."""
        scores = self.pending.pop(tag, None)
        self.pending_fixes.pop(tag, None)
        if not scores:
            return None
        sid = max(scores.items(), key=lambda kv: kv[1])[0]
        session = self.sessions[sid]
        self.attach_tag(session, tag, session.fixes[-1].ts if session.fixes else None)
        return session

    def session_of_tag(self, tag: str) -> Session | None:
        """The open session a tag belongs to."""
        s = self.sessions.get(self.by_tag.get(tag, ""))
        return s if s is not None and not s.closed else None

    def lost(self, track: FloorTrack) -> Session | None:
        """Record that a track died; returns its open session, now waiting to be re-bound."""
        sid = self.by_track.pop(track.id, None)
        s = self.sessions.get(sid) if sid else None
        if s is None or s.closed:
            return None
        s.lost_at = (track.ts, *track.xy)
        return s

    def rebind(self, track: FloorTrack, ts: float, max_gap_s: float = 20.0, walk_speed: float = 1.5,
               max_look: float = 0.6) -> Session | None:
        """Bind a new track (not born at an entry) to the lost session that fits it best.

        A session whose reference appearance is farther than ``max_look`` from
        the track's is not a candidate (someone else, dressed differently).
        """
        best, best_cost = None, float("inf")
        x, y = track.xy
        for s in self.open_sessions.values():
            if s.closed or s.lost_at is None or not (0 <= ts - s.lost_at[0] <= max_gap_s):
                continue
            if s.look.n >= 8 and track.look.n >= 3:
                d_look = distance(s.look.long, track.look.long)
                if d_look is not None and d_look > max_look:
                    continue
            recent = [f for f in s.fixes if ts - f.ts <= 3.0]
            if recent:
                cost = min(_d2(f, (x, y), track.cov) for f in recent)
                if cost > 20.0:
                    continue
            else:
                dist = math.hypot(x - s.lost_at[1], y - s.lost_at[2])
                if dist > 1.0 + walk_speed * (ts - s.lost_at[0]):
                    continue
                cost = dist
            if cost < best_cost:
                best, best_cost = s, cost
        if best is not None:
            best.track_id, best.lost_at, best.bound_ts = track.id, None, ts
            self.by_track[track.id] = best.id
        return best

    def add_fix(self, session: Session, fix: Fix) -> None:
        """Remember a position fix of the session's tag."""
        session.fixes.append(fix)

    def check_swap(self, session: Session, tracks: dict[str, FloorTrack], ts: float
                   ) -> tuple[Session, Session, float] | None:
        """Swap bindings when two sessions' fixes fit each other's tracks much better.

        Tracks can only swap where two shoppers meet, so the evidence is the
        fixes of both tags since the pair's last encounter (tracks within
        1.5 m) or the later check-in: the summed squared Mahalanobis distances
        (each clipped at 25) under the current binding and under the swapped
        one, i.e. twice the log-likelihood ratio. A swap needs a gain of
        ``min_swap_gain`` (a likelihood ratio of about e^20, since every open
        session is a candidate and the tests are many) and the swapped sum
        below ``swap_ratio`` of the current one. Returns the swapped pair and
        the most likely time the swap began, or None.
        """
        mine = tracks.get(session.track_id)
        if mine is None or len(session.fixes) < 3:
            return None
        own: dict[int, float] = {}
        mine_cov = mine.cov  # (the tracks do not move while they are compared)
        window = self.swap_window
        for other in self.open_sessions.values():
            if other is session or other.closed or other.lost_at is not None:
                continue
            theirs = tracks.get(other.track_id)
            if theirs is None or len(other.fixes) < 3:
                continue
            met = max(session.tag_ts, other.tag_ts)
            if not _later(session.fixes, met, 4) or not _later(other.fixes, met, 4):
                continue  # too few fixes since the check-in: fewer still since the last encounter
            # Only the last ``swap_window`` fixes of each count, so an encounter older than the
            # first of them selects the same fixes as none: the scan back can stop there.
            oldest = min(f.ts for fixes in (session.fixes, other.fixes)
                         for f in islice(reversed(fixes), self.swap_window))
            for t, x, y in reversed(mine.history):
                if t <= met or t < oldest:
                    break
                tx, ty = theirs.xy_at(t)
                if (x - tx) ** 2 + (y - ty) ** 2 < 1.5**2:
                    met = t
                    break
            recent, their_fixes = _last_later(session.fixes, met, window), _last_later(other.fixes, met, window)
            if len(recent) < 4 or len(their_fixes) < 4:
                continue
            for f in recent:  # this session's fixes against its own track, the same for every other session
                if id(f) not in own:
                    own[id(f)] = _d2c(f, mine.xy_at(f.ts), mine_cov)
            their_cov = theirs.cov
            now = (sum(own[id(f)] for f in recent) +
                   sum(_d2c(f, theirs.xy_at(f.ts), their_cov) for f in their_fixes))
            if now <= self.min_swap_gain - 1e-6:
                continue  # the swapped sum is not negative, so the gain cannot reach min_swap_gain
            swapped = (sum(_d2c(f, theirs.xy_at(f.ts), their_cov) for f in recent) +
                       sum(_d2c(f, mine.xy_at(f.ts), mine_cov) for f in their_fixes))
            if swapped < self.swap_ratio * now and now - swapped > self.min_swap_gain:
                since = self._swap_started(session, other, mine, theirs)
                session.track_id, other.track_id = other.track_id, session.track_id
                self.by_track[session.track_id] = session.id
                self.by_track[other.track_id] = other.id
                session.bound_ts = other.bound_ts = ts
                session.fixes.clear()
                other.fixes.clear()
                return session, other, since
        return None

    @staticmethod
    def _swap_started(a: Session, b: Session, mine: FloorTrack, theirs: FloorTrack) -> float:
        """When the swap most likely began.

        Tracks swap where two shoppers meet, and tags mix up at the gate, so the
        candidates are the moments the two tracks were within 1.5 m of each
        other and the later check-in. For each, the fixes of both tags since
        their check-ins are scored with the current binding before it and the
        swapped binding after it; the best-scoring moment wins.
        """
        start = max(a.tag_ts, b.tag_ts)
        fa = [f for f in a.fixes if f.ts >= start]
        fb = [f for f in b.fixes if f.ts >= start]
        candidates = [start] + [t for t, x, y in mine.history if t > start
                                and (x - theirs.xy_at(t)[0]) ** 2 + (y - theirs.xy_at(t)[1]) ** 2 < 1.5**2]
        best, best_cost = start, float("inf")
        for t_s in candidates:
            cost = sum(_d2c(f, (mine if f.ts < t_s else theirs).xy_at(f.ts), mine.cov) for f in fa)
            cost += sum(_d2c(f, (theirs if f.ts < t_s else mine).xy_at(f.ts), theirs.cov) for f in fb)
            if cost < best_cost - 1e-9:
                best, best_cost = t_s, cost
        return best
