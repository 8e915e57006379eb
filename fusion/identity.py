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

import numpy as np

from ..cart.ledger import CartLedger
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
    fixes: deque = field(default_factory=lambda: deque(maxlen=12))
    bound_ts: float = 0.0  # when the current track binding started


def _d2(fix: Fix, xy: tuple[float, float], track_cov) -> float:
    S = np.asarray(fix.cov, dtype=float) + np.asarray(track_cov, dtype=float)
    d = np.array([fix.x - xy[0], fix.y - xy[1]])
    try:
        return float(d @ np.linalg.solve(S, d))
    except np.linalg.LinAlgError:
        return float("inf")


class IdentityBook:
    """Sessions, their tags and their floor-track bindings."""

    def __init__(self, *, swap_window: int = 8, swap_ratio: float = 0.35, min_swap_gain: float = 12.0):
        self.sessions: dict[str, Session] = {}
        self.by_track: dict[str, str] = {}  # floor track id -> session id ("" = track with no session)
        self.by_tag: dict[str, str] = {}  # tag -> session id
        self.swap_window = swap_window
        self.swap_ratio = swap_ratio
        self.min_swap_gain = min_swap_gain

    def open(self, session: Session) -> None:
        """Register a new session bound to its track."""
        self.sessions[session.id] = session
        self.by_track[session.track_id] = session.id
        session.bound_ts = session.opened_ts

    def session_of(self, track_id: str | None) -> Session | None:
        """The open session bound to a floor track."""
        sid = self.by_track.get(track_id or "")
        s = self.sessions.get(sid) if sid else None
        return s if s is not None and not s.closed else None

    def attach_tag(self, session: Session, tag: str) -> None:
        """Give a session its shopper's tag (from a check-in)."""
        old = self.by_tag.get(tag)
        if old and old in self.sessions and self.sessions[old].tag == tag:
            self.sessions[old].tag = None
        session.tag = tag
        self.by_tag[tag] = session.id

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

    def rebind(self, track: FloorTrack, ts: float, max_gap_s: float = 20.0, walk_speed: float = 1.5
               ) -> Session | None:
        """Bind a new track (not born at an entry) to the lost session that fits it best."""
        best, best_cost = None, float("inf")
        x, y = track.xy
        for s in self.sessions.values():
            if s.closed or s.lost_at is None or not (0 <= ts - s.lost_at[0] <= max_gap_s):
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

        Compares, over each session's recent fixes, the summed squared
        Mahalanobis distances of the current binding with those of the swapped
        binding. Returns the swapped pair and the estimated time the swap
        began, or None.
        """
        mine = tracks.get(session.track_id)
        recent = [f for f in session.fixes if ts - f.ts <= 6.0][-self.swap_window:]
        if mine is None or len(recent) < 4:
            return None
        for other in self.sessions.values():
            if other is session or other.closed or other.lost_at is not None:
                continue
            theirs = tracks.get(other.track_id)
            if theirs is None:
                continue
            their_fixes = [f for f in other.fixes if ts - f.ts <= 6.0][-self.swap_window:]
            if len(their_fixes) < 4:
                continue
            now = (sum(_d2(f, mine.xy_at(f.ts), mine.cov) for f in recent) +
                   sum(_d2(f, theirs.xy_at(f.ts), theirs.cov) for f in their_fixes))
            swapped = (sum(_d2(f, theirs.xy_at(f.ts), theirs.cov) for f in recent) +
                       sum(_d2(f, mine.xy_at(f.ts), mine.cov) for f in their_fixes))
            if swapped < self.swap_ratio * now and now - swapped > self.min_swap_gain:
                since = self._swap_started(recent, their_fixes, mine, theirs)
                session.track_id, other.track_id = other.track_id, session.track_id
                self.by_track[session.track_id] = session.id
                self.by_track[other.track_id] = other.id
                session.bound_ts = other.bound_ts = ts
                session.fixes.clear()
                other.fixes.clear()
                return session, other, since
        return None

    @staticmethod
    def _swap_started(mine_fixes, their_fixes, mine: FloorTrack, theirs: FloorTrack) -> float:
        """When the swap began.

        Tracks swap where two shoppers come close, so it is the last time the two
        tracks were within 1.5 m of each other; without such a moment in the
        history, the start of the trailing run of fixes that fit the other
        track better.
        """
        close = [t for t, x, y in mine.history
                 if (x - theirs.xy_at(t)[0]) ** 2 + (y - theirs.xy_at(t)[1]) ** 2 < 1.5**2]
        if close:
            return close[-1]
        marks = [(f.ts, _d2(f, theirs.xy_at(f.ts), theirs.cov) < _d2(f, mine.xy_at(f.ts), mine.cov))
                 for f in mine_fixes]
        marks += [(f.ts, _d2(f, mine.xy_at(f.ts), mine.cov) < _d2(f, theirs.xy_at(f.ts), theirs.cov))
                  for f in their_fixes]
        marks.sort()
        since = marks[-1][0]
        for t, better_swapped in reversed(marks):
            if not better_swapped:
                break
            since = t
        return since
