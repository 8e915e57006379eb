"""ESPresense receivers as BLE sources: their MQTT reports mapped to ``ble_sighting`` messages.

ESPresense (https://espresense.com) is firmware for ESP32 boards that scans BLE
and publishes, per device it hears, one JSON message on
``espresense/devices/<device id>/<room>`` (with ``pub_devices`` on, the default),
for example::

    espresense/devices/iBeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9-1-7/ble-sw
    {"mac": "c4a1f3d2e901", "id": "iBeacon:b5b182c7-eab1-4988-aa99-b5c1517008d9-1-7",
     "idType": 55, "rssi@1m": -59, "rssi": -71, "raw": 3.98, "channel": 38,
     "distance": 3.41, "mean": 3.52, "var": 0.18, "ci": 0.24, "int": 1020}

``<room>`` is the node's room name (slugified); a store names each ESP32 after
its ``ble_nodes`` id, or gives a ``rooms`` mapping room -> node id. Only the raw
RSSI (``rssi``, dBm of the last packet) and ``rssi@1m`` (the tag's calibrated
power, our ``tx_power``) are used: ESPresense's own ``distance`` comes from its
one-number model and filter, while the fusion node fits each receiver
(:mod:`storesense.calibration.ble`) and does its own windowing.

Tag ids follow the project's bleak node, so a phone heard by both kinds of
receivers is one tag: ``iBeacon:<uuid>-<major>-<minor>`` becomes
``<uuid>-<major>-<minor>``, ``eddy:<namespace>-<instance>`` becomes
``<namespace><instance>``; other ESPresense ids (``apple:...``, ``mac``-based
ones) are kept as they are. The payload carries no time, so a sighting is
stamped when the bridge receives it.

:class:`EspresenseBridge` does the mapping (no network: ``handle(topic,
payload)``); a bad topic or payload is logged with the topic and the reason,
counted, and skipped. :class:`EspresenseSource` subscribes to a broker (the one
the ESP32s publish to) and feeds the bridge.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from ...contracts import BleSighting, Envelope, Stamper
from ...errors import StoresenseError

log = logging.getLogger(__name__)

#: The topic ESPresense publishes device reports under (``<prefix>/<device id>/<room>``).
DEVICES_PREFIX = "espresense/devices/"


class EspresenseError(StoresenseError):
    """A topic or payload that is not an ESPresense device report."""


def tag_from_espresense_id(device_id: str) -> str:
    """The storesense tag id of an ESPresense device id (see the module docs)."""
    if device_id.lower().startswith("ibeacon:"):
        return device_id.split(":", 1)[1].lower()
    if device_id.startswith("eddy:"):
        return device_id[5:].replace("-", "").lower()
    return device_id


def parse_report(topic: str, payload: bytes | str) -> tuple[str, str, float, float | None]:
    """``(room, tag, rssi, tx_power)`` of one device report; raises :class:`EspresenseError` with the reason."""
    if not topic.startswith(DEVICES_PREFIX):
        raise EspresenseError(f"topic {topic!r}: not under {DEVICES_PREFIX}")
    rest = topic[len(DEVICES_PREFIX):]
    device_id, sep, room = rest.rpartition("/")
    if not sep or not device_id or not room:
        raise EspresenseError(f"topic {topic!r}: expected {DEVICES_PREFIX}<device id>/<room>")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EspresenseError(f"topic {topic}: payload is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EspresenseError(f"topic {topic}: payload is not a JSON object")
    rssi = doc.get("rssi")
    if isinstance(rssi, bool) or not isinstance(rssi, (int, float)) or not math.isfinite(rssi) or not -130 <= rssi <= 20:
        raise EspresenseError(f"topic {topic}: field rssi: expected dBm between -130 and 20, got {rssi!r}")
    ref = doc.get("rssi@1m")
    tx_power = float(ref) if isinstance(ref, (int, float)) and not isinstance(ref, bool) and math.isfinite(ref) \
        and -130 <= ref <= 20 else None
    ident = doc.get("id") if isinstance(doc.get("id"), str) and doc.get("id") else device_id
    return room, tag_from_espresense_id(ident), float(rssi), tx_power


class EspresenseBridge:
    """ESPresense device reports in, ``BleSighting`` messages out (through ``publish``).

    ``rooms`` maps ESPresense room names to node ids (a room not in it is used
    as the node id); with ``nodes`` given, reports from other nodes are dropped
    (counted in ``unknown_node``, logged once per room). ``tags`` keeps only
    those tag ids (default: all). ``clock`` stamps the sightings.
    """

    def __init__(self, publish: Callable[[Envelope], None], *, rooms: Mapping[str, str] | None = None,
                 nodes: Iterable[str] | None = None, tags: Iterable[str] | None = None,
                 clock: Callable[[], float] = time.time, run_id: str | None = None):
        self.publish = publish
        self.rooms = dict(rooms or {})
        self.nodes = set(nodes) if nodes is not None else None
        self.tags = set(tags) if tags is not None else None
        self.clock = clock
        self.run_id = run_id
        self._stampers: dict[str, Stamper] = {}
        self._warned_rooms: set[str] = set()
        self._lock = threading.Lock()
        self.counters = {"reports": 0, "published": 0, "malformed": 0, "unknown_node": 0, "filtered": 0}

    def handle(self, topic: str, payload: bytes | str) -> BleSighting | None:
        """Map one MQTT message; return the sighting published, or None (skipped, with the reason logged)."""
        with self._lock:
            self.counters["reports"] += 1
            try:
                room, tag, rssi, tx_power = parse_report(topic, payload)
            except EspresenseError as exc:
                self.counters["malformed"] += 1
                log.warning("ESPresense: skipped a report: %s", exc)
                return None
            node = self.rooms.get(room, room)
            if self.nodes is not None and node not in self.nodes:
                self.counters["unknown_node"] += 1
                if room not in self._warned_rooms:
                    self._warned_rooms.add(room)
                    log.warning("ESPresense: room %r (topic %s) is not a configured BLE node; name the ESP32 after "
                                "its ble_nodes id or map it with rooms", room, topic)
                return None
            if self.tags is not None and tag not in self.tags:
                self.counters["filtered"] += 1
                return None
            st = self._stampers.get(node)
            if st is None:
                st = self._stampers[node] = Stamper(node, run_id=self.run_id)
            msg = st.make(BleSighting, float(self.clock()), node=node, tag=tag, rssi=rssi, tx_power=tx_power)
            self.counters["published"] += 1
        self.publish(msg)
        return msg


class EspresenseSource:
    """Subscribes to ``espresense/devices/#`` on the ESP32s' broker and feeds an :class:`EspresenseBridge`.

    ``start()`` connects (raises :class:`StoresenseError` naming the URL when the
    broker cannot be reached) and re-subscribes after every reconnect; ``close()``
    stops it.
    """

    def __init__(self, url: str, bridge: EspresenseBridge, *, client_id: str = "storesense-espresense"):
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        from ...transport.mqtt import parse_mqtt_url

        self.url = url
        self.bridge = bridge
        self.host, self.port, user, password = parse_mqtt_url(url)
        self._client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=True, protocol=paho.MQTTv311)
        if user is not None:
            self._client.username_pw_set(user, password)
        self._client.suppress_exceptions = True
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = lambda client, userdata, m: self.bridge.handle(m.topic, m.payload)
        self._subscribed = threading.Event()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("ESPresense source: broker %s refused the connection: %s", self.host, reason_code)
            return
        client.subscribe(DEVICES_PREFIX + "#", qos=0)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def start(self, timeout: float = 10.0) -> "EspresenseSource":
        """Connect, subscribe and start the network thread."""
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise StoresenseError(f"ESPresense source: cannot reach MQTT broker {self.host}:{self.port}: {exc}") from None
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise StoresenseError(f"ESPresense source: no connection to {self.host}:{self.port} within {timeout:g} s")
        return self

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()


def run_bridge(url: str, publish: Callable[[Envelope], None], *, rooms: Mapping[str, str] | None = None,
               nodes: Iterable[str] | None = None, tags: Iterable[str] | None = None,
               duration_s: float | None = None, run_id: str | None = None,
               started: threading.Event | None = None) -> dict[str, int]:
    """Subscribe to the ESP32s' broker at ``url`` and publish their reports as sightings until Ctrl-C
    (or for ``duration_s``); returns the bridge's counters. ``started`` is set once subscribed."""
    bridge = EspresenseBridge(publish, rooms=rooms, nodes=nodes, tags=tags, run_id=run_id)
    source = EspresenseSource(url, bridge).start()
    if started is not None:
        started.set()
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    return dict(bridge.counters)
