"""Carts: hands to shoppers, decisions onto ledgers, changes moved or flagged, shelf events.

The pick decider (:mod:`storesense.cart.decisions`) turns hands and load changes
into decisions; here each lands on its session's cart (a group's one cart), goes
to review when identity is in doubt, and moves with the tracks when they were
swapped. A load change no hand explains becomes a shelf event for the hub.
"""

from __future__ import annotations

import logging
import math
from typing import Iterable

from ...cart.decisions import Decision
from ...contracts import CartEvent, CartState, HandShelfInteraction, NearbyShopper, ShelfEvent
from ...geometry.polygons import distance_to_polygon
from ..identity import Session

log = logging.getLogger(__name__)


#: a shopper standing this near a shelf could have reached into it (alternatives for a change of an unseen hand)
UNSEEN_NEAR_M = 1.5
#: decider "shopper" id of a floor track without a session: ``ORPHAN + track id`` (see :meth:`Carts._orphan_hand`)
ORPHAN = "track:"
#: a reacher stands about this far in front of where their wrist met the shelf front (simulated reaches: 0.5-0.6 m)
REACH_STAND_M = 0.55


class Carts:
    """Part of :class:`~.core.FusionNode`: decisions onto carts and review (uses the node's state)."""

    def _interaction(self, msg: HandShelfInteraction) -> None:
        track = self.tracker.track_for(msg.camera, msg.track_id)
        session = self.identity.session_of(getattr(track, "id", None))
        at_spot = False
        if self.reach_check:
            session, at_spot = self._reacher(session, msg)
        if session is None and self.orphan_hands and track is not None and track.confirmed \
                and not self.identity.by_track.get(track.id):
            self._orphan_hand(track.id, msg)
            return
        if session is None:
            self.counters["interactions_unattributed"] += 1
            log.info("hand event %s from %s track %s has no open session", msg.event_id, msg.camera, msg.track_id)
            return
        if self.appearance and not at_spot:  # where the hand went in says more than colours, when it says it
            session = self._hand_owner(session, msg)
        self._apply(self.decider.hand(session.id, msg, session.ledger.quantities()), msg.ts)

    def _orphan_hand(self, track_id: str, msg: HandShelfInteraction) -> None:
        """A hand of a floor track that has no session (yet): someone is shopping whom no session follows.

        In a crowd a shopper's session may sit on a neighbour's track for a
        while, or be lost, while the shopper's own track reaches into a shelf.
        The hand still takes part in the shelf's decisions, under the track
        (``ORPHAN`` + track id), so a load change it explains is not pinned on
        another hand; what it is charged waits on the track
        (:meth:`_adopt_orphans`) until a session takes the track, and goes to
        review as an unattributed shelf change if none ever does.
        """
        self.counters["hands_of_tracks_without_session"] += 1
        self._apply(self.decider.hand(ORPHAN + track_id, msg, {}), msg.ts)

    def _hold_orphan(self, d: Decision, ts: float) -> None:
        """Keep a change charged to a floor track without a session, with who stood at the shelf then."""
        self.counters["changes_held_for_a_track"] += 1
        nearby = self._near_shelf(d.change.shelf, 3.0) if d.change.shelf else []
        self._orphans.setdefault(d.shopper[len(ORPHAN):], []).append((d, ts, nearby))  # type: ignore[index]

    def _adopt_orphans(self, session: Session, track_id: str, ts: float) -> None:
        """``session`` now holds a track whose hands were charged while it had none: the changes are its own.

        They go to review: which session a track belongs to was unknown when
        they were made.
        """
        held = self._orphans.pop(track_id)
        self.counters["changes_adopted_from_a_track"] += len(held)
        self._apply([Decision(session.id, d.key, d.change.model_copy(update={
            "needs_review": True, "reason": d.change.reason + f"; made on track {track_id} before {session.id} "
                                                              "was known to be on it"}), d.weight)
                     for d, _, _ in held], ts)

    def _drop_orphans(self, ts: float) -> None:
        """Changes held for tracks that died without a session: to review as unattributed shelf changes."""
        for track_id in [t for t in self._orphans if t not in self.tracker.tracks]:
            for d, when, nearby in self._orphans.pop(track_id):
                self._unattributed(Decision(None, d.key, d.change.model_copy(update={
                    "reason": d.change.reason + f"; made by track {track_id}, which no session ever held"}),
                    d.weight), ts, nearby=nearby, when=when)

    def _reacher(self, session: Session | None, msg: HandShelfInteraction) -> tuple[Session | None, bool]:
        """The session a hand belongs to by where it went in: the bound one, unless it stands elsewhere.

        The wrist's viewing ray cut with the shelf's front face
        (:meth:`~storesense.cart.decisions.PickDecider.reach_point`) says where
        along the front the hand went in; whoever reached stands about
        ``REACH_STAND_M`` in front of that point (simulated reaches: within
        0.23 m of it in 99 %, another shopper within 0.45 m in 5 %). When the
        session the camera track is bound to (None: no session) stands farther
        than ``reach_keep_m`` from that spot and another open session stands
        within it, nearer by ``reach_margin_m``, the hand is that session's: the
        camera track was bound to the wrong floor track, or a second camera
        reported the same reach on someone else's track.
        """
        point = self.decider.reach_point(msg)
        if point is None:
            return session, False
        a, b, n = self.decider.front(msg.shelf)
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        sx = a[0] + (b[0] - a[0]) / length * point[1] + n[0] * REACH_STAND_M
        sy = a[1] + (b[1] - a[1]) / length * point[1] + n[1] * REACH_STAND_M

        def dist(s: Session) -> float:
            t = self.tracker.tracks.get(s.track_id)
            return math.inf if t is None else math.hypot(t.xy[0] - sx, t.xy[1] - sy)

        own = dist(session) if session is not None else math.inf
        if own <= self.reach_keep_m:
            return session, True
        near = min(((dist(s), s.id, s) for s in self.identity.open_sessions.values()
                    if not s.closed and s.lost_at is None and s is not session), default=None)
        if near is None or near[0] > self.reach_keep_m or near[0] > own - self.reach_margin_m:
            return session, False
        self.counters["hands_reattributed_by_reach"] += 1
        return near[2], True

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

    def _apply(self, decisions: list[Decision], ts: float) -> None:
        for d in decisions:
            if d.shopper is None:
                self._unattributed(d, ts)
                continue
            if d.shopper.startswith(ORPHAN):
                self._hold_orphan(d, ts)
                continue
            session = self.identity.sessions[self._member_of.get(d.shopper, d.shopper)]  # a group: its one cart
            actor = self.identity.sessions[d.shopper]
            if (d.unseen or session.tag is None) and d.change.shelf and d.change.quantity:
                # whoever else stood at the shelf may have made it (and, for a cart nobody can be billed for
                # yet, may be who should pay: a reviewer of the untagged receipt sees them)
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

    def _unattributed(self, d: Decision, ts: float, nearby: list[NearbyShopper] | None = None,
                      when: float | None = None) -> None:
        """A load change no hand explains: to the hub's review queue with its evidence, never only a log line.

        ``nearby`` (default: who stands within 3 m of the shelf now) and ``when`` (default ``ts``): for a
        change decided earlier, who stood there and when.
        """
        self.counters["shelf_changes_unattributed"] += 1
        c, w = d.change, d.weight
        if nearby is None:
            nearby = self._near_shelf(c.shelf, 3.0) if c.shelf else []
        log.warning("unattributed shelf change (to review): %s", c.reason)
        self._out(ShelfEvent, ts, kind="unattributed", shelf=c.shelf or "", plate=c.plate or "", sku=c.sku,
                  quantity=c.quantity, delta_g=w.delta_g if w else 0.0, change_ts=w.started_ts if w else when,
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


def _with(alternatives: Iterable[str], more: Iterable[str], own: str) -> tuple[str, ...]:
    """``alternatives`` and ``more`` (first seen first), without ``own``: whom else a reviewer should consider."""
    return tuple(dict.fromkeys(a for a in (*alternatives, *more) if a != own))[:12]
