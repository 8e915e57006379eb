"""The reorder buffer releases what a heap of the same keys would, in the same order, at the same pushes."""

import heapq
import random

from storesense.contracts import NodeStatus, Stamper
from storesense.fusion.reorder import ReorderBuffer


class _HeapReference:
    """The buffer as a heap (how it was written before it became a sorted list)."""

    def __init__(self, window_s):
        self.window_s, self.heap, self.n = window_s, [], 0
        self.released_ts = self.newest_ts = float("-inf")
        self.late = 0

    def push(self, msg):
        if msg.ts < self.released_ts:
            self.late += 1
            return self.release_until(msg.ts)
        self.newest_ts = max(self.newest_ts, msg.ts)
        heapq.heappush(self.heap, (msg.ts, msg.source, msg.seq, self.n, msg))
        self.n += 1
        return self.release_until(self.newest_ts - self.window_s)

    def release_until(self, ts):
        out = []
        while self.heap and self.heap[0][0] <= ts:
            t, *_, msg = heapq.heappop(self.heap)
            self.released_ts = max(self.released_ts, t)
            out.append(msg)
        return out


def test_sorted_list_releases_as_the_heap_did():
    rng = random.Random(7)
    stampers = [Stamper(f"cam{k}", "r") for k in range(3)]
    for trial in range(40):
        msgs = []
        for i in range(300):
            ts = round(i * 0.02 + rng.choice([0.0, 0.0, 0.0, 0.01, -0.05, -0.2, 0.3]), 2)  # ties, overtakes, late
            msgs.append(rng.choice(stampers).make(NodeStatus, max(ts, 0.0), node="n", kind="camera", state="online"))
        buf, ref = ReorderBuffer(window_s=rng.choice([0.0, 0.05, 0.15])), None
        ref = _HeapReference(buf.window_s)
        for m in msgs:
            assert [id(x) for x in buf.push(m)] == [id(x) for x in ref.push(m)]
            assert (buf.released_ts, buf.late, len(buf)) == (ref.released_ts, ref.late, len(ref.heap))
        assert [id(x) for x in buf.flush()] == [id(x) for x in ref.release_until(float("inf"))]
