"""Shared fixtures: MQTT brokers (embedded amqtt and a private mosquitto) and message samples."""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from storesense.contracts import (
    MESSAGE_TYPES,
    BleSighting,
    CartChange,
    CartEvent,
    CartLine,
    CartState,
    CheckIn,
    FloorPoint,
    HandShelfInteraction,
    Keypoint,
    NodeStatus,
    PersonObservation,
    Receipt,
    ReceiptLine,
    ShopperLocation,
    Stamper,
    WeightChange,
    ZoneEvent,
)
from storesense.transport import EmbeddedBroker
from storesense.transport.local_broker import free_port, wait_for_port  # noqa: F401 - tests import them from here


# --------------------------------------------------------------------------- brokers


@pytest.fixture
def embedded_broker():
    """An :class:`EmbeddedBroker` on a free loopback port (``.url``, ``.restart()``)."""
    broker = EmbeddedBroker("127.0.0.1", 0)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class MosquittoBroker:
    """A private mosquitto process on 127.0.0.1 with persistence in a temporary folder."""

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.workdir = workdir
        self.log_path = workdir / "mosquitto.log"
        self.config_path = workdir / "mosquitto.conf"
        data = workdir / "data"
        data.mkdir()
        self.config_path.write_text(
            "\n".join(
                [
                    f"listener {self.port} {self.host}",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {data}/",
                    f"log_dest file {self.log_path}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    # mosquitto started as root drops to user 'mosquitto', which could not
                    # write the temporary persistence folder; stay the current user
                    f"user {getpass.getuser()}",
                    "",
                ]
            )
        )
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        """Start mosquitto and wait until it accepts connections."""
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_port(self.host, self.port, timeout=10.0):
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else "(no log)"
            pytest.fail(f"mosquitto did not listen on {self.url}:\n{log}")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file) and wait for it to exit."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence folder."""
        self.stop()
        self.start()


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


@pytest.fixture
def mosquitto_broker(tmp_path):
    """A private mosquitto (persistence on, anonymous) on a free port; skipped if not installed."""
    binary = _mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto not on PATH")
    broker = MosquittoBroker(binary, tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=["embedded", "mosquitto"])
def broker(request):
    """Either broker; both have ``.url`` and ``.restart()``."""
    return request.getfixturevalue(f"{request.param}_broker")


# --------------------------------------------------------------------------- messages


def _keypoints(cx: float, top: float) -> tuple[Keypoint, ...]:
    """17 COCO keypoints of a standing person centred at column ``cx``."""
    offsets = [
        (0, 0), (-6, -5), (6, -5), (-12, -2), (12, -2),  # nose, eyes, ears
        (-30, 40), (30, 40), (-38, 95), (38, 95), (-40, 145), (40, 145),  # shoulders, elbows, wrists
        (-20, 160), (20, 160), (-22, 250), (22, 250), (-24, 335), (24, 335),  # hips, knees, ankles
    ]
    return tuple(
        Keypoint(x=cx + dx, y=top + dy, score=round(0.95 - 0.02 * i, 2)) for i, (dx, dy) in enumerate(offsets)
    )


@pytest.fixture
def all_message_samples():
    """One valid, realistic instance of every message type in ``contracts.MESSAGE_TYPES``."""
    t0 = 1_717_000_000.0
    cam = Stamper("cam1", run_id="samples")
    ble = Stamper("ble-door", run_id="samples")
    shelf = Stamper("shelf-a", run_id="samples")
    fusion = Stamper("fusion", run_id="samples")
    shopper = "s-7f3a"
    samples = [
        cam.make(
            PersonObservation, t0, camera="cam1", frame=1200, track_id=7, bbox=(412.0, 96.5, 88.0, 341.0),
            score=0.91, keypoints=_keypoints(456.0, 110.0),
            floor=FloorPoint(x=3.42, y=1.87, cov=((0.04, 0.005), (0.005, 0.06))),
        ),
        cam.make(
            HandShelfInteraction, t0 + 0.4, camera="cam1", track_id=7, shelf="shelf-a", face="shelf-a-front",
            phase="exit", hand="right", dwell_s=1.3, keypoint_score=0.82,
        ),
        ble.make(
            BleSighting, t0 + 0.1, node="ble-door", tag="f7826da6-4fa2-4e98-8024-bc5b71e0893e-100-7",
            rssi=-67.0, rssi_smoothed=-65.4, tx_power=-59.0,
        ),
        shelf.make(
            WeightChange, t0 + 0.9, sensor="ws-a1", shelf="shelf-a", plate="a1", delta_g=-412.5, total_g=1650.0,
            noise_g=2.1, started_ts=t0 + 0.3,
        ),
        Stamper("entry-gate", run_id="samples").make(
            CheckIn, t0 - 120.0, tag="f7826da6-4fa2-4e98-8024-bc5b71e0893e-100-7", method="app", zone="entry",
        ),
        fusion.make(
            ShopperLocation, t0 + 1.0, shopper=shopper, track="ft-12", x=3.40, y=1.90,
            cov=((0.02, 0.001), (0.001, 0.03)), vx=0.35, vy=-0.05, sources=("cam1", "ble-door"),
        ),
        fusion.make(ZoneEvent, t0 + 1.0, shopper=shopper, zone="aisle-1", phase="dwell", dwell_s=4.2, probability=0.93),
        fusion.make(
            CartEvent, t0 + 1.1, shopper=shopper, phase="update", cart_version=3,
            change=CartChange(
                sku="SKU-0042", quantity=1, confidence=0.88, needs_review=False, shelf="shelf-a", plate="a1",
                evidence=(cam.make(HandShelfInteraction, t0, camera="cam1", track_id=7, shelf="shelf-a",
                                   face="shelf-a-front", phase="enter", hand="right", dwell_s=0.0,
                                   keypoint_score=0.8).event_id,),
                reason="hand exit from shelf-a matched -412 g on plate a1 (1 × 410 g)",
            ),
        ),
        fusion.make(
            CartState, t0 + 1.1, shopper=shopper, status="open", cart_version=3, total=7.47,
            lines=(
                CartLine(sku="SKU-0042", name="Oat milk 1 l", quantity=2, unit_price=1.99, confidence=0.88),
                CartLine(sku="SKU-0107", name="Dark chocolate 100 g", quantity=1, unit_price=3.49,
                         confidence=0.61, needs_review=True),
            ),
        ),
        fusion.make(
            Receipt, t0 + 300.0, shopper=shopper, receipt_id="r-2024-000123", currency="EUR", total=7.47,
            opened_ts=t0 - 120.0, closed_ts=t0 + 300.0, needs_review=True,
            lines=(
                ReceiptLine(sku="SKU-0042", name="Oat milk 1 l", quantity=2, unit_price=1.99, amount=3.98),
                ReceiptLine(sku="SKU-0107", name="Dark chocolate 100 g", quantity=1, unit_price=3.49, amount=3.49),
            ),
        ),
        fusion.make(
            NodeStatus, t0 + 5.0, node="fusion", kind="fusion", state="online", uptime_s=3600.5,
            counters={"observations_in": 36012, "malformed": 2, "duplicates": 5, "tracks_active": 3},
        ),
    ]
    # Types added to the contracts later are looked up by name, so this fixture works
    # whether or not a given contracts.py already has them.
    later = {
        "check_in": (Stamper("gate-entry", run_id="samples"), t0 - 120.0,
                     dict(tag="f7826da6-4fa2-4e98-8024-bc5b71e0893e-100-7", method="app", zone="entry")),
        "offer": (Stamper("hub", run_id="samples"), t0 + 6.0,
                  dict(shopper=shopper, offer="coffee-pairing", zone="coffee-corner", title="Coffee + butter",
                       text="20 % off the butter with a bag of beans.",
                       trigger=fusion.make(ZoneEvent, t0 + 5.9, shopper=shopper, zone="coffee-corner",
                                           phase="dwell", dwell_s=3.0).event_id)),
        "light_command": (Stamper("hub-lights", run_id="samples"), t0 + 7.0,
                          dict(fixture="L-aisle-ab", route="rt-5e1c", shopper=shopper, action="guide", step=2,
                               color="#22c55e", duration_s=120.0)),
        "shelf_event": (Stamper("fusion-shelf", run_id="samples"), t0 + 8.0,
                        dict(kind="unattributed", shelf="shelf-a", plate="a1", sku="SKU-0042", quantity=1,
                             delta_g=-411.0, change_ts=t0 + 7.2, nearby=({"shopper": shopper, "distance_m": 1.4},),
                             evidence=("e-weight-1",), reason="picked 1 x SKU-0042: -411 g on a1; no hand seen")),
    }
    later["store_analytics"] = (
        Stamper("hub-analytics", run_id="samples"), t0 + 3600.0,
        dict(period_start=t0 - 36000.0, period_end=t0 + 3600.0, k=5,
             summary={"visits": 212, "dwell_median_s": 431.5, "conversion": 0.81, "suppressed": False},
             hourly=({"hour_start": "2024-05-29T09:00:00+02:00", "hours": 1, "visits": 31},),
             zones=({"zone": "aisle-1", "visitors": 120, "conversion": 0.42},),
             notes=("heatmap: k=5; 3 of 180 rows with fewer than 5 visitors suppressed (7 visitor entries)",)))
    for type_name, (stamper, ts, fields) in later.items():
        if type_name in MESSAGE_TYPES:
            samples.append(stamper.make(MESSAGE_TYPES[type_name], ts, **fields))
    assert len({m.event_id for m in samples}) == len(samples), "two samples share an event_id"
    missing = set(MESSAGE_TYPES) - {m.type for m in samples}
    assert not missing, f"add a sample for {sorted(missing)} to all_message_samples in tests/conftest.py"
    return samples
