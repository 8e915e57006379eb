"""Encounters: where shoppers meet, identity is in doubt until appearance decides it.

Floor tracks swap where two shoppers come close (one hides the other, a camera's
id jumps): position and motion alone cannot tell afterwards who is who. So
instead of trusting the tracks through a meeting, the :class:`EncounterBook`
keeps the question open:

- a **cluster** forms when the tracks of open sessions come within ``meet_m``
  of each other (transitively: A meets B, B meets C is one cluster); from then
  on the cart changes of its members are in doubt;
- a member whose track is clear again (nobody within ``clear_m``) collects a
  *post-encounter* appearance: the mean of its track's clear, unhidden
  descriptors since it last met anyone (meeting again starts it afresh);
- with ``min_post`` descriptors per member the cluster is **decided** by
  assignment: the cost of giving track j to session i is the distance between
  i's reference appearance and j's post-encounter appearance (a member without
  a reference costs ``neutral`` everywhere). The bindings are
  kept when the current assignment is the cheapest by ``margin`` over every
  other; tracks are re-bound to the cheapest assignment when it beats the
  current one by ``margin``; otherwise more descriptors are awaited, until
  ``max_wait_s`` after the last meeting (or a member leaves the store): then
  the cluster is **undecided**, and its members' changes since the meeting go
  to review (look-alikes, members without a reference).

A decision is returned to the caller (:class:`~storesense.fusion.node.FusionNode`),
which re-binds the tracks and moves or flags the cart changes. References are
learnt only while a session is sure of its track (see :meth:`EncounterBook.sure`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations

from .appearance import RunningAppearance, distance


@dataclass
class Cluster:
    """Sessions whose tracks met: who is who among them is open."""

    members: set[str]
    start_ts: float  # first meeting
    last_close_ts: float  # last time two members were within meet_m
    post: dict[str, RunningAppearance] = field(default_factory=dict)  # session -> its track's look since its last meeting


@dataclass
class Decision:
    """What a cluster's evidence says.

    ``assignment`` maps each member session to the member session whose track
    it should now be bound to (identity: all kept); None when undecided.
    ``margin`` is the cost gap to the next-best assignment (appearance distance).
    """

    cluster: Cluster
    assignment: dict[str, str] | None
    margin: float
    reason: str


class EncounterBook:
    """Open clusters of sessions that met; see the module docstring."""

    def __init__(self, *, meet_m: float = 1.0, clear_m: float = 0.7, min_post: int = 5, max_post: int = 25,
                 margin: float = 0.12, max_wait_s: float = 12.0, min_reference: int = 8, neutral: float = 0.35,
                 own_max: float = 0.3):
        self.meet_m = meet_m
        self.clear_m = clear_m
        self.min_post = min_post
        self.max_post = max_post
        self.margin = margin
        self.max_wait_s = max_wait_s
        self.min_reference = min_reference
        self.neutral = neutral
        self.own_max = own_max
        self.clusters: list[Cluster] = []
        self._of: dict[str, Cluster] = {}  # session -> its open cluster
        #: session -> {session it met: when they first met}, kept until it leaves (:meth:`met_before`, :meth:`forget`)
        self.met: dict[str, dict[str, float]] = {}

    def cluster_of(self, session_id: str) -> Cluster | None:
        """The open cluster a session is in, if any."""
        return self._of.get(session_id)

    def sure(self, session_id: str) -> bool:
        """Whether the session is in no open cluster (its track is its own, as far as anyone knows)."""
        return session_id not in self._of

    def meet(self, positions: dict[str, tuple[float, float]], ts: float) -> None:
        """Record meetings among the open sessions' tracks at ``ts`` (session id -> track position).

        A member that meets anyone again starts its post-encounter look afresh.
        """
        items = sorted(positions.items())
        m2 = self.meet_m * self.meet_m
        for i, (a, (ax, ay)) in enumerate(items):
            for b, (bx, by) in items[i + 1:]:
                if (ax - bx) ** 2 + (ay - by) ** 2 < m2:
                    self._join(a, b, ts)

    def _join(self, a: str, b: str, ts: float) -> None:
        met = self.met.get(a)
        if met is None or b not in met:
            self.met.setdefault(a, {})[b] = ts
            self.met.setdefault(b, {})[a] = ts
        ca, cb = self._of.get(a), self._of.get(b)
        if ca is None and cb is None:
            c = Cluster({a, b}, ts, ts)
            self.clusters.append(c)
        elif ca is not None and cb is not None and ca is not cb:
            c = ca
            c.members |= cb.members
            c.start_ts = min(ca.start_ts, cb.start_ts)
            c.post.update(cb.post)
            self.clusters.remove(cb)
        else:
            c = ca or cb  # type: ignore[assignment]
            c.members |= {a, b}
        c.last_close_ts = ts
        c.post.pop(a, None)
        c.post.pop(b, None)
        for s in c.members:
            self._of[s] = c

    def observe(self, session_id: str, vec, ts: float, clear: bool) -> None:
        """A descriptor of the track bound to ``session_id`` (``clear``: nobody within ``clear_m``, unhidden)."""
        c = self._of.get(session_id)
        if c is None or not clear or vec is None or c.last_close_ts >= ts:
            return
        look = c.post.get(session_id)
        if look is None:
            look = c.post[session_id] = RunningAppearance()
        if look.n < self.max_post:
            look.add(vec, ts, long_weight=0.0, recent_weight=None)  # only its long memory is read

    def due(self, references: dict[str, RunningAppearance], ts: float, leaving: set[str] = frozenset()
            ) -> list[Decision]:
        """Clusters that can be decided now (or must be: waited too long, or a member ``leaving``)."""
        out = []
        for c in list(self.clusters):
            forced = bool(c.members & leaving) or ts - c.last_close_ts > self.max_wait_s
            d = self._decide(c, references, forced)
            if d is not None:
                out.append(d)
                self.close(c)
        return out

    def close(self, c: Cluster) -> None:
        """Forget a cluster (decided, or its members are gone)."""
        if c in self.clusters:
            self.clusters.remove(c)
        for s in c.members:
            if self._of.get(s) is c:
                del self._of[s]

    def drop(self, session_id: str) -> None:
        """A session left the store or was voided: it is no longer a member of anything."""
        c = self._of.pop(session_id, None)
        if c is not None:
            c.members.discard(session_id)
            c.post.pop(session_id, None)
            if len(c.members) < 2:
                self.close(c)

    def met_before(self, session_id: str, ts: float) -> list[str]:
        """The sessions ``session_id`` met before ``ts``, the latest first meeting first."""
        met = self.met.get(session_id, {})
        return [o for t, o in sorted(((t, o) for o, t in met.items() if t <= ts), reverse=True)]

    def forget(self, session_id: str) -> None:
        """Forget whom ``session_id`` met (it has left and its receipt is out)."""
        self.met.pop(session_id, None)  # the others' records of meeting it stay: their receipts may name it

    def _decide(self, c: Cluster, refs: dict[str, RunningAppearance], forced: bool) -> Decision | None:
        members = sorted(c.members)
        if not any(s in refs and refs[s].n >= self.min_reference for s in members):
            return Decision(c, None, 0.0, "no reference appearance to tell them apart")
        # members seen clearly since they parted (one who vanished meanwhile keeps its track)
        known = [s for s in members if c.post.get(s) is not None and c.post[s].n >= self.min_post]
        with_ref = [s for s in known if s in refs and refs[s].n >= self.min_reference]
        if len(known) < 2 or not with_ref or len(known) < len([s for s in members if s in refs]):
            if not forced:
                return None
            if len(known) < 2 or not with_ref:
                return Decision(c, None, 0.0, "too few clear views after they met")
        # a member without a reference costs the same on every track: the others' references decide
        cost = {(i, j): distance(refs[i].long, c.post[j].long) if i in with_ref else self.neutral
                for i in known for j in known}
        if any(v is None for v in cost.values()):
            return Decision(c, None, 0.0, "descriptors without a common region") if forced else None
        ranked = sorted(self._assignments(known, cost), key=lambda r: r[0])
        best_cost, best = ranked[0]
        current = sum(cost[(s, s)] for s in known)
        others = [v for v, a in ranked if any(a[s] != s for s in known)]
        strangers = [s for s in with_ref if min(cost[(s, t)] for t in known) > self.own_max]
        if strangers:  # someone's reference fits none of these tracks: their shopper is elsewhere
            return Decision(c, None, 0.0, "a member's track looks like nobody in the meeting") if (
                forced or not any(c.post[s].n < self.max_post for s in known)) else None
        if all(best[s] == s for s in known):
            margin = (others[0] - current) if others else float("inf")
            if margin >= self.margin:
                return Decision(c, {s: s for s in members}, margin, "appearance confirms the tracks")
        else:
            margin = current - best_cost
            if margin >= self.margin:
                # second best of the non-identity assignments must not be close to the best either
                runner = next((v for v, a in ranked[1:]), float("inf"))
                margin = min(margin, runner - best_cost)
                if margin >= self.margin / 2:
                    assignment = {s: s for s in members}
                    assignment.update(best)
                    return Decision(c, assignment, margin, "appearance says the tracks were swapped")
        more = any(c.post[s].n < self.max_post for s in known)
        if forced or not more:
            return Decision(c, None, abs(margin), "appearance cannot tell them apart")
        return None

    @staticmethod
    def _assignments(known: list[str], cost: dict) -> list[tuple[float, dict[str, str]]]:
        """Every assignment of tracks (of ``known``) to sessions with its cost; pairwise swaps above four."""
        out = []
        if len(known) <= 4:
            for perm in permutations(known):
                # session known[k] takes the track now bound to perm[k]
                out.append((sum(cost[(s, t)] for s, t in zip(known, perm)), dict(zip(known, perm))))
            return out
        base = {s: s for s in known}
        out.append((sum(cost[(s, s)] for s in known), base))
        for i, a in enumerate(known):
            for b in known[i + 1:]:
                a_ = dict(base)
                a_[a], a_[b] = b, a
                out.append((sum(cost[(s, t)] for s, t in a_.items()), a_))
        return out
