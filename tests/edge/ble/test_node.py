"""The BLE receiver node: filtering, smoothing, throttling, publishing, and a missing adapter."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest
from bleak.backends.device import BLEDevice
from bleak.exc import BleakDBusError, BleakError

from storesense.contracts import BleSighting, NodeStatus, decode, encode
from storesense.edge.ble.node import BleAdapterError, BleReceiver, RssiSmoother, scan
from storesense.edge.ble.adverts import TagFilter, advertisement_from_bytes
from storesense.errors import StoresenseError

IBEACON = "0201061AFF4C000215B5B182C7EAB14988AA99B5C1517008D90001E6F0C5"
OTHER_IBEACON = "0201061AFF4C000215E2C56DB5DFFB48D2B060D0F5A71096E000000000C5"
RUUVI = "0201061BFF99040512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"
APP = "ibeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9"


class Clock:
    def __init__(self, t=1_717_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def receiver(rules=(APP,), rate=5.0):
    sent = []
    clock = Clock()
    rx = BleReceiver("ble-door", sent.append, tag_filter=TagFilter(list(rules)), max_rate_hz=rate, clock=clock)
    return rx, sent, clock


def adv(hexstr, rssi):
    return advertisement_from_bytes(bytes.fromhex(hexstr), rssi)


def test_keeps_only_configured_tags_and_publishes_valid_sightings():
    rx, sent, clock = receiver()
    dev = BLEDevice("C4:7C:8D:6A:2F:01", None, None)
    rx.on_advertisement(dev, adv(IBEACON, -70))
    clock.t += 1
    rx.on_advertisement(dev, adv(OTHER_IBEACON, -60))  # another app's beacon
    rx.on_advertisement(dev, adv(RUUVI, -50))  # a sensor tag
    rx.on_advertisement(dev, advertisement_from_bytes(bytes.fromhex("020106"), -40))  # flags only
    assert [m.tag for m in sent] == ["b5b182c7-eab1-4988-aa99-b5c1517008d9-1-59120"]
    msg = sent[0]
    assert isinstance(msg, BleSighting) and msg.node == "ble-door" and msg.rssi == -70.0 and msg.tx_power == -59.0
    assert decode(encode(msg)) == msg  # a valid wire message
    assert rx.counters == {"adverts": 4, "unrecognised": 1, "filtered": 2, "throttled": 0, "published": 1,
                           "publish_errors": 0}
    status = rx.status()
    assert isinstance(status, NodeStatus) and status.counters["published"] == 1


def test_rssi_is_smoothed_and_rate_limited_per_tag():
    rx, sent, clock = receiver(rate=2.0)
    rng = np.random.default_rng(3)
    dev = BLEDevice("C4:7C:8D:6A:2F:01", None, None)
    raw = []
    for _ in range(200):  # 10 Hz advertising, a steady tag at -70 dBm with 5 dB noise
        clock.t += 0.1
        r = int(round(-70 + rng.normal(0, 5)))
        raw.append(r)
        rx.on_advertisement(dev, adv(IBEACON, r))
    assert 38 <= len(sent) <= 41  # 2 Hz over 20 s
    assert rx.counters["throttled"] == 200 - len(sent)
    smoothed = np.array([m.rssi_smoothed for m in sent[5:]])
    assert abs(smoothed.mean() + 70) < 1.5
    assert smoothed.std() < 0.5 * np.std(raw)


def test_smoother_restarts_after_silence():
    s = RssiSmoother(reset_after_s=5.0)
    for i in range(20):
        s.update(("n", "t"), float(i), -80.0)
    assert s.update(("n", "t"), 30.0, -50.0) == -50.0  # 11 s of silence: new level
    assert -80 < s.update(("n", "t"), 21.0, -60.0) <= -50  # time going backwards also restarts


def test_a_failing_publisher_does_not_stop_the_node():
    def broken(msg):
        raise StoresenseError("broker gone")

    rx = BleReceiver("ble-door", broken, tag_filter=TagFilter([APP]), clock=Clock())
    assert rx.on_advertisement(BLEDevice("C4:7C:8D:6A:2F:01", None, None), adv(IBEACON, -70)) is None
    assert rx.counters["publish_errors"] == 1


class FakeScanner:
    """Stands in for BleakScanner: replays advertisements to the detection callback."""

    def __init__(self, adverts, detection_callback):
        self.adverts = adverts
        self.cb = detection_callback
        self.stopped = False

    async def start(self):
        for dev, a in self.adverts:
            self.cb(dev, a)

    async def stop(self):
        self.stopped = True


def test_scan_feeds_the_receiver_until_stopped():
    rx, sent, clock = receiver(rate=0)
    dev = BLEDevice("C4:7C:8D:6A:2F:01", None, None)
    scanners = []

    def factory(**kw):
        scanners.append(FakeScanner([(dev, adv(IBEACON, -65 - i)) for i in range(3)], **kw))
        return scanners[-1]

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        await scan(rx, stop, scanner_factory=factory)

    asyncio.run(main())
    assert [m.rssi for m in sent] == [-65.0, -66.0, -67.0]
    assert scanners[0].stopped


@pytest.mark.parametrize("exc, words", [
    (BleakError("No Bluetooth adapters found."), "no Bluetooth adapter found"),
    (BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]), "adapter is off"),
    (BleakDBusError("org.bluez.Error.NotAuthorized", []), "permission denied"),
    (FileNotFoundError(2, "No such file or directory"), "BlueZ / D-Bus is not running"),
    (PermissionError(13, "Permission denied"), "permission denied"),
])
def test_missing_adapter_is_one_clear_error(exc, words):
    rx, _, _ = receiver()

    class Failing:
        def __init__(self, **kw):
            pass

        async def start(self):
            raise exc

    async def main():
        await scan(rx, asyncio.Event(), scanner_factory=Failing)

    with pytest.raises(BleAdapterError) as info:
        asyncio.run(main())
    text = str(info.value)
    assert text.startswith("BLE node ble-door: ") and words in text and "\n" not in text


def test_cli_without_bluetooth_prints_one_line_and_exits_2():
    """This machine has no Bluetooth: the real bleak scanner fails and the CLI says so in one line."""
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "edge", "ble", "--node", "ble-sw",
                           "--duration", "1"], capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        pytest.skip("this machine has a working Bluetooth adapter")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: BLE node ble-sw:")
    from typer.testing import CliRunner

    from storesense.cli import app

    bad = CliRunner().invoke(app, ["edge", "ble", "--node", "nope"])
    assert isinstance(bad.exception, StoresenseError) and "not a BLE node" in str(bad.exception)
