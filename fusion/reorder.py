"""Putting edge messages back in timestamp order.

Camera, BLE and shelf nodes publish independently, so the fusion node sees
their messages slightly out of order. :class:`ReorderBuffer` holds messages for
``window_s`` seconds of message time and releases them sorted by ``ts`` (then
source and sequence number, so the order does not depend on arrival). A
message older than what has already been released arrived too late: it is
counted and dropped, never applied out of order.

Release is driven by message time, so a replay is deterministic; a live node
also calls :meth:`ReorderBuffer.release_until` with the wall clock when input
pauses, so the last messages do not wait forever.

Speed: messages mostly arrive in order, so the held ones are a list kept sorted
by their keys (appended at the end, or inserted by bisection when one overtook
another) and released from its front in one slice: the order of a heap of the
same keys (each key is unique), without a heap push and pop per message.
"""

from __future__ import annotations

import itertools
from bisect import insort

from ..contracts import Envelope


class ReorderBuffer:
    """Orders messages by timestamp within a bounded window."""

    def __init__(self, window_s: float = 0.15):
        self.window_s = window_s
        self._held: list[tuple[float, str, int, int, Envelope]] = []  # sorted by (ts, source, seq, arrival)
        self._order = itertools.count()
        self.released_ts = float("-inf")
        self.newest_ts = float("-inf")
        self.late = 0
        self.reordered = 0

    def __len__(self) -> int:
        return len(self._held)

    def push(self, msg: Envelope) -> list[Envelope]:
        """Add a message; returns the messages now due, in timestamp order.

        A message with ``ts`` before the last released one is late: it is
        counted in :attr:`late` and dropped (an empty list is returned for it).
        """
        ts = msg.ts
        if ts < self.released_ts:
            self.late += 1
            return self.release_until(ts)  # nothing new is due; keeps the call uniform
        if ts < self.newest_ts:
            self.reordered += 1
        else:
            self.newest_ts = ts
        # ties broken by source and sequence number: the same messages come out in the same order
        # however the network interleaved them
        held = self._held
        entry = (ts, msg.source, msg.seq, next(self._order), msg)
        if not held or entry > held[-1]:
            held.append(entry)  # in order (most messages)
        else:
            insort(held, entry)
        due = self.newest_ts - self.window_s
        if held[0][0] > due:
            return []  # nothing due yet (most calls: the window holds what came in lately)
        return self.release_until(due)

    def release_until(self, ts: float) -> list[Envelope]:
        """Release every held message with a timestamp up to ``ts``."""
        held = self._held
        n = 0
        for entry in held:
            if entry[0] > ts:
                break
            n += 1
        if not n:
            return []
        last = held[n - 1][0]  # the latest released (the list is sorted)
        if last > self.released_ts:
            self.released_ts = last
        out = [entry[4] for entry in held[:n]]
        del held[:n]
        return out

    def flush(self) -> list[Envelope]:
        """Release everything held (end of a recording, shutdown)."""
        return self.release_until(float("inf"))
