"""The shelf node: reads the load cells under shelf plates and publishes settled weight changes.

One node reads every cell wired to one device (an HX711 per plate on a Raspberry
Pi's GPIO, or serial scales), or replays a recording of their raw readings. For
each plate it

1. judges every raw reading (:class:`SensorHealth`): timeouts, NaN, saturation
   (``0x7FFFFF`` / ``0x800000``, a scale's overload), impossible loads and jumps,
   a raw value stuck for seconds. A sensor with a run of bad readings (or too
   many in its recent window, or stuck) is *unhealthy*: its readings are not
   used and it produces no :class:`~storesense.contracts.WeightChange` until it
   has read well for a while; then its baseline is re-established (changes
   during the fault are not reported).
2. tares it (zero offset from steady readings at start, or on :meth:`ShelfNode.tare`)
   unless the config gives ``zero_offset``, and converts counts to grams with
   ``counts_per_g``;
3. rejects spikes, tracks slow drift into the baseline and detects settled
   changes (:mod:`storesense.edge.shelf.weighing`), and publishes each as a
   ``WeightChange`` (source: the sensor id) with its delta, the settled total,
   the estimated noise and when the change started;
4. publishes :class:`~storesense.contracts.NodeStatus` heartbeats with counters
   and a warning per sensor that is not trusted, at once when a sensor's health
   changes.

:class:`ShelfNode` is driven by calls (``reading``, ``read_error``, ``tick``)
with explicit timestamps, so live hardware (:func:`run_live`) and a recording
(:func:`run_replay`) go through the same code.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...config import StoreConfig, WeightSensor
from ...contracts import Envelope, NodeStatus, Stamper, WeightChange
from ...errors import StoresenseError
from .loadcells.base import LoadCell, LoadCellError, SensorReadError, SensorTimeout
from .loadcells.hx711 import HX711_MAX, HX711_MIN
from .loadcells.recorded import RawReading, RecordingWriter
from .weighing import (
    ChangeDetector,
    HampelFilter,
    NoiseEstimator,
    SettledChange,
    TareCollector,
    WeighingTuning,
)

log = logging.getLogger(__name__)

Emit = Callable[[Envelope], None]


@dataclass(frozen=True)
class ShelfTuning:
    """Health and timing constants of the shelf node."""

    weighing: WeighingTuning = field(default_factory=WeighingTuning)
    bad_streak: int = 5  # consecutive bad readings (timeouts included) that make a sensor unhealthy
    bad_window: int = 20  # recent readings judged for intermittent faults ...
    bad_fraction: float = 0.3  # ... unhealthy when at least this share of them is bad
    stuck_after_s: float = 5.0  # an ADC returning one exact raw value this long is stuck
    recover_s: float = 2.0  # good readings needed (this long, and at least 5) before trusting it again
    silent_periods: float = 5.0  # no reading for this many sample periods (at least 0.5 s) is a timeout
    heartbeat_s: float = 5.0  # NodeStatus period
    unsettled_warn_s: float = 30.0  # warn when a plate has not settled for this long


def silent_after_s(sensor: WeightSensor, tuning: ShelfTuning) -> float:
    """Seconds without a reading after which a sensor's read counts as timed out."""
    return max(0.5, tuning.silent_periods / sensor.sample_hz)


class SensorHealth:
    """Judges one sensor's readings and decides whether it is trusted.

    :meth:`judge` takes the kind of problem of each reading (None for a good
    one) and returns True when the sensor's trust changed. ``reason`` says why
    an unhealthy sensor is not trusted.
    """

    def __init__(self, name: str, tuning: ShelfTuning):
        self.name = name
        self.t = tuning
        self.healthy = True
        self.reason = ""
        self.since = 0.0
        self.streak = 0
        self._window: deque[bool] = deque(maxlen=tuning.bad_window)
        self._good_since: float | None = None
        self._good_count = 0

    def judge(self, ts: float, problem: str | None, detail: str = "", *, immediate: bool = False) -> bool:
        """Record one reading (``problem`` None: good). True when the sensor became (un)trusted."""
        self._window.append(problem is not None)
        if problem is None:
            self.streak = 0
            if self.healthy:
                return False
            if self._good_since is None:
                self._good_since, self._good_count = ts, 0
            self._good_count += 1
            if ts - self._good_since >= self.t.recover_s and self._good_count >= 5:
                self.healthy, self.reason, self.since = True, "", ts
                self._good_since = None
                return True
            return False
        self.streak += 1
        self._good_since = None
        if not self.healthy:
            return False
        bad = sum(self._window)
        if immediate or self.streak >= self.t.bad_streak:
            why = detail
        elif len(self._window) >= self.t.bad_window // 2 and bad >= self.t.bad_fraction * len(self._window):
            why = f"{bad} of the last {len(self._window)} readings bad (latest: {detail})"
        else:
            return False
        self.healthy, self.reason, self.since = False, why, ts
        return True


class PlateChannel:
    """One weight sensor: health, calibration, filtering and change detection for its plate."""

    def __init__(self, sensor: WeightSensor, unit_weight_g: float, tuning: ShelfTuning | None = None):
        self.sensor = sensor
        self.t = tuning or ShelfTuning()
        w = self.t.weighing
        self.counts_raw = sensor.hardware is None or sensor.hardware.kind == "hx711"
        self.unit_weight_g = unit_weight_g
        self.min_change_g = sensor.min_change_fraction * unit_weight_g
        self.health = SensorHealth(sensor.id, self.t)
        self.counters: Counter[str] = Counter()
        self.offset: float | None = sensor.zero_offset
        self.absolute_zero = sensor.zero_offset is not None
        noise_prior = max(sensor.noise_g, w.min_noise_g)
        self.tare = TareCollector(w.tare_readings, w.steady_k, noise_prior * abs(sensor.counts_per_g))
        self.hampel = HampelFilter(w.hampel_window, w.hampel_k)
        window = min(2000, max(16, int(w.noise_window_s * sensor.sample_hz)))
        self.noise = NoiseEstimator(window, prior=noise_prior, floor=w.min_noise_g)
        self.detector = ChangeDetector(sensor.settle_s, self.min_change_g, w)
        self.silent_after = silent_after_s(sensor, self.t)
        self.started_ts: float | None = None
        self.last_ts: float | None = None
        self.last_seen: float | None = None
        self._tare_since: float | None = None
        self._prev_raw: float | None = None
        self._same_raw: float | None = None
        self._same_since = 0.0

    # -- calibration

    @property
    def tared(self) -> bool:
        """True once the zero offset is known."""
        return self.offset is not None

    def to_grams(self, raw: float) -> float:
        """Convert a raw reading to grams on the plate (needs the zero offset)."""
        return (raw - self.offset) / self.sensor.counts_per_g  # type: ignore[operator]

    def request_tare(self) -> None:
        """Take the load on the plate from the next steady readings as zero."""
        self.offset = None
        self.absolute_zero = False
        self.tare.reset()
        self._tare_since = self.last_seen
        self._restart()

    def _restart(self) -> None:
        self.hampel.reset()
        self.detector.reset()

    def load_limits_g(self) -> tuple[float, float]:
        """Loads outside these limits cannot be real (negative far below zero, far above capacity)."""
        cap = self.sensor.capacity_g
        margin = max(0.05 * cap, 20 * self.noise.sigma)
        low = -margin if self.absolute_zero else -(cap + margin)  # tared with goods on it: can go below
        return low, 1.5 * cap

    # -- readings

    def start(self, ts: float) -> None:
        """The node starts at ``ts`` (the silence clock starts here)."""
        self.started_ts = ts
        self.last_seen = ts
        self._tare_since = ts

    def _problem(self, ts: float, value: float | None) -> tuple[str | None, str, bool]:
        """Classify one raw reading: (counter name or None, detail, fault at once)."""
        if value is None:
            return "timeouts", "not answering (read timed out)", False
        if math.isnan(value):
            return "nan", "reads NaN", False
        if math.isinf(value) or (self.counts_raw and value in (HX711_MAX, HX711_MIN)):
            shown = "overload" if math.isinf(value) else f"raw {value:.0f}"
            return "saturated", f"saturated ({shown}): overloaded, or a broken bridge wire", False
        if self.counts_raw:
            if value == self._same_raw:
                if ts - self._same_since >= self.t.stuck_after_s:
                    return "stuck", f"stuck at raw {value:.0f} for {ts - self._same_since:.1f} s", True
            else:
                self._same_raw, self._same_since = value, ts
        prev, self._prev_raw = self._prev_raw, value
        if prev is not None:
            jump_g = abs(value - prev) / abs(self.sensor.counts_per_g)
            if jump_g > self.sensor.capacity_g:
                return "jumps", f"impossible jump of {jump_g:.0f} g between two readings", False
        if self.tared:
            g = self.to_grams(value)
            low, high = self.load_limits_g()
            if not low <= g <= high:
                return "out_of_range", f"impossible load {g:.0f} g (possible: {low:.0f} to {high:.0f} g)", False
        return None, "", False

    def reading(self, ts: float, value: float | None) -> tuple[SettledChange | None, bool]:
        """Process one raw reading (None: the read timed out): (a settled change or None, health changed)."""
        if self.last_ts is not None and ts < self.last_ts:
            self.counters["out_of_order"] += 1
            return None, False
        self.last_ts = self.last_seen = ts
        self.counters["readings"] += 1
        problem, detail, immediate = self._problem(ts, value)
        return self._use(ts, value, problem, detail, immediate)

    def read_error(self, ts: float, reason: str) -> bool:
        """A read that returned something that is not a reading; True when health changed."""
        self.last_seen = ts
        return self._use(ts, None, "read_errors", reason, False)[1]

    def silence(self, now: float) -> bool:
        """Count a timeout when the sensor has been silent too long; True when health changed."""
        if self.last_seen is None or now - self.last_seen < self.silent_after:
            return False
        silent_for = now - (self.last_ts if self.last_ts is not None else self.started_ts or now)
        self.last_seen = now
        return self._use(now, None, "timeouts", f"not answering (no reading for {silent_for:.1f} s)", False)[1]

    def _use(self, ts, value, problem, detail, immediate) -> tuple[SettledChange | None, bool]:
        was = self.health.healthy
        if problem is not None:
            self.counters[problem] += 1
        changed = self.health.judge(ts, problem, detail, immediate=immediate)
        if changed:
            self._restart()
            if was:
                self.counters["faults"] += 1
                log.warning("weight sensor %s is not trusted: %s", self.sensor.id, self.health.reason)
            else:
                self.counters["recoveries"] += 1
                log.warning("weight sensor %s reads well again; its load is re-established "
                            "(changes during the fault are not reported)", self.sensor.id)
        if problem is not None or not self.health.healthy:
            return None, changed
        if not self.tared:
            offset = self.tare.add(value)
            if offset is not None:
                self.offset = offset
                log.info("weight sensor %s tared: zero offset %.1f", self.sensor.id, offset)
            return None, changed
        g_raw = self.to_grams(value)
        sigma = self.noise.sigma
        g, spike = self.hampel.filter(g_raw, sigma)
        if spike:
            self.counters["spikes"] += 1
        change = self.detector.update(ts, g_raw, g, sigma)
        det = self.detector
        if det.changing and ts - (det.unsettled_since or ts) < 10 * self.sensor.settle_s:
            self.noise.pause()  # a change in progress is not noise (unless it never settles: then it may be)
        else:
            self.noise.update(g)
        if change is not None:
            self.counters["changes"] += 1
        return change, changed

    # -- status

    def warning(self, now: float) -> str | None:
        """One line saying why this sensor needs attention, or None."""
        sid = self.sensor.id
        if not self.health.healthy:
            return f"{sid}: not trusted ({self.health.reason}; for {now - self.health.since:.1f} s)"
        since = self._tare_since if self._tare_since is not None else now
        if not self.tared and now - since > 10.0:
            return f"{sid}: not tared after {now - since:.0f} s (load not steady)"
        since = self.detector.unsettled_since
        if since is not None and now - since > self.t.unsettled_warn_s:
            return f"{sid}: load not settled for {now - since:.0f} s (noise {self.noise.sigma:.1f} g)"
        return None


class ShelfNode:
    """The shelf node for a set of weight sensors; ``emit`` receives every message it publishes.

    Call :meth:`start` once, then :meth:`reading` / :meth:`read_error` for each
    raw reading in time order and :meth:`tick` regularly (it detects silent
    sensors and sends heartbeats), and :meth:`close` at the end.
    """

    def __init__(self, config: StoreConfig, sensors: Iterable[WeightSensor], emit: Emit, *,
                 node: str = "shelf", run_id: str | None = None, tuning: ShelfTuning | None = None):
        self.config = config
        self.emit = emit
        self.node = node
        self.t = tuning or ShelfTuning()
        self.run_id = run_id
        self.channels: dict[str, PlateChannel] = {}
        self._stampers: dict[str, Stamper] = {}
        for ws in sensors:
            plate = config.plate(ws.shelf, ws.plate)
            self.channels[ws.id] = PlateChannel(ws, config.product(plate.sku).unit_weight_g, self.t)
            self._stampers[ws.id] = Stamper(ws.id, run_id)
        if not self.channels:
            raise StoresenseError("shelf node: no weight sensors to read")
        self._status_stamper = Stamper(node, run_id)
        self.counters: Counter[str] = Counter()
        self.changes: list[WeightChange] = []
        self.started_ts: float | None = None
        self._last_status: float | None = None
        self._unknown: set[str] = set()
        self.now = 0.0  # latest time the node has seen

    def _clock(self, ts: float) -> None:
        if self.started_ts is None:
            self.start(ts)
        self.now = max(self.now, ts)

    def start(self, ts: float) -> None:
        """Start the clocks at ``ts`` and announce the node (NodeStatus online)."""
        self.started_ts = ts
        self.now = ts
        for ch in self.channels.values():
            ch.start(ts)
        self._publish_status(ts)

    def _channel(self, sensor: str) -> PlateChannel | None:
        ch = self.channels.get(sensor)
        if ch is None:
            self.counters["unknown_sensor"] += 1
            if sensor not in self._unknown:
                self._unknown.add(sensor)
                log.warning("shelf node %s: ignoring readings of %r (not one of its sensors: %s)",
                            self.node, sensor, ", ".join(self.channels))
        return ch

    def reading(self, sensor: str, ts: float, value: float | None) -> WeightChange | None:
        """Process one raw reading of ``sensor`` at ``ts`` (None: timed out); the WeightChange it settles, if any."""
        self._clock(ts)
        ch = self._channel(sensor)
        if ch is None:
            return None
        self.counters["readings"] += 1
        change, health_changed = ch.reading(ts, value)
        msg = None
        if change is not None:
            msg = self._publish_change(ch, change)
        if health_changed:
            self._publish_status(ts)
        return msg

    def read_error(self, sensor: str, ts: float, reason: str) -> None:
        """A read of ``sensor`` failed with ``reason`` (a garbled frame or line)."""
        self._clock(ts)
        ch = self._channel(sensor)
        if ch is not None and ch.read_error(ts, reason):
            self._publish_status(ts)

    def tick(self, now: float) -> None:
        """Detect silent sensors and publish a heartbeat when one is due."""
        self._clock(now)
        changed = False
        for ch in self.channels.values():
            changed |= ch.silence(now)
        if changed or self._last_status is None or now - self._last_status >= self.t.heartbeat_s:
            self._publish_status(now)

    def tare(self, sensor: str | None = None) -> None:
        """Re-tare one sensor (or all): the load on the plate when it is next steady becomes zero."""
        targets = self.channels.values() if sensor is None else [self.channels[sensor]]
        for ch in targets:
            ch.request_tare()

    def _publish_change(self, ch: PlateChannel, change: SettledChange) -> WeightChange:
        ws = ch.sensor
        msg = self._stampers[ws.id].make(
            WeightChange, round(change.ts, 3), sensor=ws.id, shelf=ws.shelf, plate=ws.plate,
            delta_g=round(change.delta_g, 1), total_g=round(change.total_g, 1),
            noise_g=round(change.noise_g, 2), started_ts=round(change.started_ts, 3),
        )
        self.counters["weight_changes"] += 1
        self.changes.append(msg)
        log.info("%s: %+.1f g (now %.1f g, noise %.1f g)", ws.id, change.delta_g, change.total_g, change.noise_g)
        self.emit(msg)
        return msg

    def warnings(self, now: float) -> list[str]:
        """One line per sensor that needs attention."""
        return [w for ch in self.channels.values() if (w := ch.warning(now)) is not None]

    def status(self, now: float, state: str = "online") -> NodeStatus:
        """The node's NodeStatus at ``now``: counters (node and per sensor) and warnings."""
        counters = dict(self.counters)
        counters["sensors"] = len(self.channels)
        counters["sensors_untrusted"] = sum(not ch.health.healthy for ch in self.channels.values())
        for sid, ch in self.channels.items():
            for key, value in ch.counters.items():
                counters[f"{sid}.{key}"] = value
            counters[f"{sid}.trusted"] = int(ch.health.healthy)
        uptime = max(0.0, now - (self.started_ts if self.started_ts is not None else now))
        return self._status_stamper.make(NodeStatus, round(now, 3), node=self.node, kind="shelf", state=state,
                                         uptime_s=round(uptime, 3), counters=counters,
                                         warnings=tuple(self.warnings(now)))

    def _publish_status(self, now: float, state: str = "online") -> None:
        self._last_status = now
        self.emit(self.status(now, state))

    def close(self, now: float) -> None:
        """Publish the final NodeStatus (offline)."""
        self._publish_status(now, "offline")


# --------------------------------------------------------------------------- setting up


def select_sensors(config: StoreConfig, node: str | None = None, sensors: Iterable[str] | None = None
                   ) -> list[WeightSensor]:
    """The weight sensors a node reads: those of ``node`` (config ``weight_sensors[].node``), or the listed ids.

    Raises :class:`StoresenseError` naming unknown ids or a node without sensors.
    """
    chosen = list(config.weight_sensors)
    if not chosen:
        raise StoresenseError(f"store {config.store.id!r} has no weight_sensors")
    if node is not None:
        chosen = [ws for ws in chosen if ws.node == node]
        if not chosen:
            nodes = sorted({ws.node for ws in config.weight_sensors})
            raise StoresenseError(f"no weight sensor has node {node!r} (nodes in the config: {', '.join(nodes)})")
    if sensors is not None:
        wanted = [s.strip() for s in sensors if s.strip()]
        known = {ws.id: ws for ws in chosen}
        unknown = [s for s in wanted if s not in known]
        if unknown:
            raise StoresenseError(f"unknown weight sensor(s) {', '.join(unknown)}"
                                  f"{' on node ' + repr(node) if node else ''} (known: {', '.join(known)})")
        chosen = [known[s] for s in dict.fromkeys(wanted)]
    return chosen


def open_load_cell(sensor: WeightSensor) -> LoadCell:
    """Open the hardware of one sensor as configured; raises :class:`LoadCellError` saying what is missing."""
    hw = sensor.hardware
    if hw is None:
        raise LoadCellError(f"weight sensor {sensor.id}: no hardware configured (weight_sensors[].hardware: "
                            "kind hx711 or serial); give --replay FILE to replay a recording instead")
    if hw.kind == "hx711":
        from .loadcells.hx711 import HX711

        return HX711.open(sensor.id, hw.data_pin, hw.clock_pin, hw.gain, hw.chip)
    from .loadcells.serial_scale import SerialScale

    return SerialScale(sensor.id, hw.port, hw.baudrate, hw.request)


# --------------------------------------------------------------------------- running


def run_replay(node: ShelfNode, readings: Iterable[RawReading], *, speed: float | None = None,
               stop: threading.Event | None = None) -> int:
    """Feed a recorded stream through ``node`` on the recording's clock; returns the readings fed.

    ``speed`` None replays as fast as possible; 1.0 at the recorded pace.
    """
    n = 0
    last_ts: float | None = None
    wall0 = ts0 = None
    for r in readings:
        if stop is not None and stop.is_set():
            break
        if speed:
            if wall0 is None:
                wall0, ts0 = time.monotonic(), r.ts
            delay = (r.ts - ts0) / speed - (time.monotonic() - wall0)
            if delay > 0:
                time.sleep(delay)
        node.tick(r.ts)
        if r.error:
            node.read_error(r.sensor, r.ts, r.error)
        else:
            node.reading(r.sensor, r.ts, r.value)
        last_ts = r.ts if last_ts is None else max(last_ts, r.ts)
        n += 1
    if last_ts is not None:
        node.tick(last_ts)
        node.close(last_ts)
    return n


def run_live(node: ShelfNode, cells: dict[str, LoadCell], *, stop: threading.Event,
             clock: Callable[[], float] = time.time, recorder: RecordingWriter | None = None,
             reopen: Callable[[str], LoadCell] | None = None, reopen_s: float = 10.0,
             idle_s: float = 0.002) -> None:
    """Poll ``cells`` from this one thread until ``stop`` is set, feeding ``node``.

    Each cell that has a reading waiting is read; errors are counted against
    that sensor and the loop goes on. Sensors whose cell could not be opened
    (absent from ``cells``) are retried every ``reopen_s`` with ``reopen``.
    """
    node.start(clock())
    next_reopen = clock() + reopen_s
    try:
        while not stop.is_set():
            busy = False
            for name, cell in list(cells.items()):
                try:
                    if not cell.ready():
                        continue
                    value = cell.read(timeout_s=0.05)
                    error = ""
                except SensorTimeout:
                    value, error = None, ""
                except (SensorReadError, LoadCellError) as exc:
                    value, error = None, str(exc)
                except Exception as exc:  # noqa: BLE001 - a driver bug must not stop the other sensors
                    log.exception("weight sensor %s: read failed", name)
                    value, error = None, f"read failed: {exc!r}"
                busy = True
                ts = clock()
                if error:
                    node.read_error(name, ts, error)
                else:
                    node.reading(name, ts, value)
                if recorder is not None:
                    recorder.write(RawReading(ts, name, value, error))
            now = clock()
            node.tick(now)
            if reopen is not None and now >= next_reopen:
                next_reopen = now + reopen_s
                for name in node.channels:
                    if name not in cells:
                        try:
                            cells[name] = reopen(name)
                            log.warning("weight sensor %s: opened", name)
                        except LoadCellError as exc:
                            log.debug("weight sensor %s still unavailable: %s", name, exc)
            if not busy:
                time.sleep(idle_s)
    finally:
        node.close(clock())


# --------------------------------------------------------------------------- the command


@dataclass
class ShelfRun:
    """What a :func:`serve` run did."""

    node: ShelfNode
    readings: int = 0
    published: int = 0
    endpoint: str | None = None
    output: str | None = None
    skipped_lines: int = 0
    unopened: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def serve(config: StoreConfig, *, node: str | None = None, sensors: Iterable[str] | None = None,
          replay: str | None = None, endpoint: str | None = None, publish: bool = True,
          output: str | None = None, record: str | None = None, speed: float | None = None,
          wait_s: float = 10.0, run_id: str | None = None, stop: threading.Event | None = None) -> ShelfRun:
    """Run a shelf node as ``storesense edge shelf`` does, until the recording ends or ``stop`` / Ctrl-C.

    Messages go to the fusion node over ZeroMQ (``endpoint``, default the
    config's ``transports.zmq.observations``) when ``publish``, and to a
    recording ``output`` when given. ``replay`` replays raw readings instead of
    opening the hardware; ``record`` writes the live raw readings for later
    replay. Raises :class:`StoresenseError` for a bad selection, no subscriber
    in ``wait_s`` during a replay, or when no configured cell can be opened.
    """
    import signal

    from ...transport.recording import Recorder
    from ...transport import ZmqPublisher
    from ...transport.zeromq import CurveKeys
    from .loadcells.recorded import RecordingReader

    chosen = select_sensors(config, node, sensors)
    name = node or "shelf"
    stop = stop or threading.Event()
    reader = RecordingReader(replay) if replay else None
    cells: dict[str, LoadCell] = {}
    unopened: dict[str, str] = {}
    if reader is None:
        for ws in chosen:
            try:
                cells[ws.id] = open_load_cell(ws)
            except LoadCellError as exc:
                unopened[ws.id] = str(exc)
        if not cells:
            raise StoresenseError("; ".join(unopened.values()))
        for why in unopened.values():
            log.warning("%s (will retry)", why)
    sinks: list[Emit] = []
    pub = recorder = writer = None
    run = ShelfRun(node=None, unopened=unopened)  # type: ignore[arg-type]
    try:
        if publish:
            run.endpoint = endpoint or config.transports.zmq.observations
            pub = ZmqPublisher(run.endpoint, store=config.store.id,
                               curve=CurveKeys.for_edge(config.transports.zmq.curve_keys, name))
            if not pub.wait_for_subscriber(wait_s):
                if reader is not None:
                    raise StoresenseError(f"no fusion node subscribed at {run.endpoint} within {wait_s:g} s")
                log.warning("no fusion node subscribed at %s yet; publishing anyway", run.endpoint)
            sinks.append(pub.publish)
        if output:
            recorder = Recorder(output, config.store.id)
            run.output = output
            sinks.append(recorder.write)

        def emit(msg: Envelope) -> None:
            for sink in sinks:
                sink(msg)
            run.published += 1

        shelf = ShelfNode(config, chosen, emit, node=name, run_id=run_id)
        run.node = shelf
        if reader is not None:
            try:
                run.readings = run_replay(shelf, reader, speed=speed, stop=stop)
            except KeyboardInterrupt:
                pass
            run.skipped_lines = reader.skipped
            run.warnings = shelf.warnings(shelf.now)
            return run
        if record:
            writer = RecordingWriter(record)
        by_id = {ws.id: ws for ws in chosen}
        previous = None
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGHUP, lambda *_: shelf.tare())  # `kill -HUP` re-tares every plate
        try:
            wall0, mono0 = time.time(), time.monotonic()  # Unix time that never steps back

            def clock() -> float:
                return wall0 + (time.monotonic() - mono0)

            run_live(shelf, cells, stop=stop, clock=clock, recorder=writer,
                     reopen=lambda sid: open_load_cell(by_id[sid]))
        except KeyboardInterrupt:
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGHUP, previous)
        run.readings = shelf.counters["readings"]
        run.warnings = shelf.warnings(shelf.now)
        return run
    finally:
        for cell in cells.values():
            try:
                cell.close()
            except Exception:  # noqa: BLE001 - closing anyway
                log.debug("closing %s failed", cell.name, exc_info=True)
        if writer is not None:
            writer.close()
        if recorder is not None:
            recorder.close()
        if pub is not None:
            pub.close()
