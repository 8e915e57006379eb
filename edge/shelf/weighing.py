"""Signal processing for one weighed plate: tare, spike rejection, noise estimate, settled changes.

All of it works on one stream of timestamped readings and knows nothing of
hardware or transports; :mod:`storesense.edge.shelf.node` wires it to load cells and
publishes what it finds.

- :class:`TareCollector`: the zero offset is the median of N consecutive raw
  readings that are steady (all within k·noise of their median).
- :class:`HampelFilter`: causal Hampel spike rejection. A reading further than
  k·max(1.4826·MAD, noise) from the median of the last few readings is replaced
  by that median; a real step passes once it fills half the window.
- :class:`NoiseEstimator`: the reading noise σ from the median absolute
  difference of successive readings (robust to steps, spikes and slow drift).
- :class:`ChangeDetector`: settled-change detection. While the load is steady
  its baseline follows slow drift through an exponential low-pass; a reading
  that leaves the baseline's band starts a change (its start is traced back to
  the first reading that left); the change ends when the load has been steady
  within k·σ for ``settle_s``. The settled level (robust mean over that window)
  minus the baseline before the change is the change's delta; deltas smaller
  than the plate's threshold are folded into the baseline, never reported.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from statistics import NormalDist, median

#: MAD to standard deviation for Gaussian noise.
MAD_TO_SIGMA = 1.4826
_NORMAL = NormalDist()
#: Durations this close count as equal (Unix timestamps carry only ~0.2 µs of resolution).
TIME_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class WeighingTuning:
    """Constants of the plate signal processing (the defaults suit 10-80 Hz cells)."""

    tare_readings: int = 10
    hampel_window: int = 5
    hampel_k: float = 4.0
    steady_k: float = 3.0
    trend_k: float = 2.0
    depart_k: float = 2.5
    depart_readings: int = 2
    drift_tau_s: float = 3.0
    noise_window_s: float = 10.0
    min_noise_g: float = 0.5


class TareCollector:
    """Finds a zero offset: the median of ``n`` consecutive steady raw readings."""

    def __init__(self, n: int, k: float, noise_raw: float):
        self.k = k
        self.noise_raw = noise_raw
        self._values: deque[float] = deque(maxlen=max(3, n))

    def reset(self) -> None:
        """Forget the readings collected so far."""
        self._values.clear()

    def add(self, raw: float) -> float | None:
        """Add a reading; the offset once the last ``n`` readings are steady, else None."""
        self._values.append(raw)
        if len(self._values) < self._values.maxlen:
            return None
        values = list(self._values)
        mid = median(values)
        spread = max(abs(v - mid) for v in values)
        diffs = [abs(b - a) for a, b in zip(values, values[1:])]
        sigma = MAD_TO_SIGMA * median(diffs) / math.sqrt(2)
        if spread <= self.k * max(self.noise_raw, sigma):
            return mid
        return None


class HampelFilter:
    """Causal Hampel filter: replaces a reading that is an outlier of the recent window by the window's median."""

    def __init__(self, window: int = 5, k: float = 4.0):
        self.k = k
        self._buf: deque[float] = deque(maxlen=max(3, window))

    def reset(self) -> None:
        """Forget the window."""
        self._buf.clear()

    def filter(self, x: float, sigma: float) -> tuple[float, bool]:
        """The filtered value of ``x`` and whether it was rejected as a spike."""
        self._buf.append(x)  # the window keeps raw values, so a real step gets through
        if len(self._buf) < 3:
            return x, False
        mid = median(self._buf)
        mad = MAD_TO_SIGMA * median(abs(v - mid) for v in self._buf)
        if abs(x - mid) > self.k * max(mad, sigma):
            return mid, True
        return x, False


class NoiseEstimator:
    """Reading noise σ (grams) from successive differences: σ = 1.4826·median|Δx| / √2."""

    def __init__(self, window: int = 64, prior: float = 1.0, floor: float = 0.5):
        self.prior = prior
        self.floor = floor
        self._diffs: deque[float] = deque(maxlen=max(8, window))
        self._last: float | None = None
        self._cached: float | None = None
        self._since = 0

    def update(self, x: float) -> None:
        """Add a filtered reading."""
        if self._last is not None:
            self._diffs.append(abs(x - self._last))
            self._since += 1
        self._last = x

    def pause(self) -> None:
        """Skip the current reading (e.g. during a change): the next difference starts after it."""
        self._last = None

    def reset(self) -> None:
        """Forget the differences (the prior applies again)."""
        self._diffs.clear()
        self._last = None
        self._cached = None

    @property
    def sigma(self) -> float:
        """Current estimate (the prior until 16 differences are in), never below the floor."""
        if len(self._diffs) < 16:
            return max(self.prior, self.floor)
        if self._cached is None or self._since >= 4:
            self._cached = MAD_TO_SIGMA * median(self._diffs) / math.sqrt(2)
            self._since = 0
        return max(self._cached, self.floor)


@dataclass(frozen=True)
class SettledChange:
    """A settled change of a plate's load: ``delta_g`` from ``started_ts`` to ``ts``; ``total_g`` after it."""

    ts: float
    started_ts: float
    delta_g: float
    total_g: float
    noise_g: float


class ChangeDetector:
    """Settled-change detection on one plate's filtered load in grams.

    Feed every filtered reading to :meth:`update` with the current noise σ; it
    returns a :class:`SettledChange` when a change of at least ``min_change_g``
    has settled. ``baseline`` is the current settled load (None until the load
    has first been steady for ``settle_s``); ``changing`` is True between a
    departure from the baseline and the next settled level.
    """

    def __init__(self, settle_s: float, min_change_g: float, tuning: WeighingTuning | None = None):
        self.settle_s = settle_s
        self.min_change_g = min_change_g
        self.t = tuning or WeighingTuning()
        self.small_changes = 0
        self.departures = 0
        self.reset()

    def reset(self) -> None:
        """Forget the baseline and any change in progress (after a fault, or a tare)."""
        self.baseline: float | None = None
        self.changing = False
        self.unsettled_since: float | None = None
        self._run: list[tuple[float, float]] = []
        self._started_ts = 0.0
        self._baseline_before = 0.0
        self._recent: deque[tuple[float, float, float]] = deque(
            maxlen=self.t.hampel_window + self.t.depart_readings)
        self._last_ts: float | None = None
        self._outside = 0

    def depart_g(self, sigma: float) -> float:
        """How far the load may wander from the baseline before a change starts."""
        floor = max(0.5 * self.min_change_g, self.t.depart_k * sigma)
        return min(self.t.steady_k * sigma, floor)

    def update(self, ts: float, raw_g: float, g: float, sigma: float) -> SettledChange | None:
        """Process one reading: ``raw_g`` before and ``g`` after spike rejection, at time ``ts``."""
        dt = 0.0 if self._last_ts is None else max(0.0, ts - self._last_ts)
        self._last_ts = ts
        if self.baseline is not None and not self.changing:
            depart = self.depart_g(sigma)
            if abs(g - self.baseline) <= depart:
                self._outside = 0
                self.baseline += min(1.0, dt / self.t.drift_tau_s) * (g - self.baseline)
                self._recent.append((ts, raw_g, self.baseline))
                return None
            self._outside += 1
            if self._outside < self.t.depart_readings:  # one noisy reading is not a change yet
                self._recent.append((ts, raw_g, self.baseline))
                self._run = [(ts, g)]
                return None
            self._outside = 0
            self.changing = True
            self.departures += 1
            self.unsettled_since = ts
            self._started_ts, self._baseline_before = self._trace_start(ts, raw_g, depart)
            self._recent.clear()
            self._run.append((ts, g))
            return None
        if self.unsettled_since is None:
            self.unsettled_since = ts
        return self._settle(ts, g, sigma)

    def _trace_start(self, ts: float, raw_g: float, depart: float) -> tuple[float, float]:
        """When the change began: the earliest of the last few readings that had already left the band
        (going back over single readings inside it: the hand's push and pull crosses the baseline).

        The spike filter holds back the first readings of a change (a hand's
        push and pull can look like spikes) and a departure needs
        ``depart_readings`` in a row, so the raw readings of about a spike
        window before the one that was noticed are looked at.
        """
        started, before = ts, self.baseline
        gap = 0
        for t_i, raw_i, _ in reversed(self._recent):
            if abs(raw_i - before) > depart:
                started, gap = t_i, 0
            else:
                gap += 1
                if gap > 1:  # two steady readings in a row: the change had not begun
                    break
        # the baseline as it was before the first reading of the change (they moved it a little)
        for t_i, _, base_i in reversed(self._recent):
            if t_i < started:
                return started, base_i
        return started, before if not self._recent else self._recent[0][2]

    def _steady(self, values: list[float], sigma: float) -> bool:
        """Steady: every reading within k·σ of the window's median, and no trend between its two halves.

        k is ``steady_k`` or, for windows of many readings, the normal quantile
        that a steady window of that many readings exceeds 1 % of the time.
        """
        mid = median(values)
        k = max(self.t.steady_k, _NORMAL.inv_cdf(1.0 - 0.005 / len(values)))  # ~1 % of steady windows fail
        if any(abs(v - mid) > k * sigma for v in values):
            return False
        half = len(values) // 2
        first, last = sum(values[:half]) / half, sum(values[-half:]) / half
        return abs(last - first) <= self.t.trend_k * sigma * math.sqrt(2.0 / half)

    def _settle(self, ts: float, g: float, sigma: float) -> SettledChange | None:
        run = self._run
        run.append((ts, g))
        while len(run) > 2 and run[-1][0] - run[1][0] >= self.settle_s - TIME_TOLERANCE_S:
            run.pop(0)  # a sliding window of the last settle_s
        if len(run) < 3 or run[-1][0] - run[0][0] < self.settle_s - TIME_TOLERANCE_S:
            return None
        if not self._steady([v for _, v in run], sigma):
            return None
        values = [v for _, v in run]
        mid = median(values)
        kept = [v for v in values if abs(v - mid) <= 2.5 * sigma] or values
        level = sum(kept) / len(kept)
        self._run = []
        self.unsettled_since = None
        self._recent.clear()
        if self.baseline is None:  # first steady level since start, a tare or a fault
            self.baseline = level
            self.changing = False
            return None
        self.changing = False
        delta = level - self._baseline_before
        self.baseline = level
        if abs(delta) < self.min_change_g:
            self.small_changes += 1
            return None
        return SettledChange(ts=ts, started_ts=self._started_ts, delta_g=delta, total_g=level, noise_g=sigma)
