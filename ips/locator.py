"""From a stream of ``BleSighting`` messages to fixes, one tracker per tag.

Receivers report independently, so one "observation" of a tag is assembled
from the sightings of all nodes: the sightings of a tag are collected until one
arrives more than ``window_s`` after the first of the batch; then the batch
becomes an :class:`RssiObservation` (a node heard several times contributes its
mean, in dBm) at the time of its latest sighting and goes to the tag's tracker.
Recordings whose nodes report in the same instant (the Kolakowski data) give
one observation per sample.

Observation window (``history_s``): a single BLE packet says little (5–8 dB of
shadowing and fading), so with ``history_s > 0`` each observation uses, per
node, the mean (in dB) of every packet that node heard of the tag in the last
``history_s`` seconds (a causal sliding window: only packets at or before the
observation's time). A node heard within the window but not in the current
batch still contributes its window mean, so receivers that report at different
rates all count. ``history_s = 0`` uses only the batch's own packets (a node
heard several times contributes its mean in linear power).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..contracts import BleSighting, Envelope, FloorPoint
from .model import Fix, RssiObservation, Tracker


@dataclass
class _Batch:
    first_ts: float
    last_ts: float
    readings: dict[str, list[float]] = field(default_factory=dict)


class BleLocator:
    """Routes sightings to per-tag trackers made by ``tracker_factory(tag)``."""

    def __init__(self, tracker_factory: Callable[[str], Tracker], *, window_s: float = 0.25,
                 history_s: float = 0.0, use_smoothed: bool = False, tags: Iterable[str] | None = None):
        if window_s < 0 or history_s < 0:
            raise ValueError(f"window_s and history_s must be >= 0 (got {window_s}, {history_s})")
        self.tracker_factory = tracker_factory
        self.window_s = window_s
        self.history_s = history_s
        self._history: dict[str, dict[str, tuple[deque[float], deque[float]]]] = {}
        self.use_smoothed = use_smoothed
        self.tags = set(tags) if tags is not None else None
        self.trackers: dict[str, Tracker] = {}
        self._batches: dict[str, _Batch] = {}
        self.sightings = 0

    def handle(self, msg: Envelope) -> list[Fix]:
        """Take one message (others than ``ble_sighting`` are ignored); return fixes it completed."""
        if not isinstance(msg, BleSighting) or (self.tags is not None and msg.tag not in self.tags):
            return []
        self.sightings += 1
        out: list[Fix] = []
        batch = self._batches.get(msg.tag)
        if batch is not None and msg.ts - batch.first_ts > self.window_s:
            fix = self._close(msg.tag)
            if fix is not None:
                out.append(fix)
            batch = None
        if batch is None:
            batch = self._batches[msg.tag] = _Batch(msg.ts, msg.ts)
        value = msg.rssi_smoothed if (self.use_smoothed and msg.rssi_smoothed is not None) else msg.rssi
        batch.readings.setdefault(msg.node, []).append(float(value))
        batch.last_ts = max(batch.last_ts, msg.ts)
        return out

    def _close(self, tag: str) -> Fix | None:
        batch = self._batches.pop(tag)
        if self.history_s > 0:
            rssi = self._window(tag, batch)
        else:
            rssi = {n: float(10.0 * np.log10(np.mean(10.0 ** (np.array(v) / 10.0)))) if len(v) > 1 else v[0]
                    for n, v in batch.readings.items()}
        tracker = self.trackers.get(tag)
        if tracker is None:
            tracker = self.trackers[tag] = self.tracker_factory(tag)
        return tracker.update(RssiObservation(batch.last_ts, rssi, tag))

    def _window(self, tag: str, batch: _Batch) -> dict[str, float]:
        """Per node, the mean (dB) of the packets within ``history_s`` before the batch's last one."""
        hist = self._history.setdefault(tag, {})
        last = batch.last_ts
        for node, values in batch.readings.items():
            q = hist.get(node)
            if q is None:
                q = hist[node] = (deque(), deque())  # times, values
            q[0].extend([last] * len(values))
            q[1].extend(values)
        start = last - self.history_s
        out: dict[str, float] = {}
        for node in list(hist):
            times, values = hist[node]
            while times and times[0] <= start:
                times.popleft()
                values.popleft()
            if not times:
                del hist[node]
                continue
            out[node] = sum(values) / len(values)
        return out

    def poll(self, now: float) -> list[Fix]:
        """Close the batches whose window has passed by ``now`` (call it on a timer when running live)."""
        due = sorted(t for t, b in self._batches.items() if now - b.first_ts > self.window_s)
        return [f for f in (self._close(t) for t in due) if f is not None]

    def flush(self) -> list[Fix]:
        """Close every open batch (end of a recording)."""
        return [f for f in (self._close(t) for t in sorted(self._batches)) if f is not None]

    def run(self, messages: Iterable[Envelope]) -> list[Fix]:
        """Every fix for a whole stream of messages, in order."""
        fixes: list[Fix] = []
        for msg in messages:
            fixes.extend(self.handle(msg))
        fixes.extend(self.flush())
        return fixes


def floor_point(fix: Fix) -> FloorPoint:
    """A fix as the contracts' ``FloorPoint`` (position and covariance), for the fusion node."""
    return FloorPoint(x=fix.x, y=fix.y, cov=fix.cov_tuple())
