"""The BLE receiver node: scan continuously, keep configured tags, smooth RSSI, publish sightings.

:class:`BleReceiver` is the node's logic, independent of the radio: its
:meth:`~BleReceiver.on_advertisement` is bleak's detection callback. It parses
the advertisement (:mod:`storesense.edge.ble.adverts`), drops tags the
:class:`~storesense.edge.ble.adverts.TagFilter` does not keep, smooths RSSI per
(node, tag) with :class:`RssiSmoother` and publishes a
``contracts.BleSighting`` through ``publish`` (a ZeroMQ or MQTT publisher's
``publish``), at most ``max_rate_hz`` per tag.

:func:`scan` runs a ``BleakScanner`` with that callback until stopped. A
missing adapter, BlueZ not running or a permission problem becomes one
:class:`BleAdapterError` naming the node and what to check, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from ...contracts import BleSighting, Envelope, NodeStatus, Stamper
from ...errors import StoresenseError
from .adverts import Advert, TagFilter, parse_advertisement

log = logging.getLogger(__name__)


class BleAdapterError(StoresenseError):
    """The node cannot scan: no adapter, BlueZ not running, or no permission."""


@dataclass
class _Level:
    value: float
    var: float
    ts: float


class RssiSmoother:
    """A scalar Kalman filter per key on RSSI (dBm): random-walk level, noisy readings.

    ``process_db2_per_s`` is how fast the true level may drift (dB²/s: a walking
    shopper changes distance); ``noise_db`` the spread of one reading. After
    ``reset_after_s`` of silence a key starts afresh.
    """

    def __init__(self, process_db2_per_s: float = 4.0, noise_db: float = 5.0, reset_after_s: float = 10.0):
        self.q = process_db2_per_s
        self.r = noise_db ** 2
        self.reset_after_s = reset_after_s
        self._levels: dict[tuple[str, str], _Level] = {}

    def update(self, key: tuple[str, str], ts: float, rssi: float) -> float:
        """Fold in one reading; return the smoothed level."""
        lvl = self._levels.get(key)
        if lvl is None or ts - lvl.ts > self.reset_after_s or ts < lvl.ts:
            self._levels[key] = _Level(rssi, self.r, ts)
            return rssi
        var = lvl.var + self.q * (ts - lvl.ts)
        gain = var / (var + self.r)
        lvl.value += gain * (rssi - lvl.value)
        lvl.var = (1.0 - gain) * var
        lvl.ts = ts
        return lvl.value

    def __len__(self) -> int:
        return len(self._levels)


class BleReceiver:
    """One receiver node's processing: advertisements in, ``BleSighting`` messages out."""

    def __init__(self, node: str, publish: Callable[[Envelope], None], *, tag_filter: TagFilter | None = None,
                 smoother: RssiSmoother | None = None, max_rate_hz: float = 5.0,
                 clock: Callable[[], float] = time.time, stamper: Stamper | None = None):
        self.node = node
        self.publish = publish
        self.filter = tag_filter or TagFilter()
        self.smoother = smoother or RssiSmoother()
        self.min_interval = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.clock = clock
        self.stamper = stamper or Stamper(node)
        self._last_sent: dict[str, float] = {}
        self.counters = {"adverts": 0, "unrecognised": 0, "filtered": 0, "throttled": 0, "published": 0,
                         "publish_errors": 0}
        self.started = clock()

    def on_advertisement(self, device: BLEDevice, adv: AdvertisementData) -> BleSighting | None:
        """bleak's detection callback; returns the sighting it published (None when it published none)."""
        self.counters["adverts"] += 1
        try:
            advert = parse_advertisement(device, adv)
        except (ValueError, TypeError, IndexError) as exc:  # a malformed payload never stops the node
            log.debug("%s: unparsable advertisement from %s: %s", self.node, getattr(device, "address", "?"), exc)
            advert = None
        if advert is None:
            self.counters["unrecognised"] += 1
            return None
        if not self.filter.accepts(advert):
            self.counters["filtered"] += 1
            return None
        return self.handle(advert, self.clock())

    def handle(self, advert: Advert, ts: float) -> BleSighting | None:
        """Smooth and (rate permitting) publish one recognised, accepted advertisement."""
        if not -130.0 <= advert.rssi <= 20.0 or not math.isfinite(advert.rssi):
            self.counters["unrecognised"] += 1
            return None
        smoothed = self.smoother.update((self.node, advert.tag), ts, advert.rssi)
        last = self._last_sent.get(advert.tag)
        if last is not None and ts - last < self.min_interval - 1e-3:  # 1 ms slack for clock jitter
            self.counters["throttled"] += 1
            return None
        self._last_sent[advert.tag] = ts
        msg = self.stamper.make(BleSighting, ts, node=self.node, tag=advert.tag, rssi=round(advert.rssi, 1),
                                rssi_smoothed=round(smoothed, 2), tx_power=advert.tx_power)
        try:
            self.publish(msg)
        except StoresenseError as exc:
            self.counters["publish_errors"] += 1
            log.warning("%s: could not publish a sighting: %s", self.node, exc)
            return None
        self.counters["published"] += 1
        return msg

    def status(self) -> NodeStatus:
        """A heartbeat with the node's counters."""
        now = self.clock()
        return self.stamper.make(NodeStatus, now, node=self.node, kind="ble", state="online",
                                 uptime_s=max(now - self.started, 0.0), counters=dict(self.counters))


def _adapter_error(node: str, exc: BaseException) -> BleAdapterError:
    """One clear message for the ways a scanner fails to start."""
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if isinstance(exc, FileNotFoundError) or "system_bus_socket" in low or "org.freedesktop.dbus.error.servicunknown" \
            in low or "serviceunknown" in low:
        hint = "BlueZ / D-Bus is not running or not reachable (start the bluetooth service)"
    elif isinstance(exc, PermissionError) or "notauthorized" in low or "accessdenied" in low or "permission" in low:
        hint = "permission denied (run as a user in the 'bluetooth' group, or grant the adapter access)"
    elif "no bluetooth adapters" in low or "adapter" in low and ("not found" in low or "no " in low):
        hint = "no Bluetooth adapter found (check `bluetoothctl list`; plug in or enable the adapter)"
    elif "notready" in low or "powered" in low:
        hint = "the Bluetooth adapter is off (power it on: `bluetoothctl power on`)"
    else:
        hint = "the Bluetooth scanner could not start"
    return BleAdapterError(f"BLE node {node}: {hint} ({type(exc).__name__}: {text})")


def _scanner_errors() -> tuple[type[BaseException], ...]:
    from bleak.exc import BleakDBusError, BleakError

    return (BleakError, BleakDBusError, FileNotFoundError, PermissionError, OSError)


async def scan(receiver: BleReceiver, stop: asyncio.Event, *, scanner_factory: Callable | None = None,
               status_every_s: float = 30.0, restart_delay_s: float = 5.0) -> None:
    """Scan until ``stop`` is set, feeding every advertisement to ``receiver``.

    ``scanner_factory(detection_callback=...)`` makes the scanner (bleak's
    ``BleakScanner`` by default; tests inject their own). A failure to start is
    raised as :class:`BleAdapterError`; a scanner that fails after running is
    restarted every ``restart_delay_s`` until ``stop``.
    """
    if scanner_factory is None:
        from bleak import BleakScanner

        def scanner_factory(**kw):
            return BleakScanner(scanning_mode="active", **kw)

    errors = _scanner_errors()
    started_once = False
    while not stop.is_set():
        try:
            scanner = scanner_factory(detection_callback=receiver.on_advertisement)
            await scanner.start()
        except errors as exc:
            err = _adapter_error(receiver.node, exc)
            if not started_once:
                raise err from None
            log.warning("%s; retrying in %.0f s", err, restart_delay_s)
            try:
                await asyncio.wait_for(stop.wait(), restart_delay_s)
            except asyncio.TimeoutError:
                pass
            continue
        started_once = True
        log.info("BLE node %s: scanning", receiver.node)
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), status_every_s)
                except asyncio.TimeoutError:
                    try:
                        receiver.publish(receiver.status())
                    except StoresenseError as exc:
                        log.warning("BLE node %s: could not publish status: %s", receiver.node, exc)
        finally:
            try:
                await scanner.stop()
            except errors as exc:
                log.warning("BLE node %s: stopping the scanner failed: %s", receiver.node, exc)


def run_node(node: str, endpoint: str, store: str, *, tags: list[str] = (), max_rate_hz: float = 5.0,
             duration_s: float | None = None, scanner_factory: Callable | None = None,
             publisher_factory: Callable | None = None, curve=None) -> dict[str, int]:
    """Run a BLE node publishing over ZeroMQ to the fusion node at ``endpoint``; returns its counters.

    ``curve`` (:class:`~storesense.transport.zeromq.CurveKeys`): this node's CURVE keys.

    Runs until Ctrl-C (or for ``duration_s``). Raises :class:`BleAdapterError`
    when scanning cannot start.
    """
    tag_filter = TagFilter(list(tags))
    if publisher_factory is None:
        from ...transport import ZmqPublisher

        def publisher_factory():
            return ZmqPublisher(endpoint, store=store, curve=curve)

    pub = publisher_factory()
    receiver = BleReceiver(node, pub.publish, tag_filter=tag_filter, max_rate_hz=max_rate_hz)

    async def main():
        stop = asyncio.Event()
        if duration_s is not None:
            asyncio.get_running_loop().call_later(duration_s, stop.set)
        await scan(receiver, stop, scanner_factory=scanner_factory)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        close = getattr(pub, "close", None)
        if close:
            close()
    return dict(receiver.counters)
