"""ESPresense device reports (the firmware's own topic and JSON format) to ble_sighting messages."""

from __future__ import annotations

import json
import logging
import time

import pytest

from storesense.contracts import BleSighting
from storesense.edge.ble.espresense import (EspresenseBridge, EspresenseError, EspresenseSource, parse_report,
                                            tag_from_espresense_id)

UUID = "b5b182c7-eab1-4988-aa99-b5c1517008d9"

# Reports as ESPresense 4.x publishes them (BleFingerprint::fill: mac, id, idType, rssi@1m, rssi, raw,
# rssi<channel>/raw<channel>, channel, distance, mean, var, ci, int; numbers it serialises with 2 decimals).
REPORTS = [
    (f"espresense/devices/iBeacon:{UUID}-1-7/ble-sw",
     f'{{"mac":"c4a1f3d2e901","id":"iBeacon:{UUID}-1-7","idType":55,"rssi@1m":-59,"rssi":-71,"raw":3.98,'
     '"rssi38":-71,"raw38":3.98,"channel":38,"distance":3.41,"mean":3.52,"var":0.18,"ci":0.24,"int":1020}'),
    (f"espresense/devices/iBeacon:{UUID}-1-7/ble-ne",
     f'{{"mac":"c4a1f3d2e901","id":"iBeacon:{UUID}-1-7","idType":55,"rssi@1m":-59,"rssi":-83,"raw":9.12,'
     '"rssi37":-83,"raw37":9.12,"channel":37,"distance":8.77,"mean":8.1,"var":1.02,"ci":0.57,"int":998}'),
    ("espresense/devices/eddy:edd1ebeac04e5defa017-0bdb87539b67/ble-sw",
     '{"mac":"e7f1a2b3c4d5","id":"eddy:edd1ebeac04e5defa017-0bdb87539b67","idType":50,"rssi@1m":-62,'
     '"rssi":-66,"raw":1.51,"rssi39":-66,"raw39":1.51,"channel":39,"distance":1.62,"mean":1.6,"var":0.03,'
     '"ci":0.1,"int":310,"mV":3011,"batt":100}'),
    ("espresense/devices/apple:1005:9-26/kitchen",  # a room that is not a store node
     '{"mac":"5a8e2b1c0f77","id":"apple:1005:9-26","idType":-5,"rssi@1m":-65,"rssi":-77,"raw":4.2,'
     '"channel":37,"distance":4.4,"mean":4.4,"var":0.2,"ci":0.25,"int":180}'),
    (f"espresense/devices/iBeacon:{UUID}-1-7/ble-sw", "offline"),  # not JSON
    (f"espresense/devices/iBeacon:{UUID}-1-7/ble-sw", '{"id":"x","distance":2.0}'),  # no rssi
]


def test_tag_ids_match_the_bleak_node():
    assert tag_from_espresense_id(f"iBeacon:{UUID.upper()}-1-7") == f"{UUID}-1-7"
    assert tag_from_espresense_id("eddy:edd1ebeac04e5defa017-0bdb87539b67") == "edd1ebeac04e5defa0170bdb87539b67"
    assert tag_from_espresense_id("apple:1005:9-26") == "apple:1005:9-26"


def test_reports_become_sightings_and_bad_ones_are_skipped_with_the_topic(caplog):
    out = []
    bridge = EspresenseBridge(out.append, nodes={"ble-sw", "ble-ne"}, clock=iter([100.0, 100.2, 100.4]).__next__,
                              run_id="t")
    with caplog.at_level(logging.WARNING):
        for topic, payload in REPORTS:
            bridge.handle(topic, payload.encode())
    assert [(m.node, m.tag, m.rssi, m.tx_power, m.ts) for m in out] == [
        ("ble-sw", f"{UUID}-1-7", -71.0, -59.0, 100.0),
        ("ble-ne", f"{UUID}-1-7", -83.0, -59.0, 100.2),
        ("ble-sw", "edd1ebeac04e5defa0170bdb87539b67", -66.0, -62.0, 100.4),
    ]
    assert all(isinstance(m, BleSighting) and m.source == m.node for m in out)
    assert [m.seq for m in out] == [1, 1, 2]  # per node
    assert bridge.counters == {"reports": 6, "published": 3, "malformed": 2, "unknown_node": 1, "filtered": 0}
    text = caplog.text
    assert "not JSON" in text and "field rssi" in text and "'kitchen'" in text
    assert f"espresense/devices/iBeacon:{UUID}-1-7/ble-sw" in text


def test_rooms_map_to_nodes_and_tags_filter():
    out = []
    bridge = EspresenseBridge(out.append, rooms={"kitchen": "ble-back"}, tags={"apple:1005:9-26"}, clock=lambda: 5.0)
    for topic, payload in REPORTS[:4]:
        bridge.handle(topic, payload)
    assert [(m.node, m.tag) for m in out] == [("ble-back", "apple:1005:9-26")]
    assert bridge.counters["filtered"] == 3


def test_parse_errors_name_the_topic():
    with pytest.raises(EspresenseError, match="not under espresense/devices/"):
        parse_report("espresense/rooms/kitchen/telemetry", "{}")
    with pytest.raises(EspresenseError, match="expected espresense/devices/<device id>/<room>"):
        parse_report("espresense/devices/onlyid", '{"rssi": -60}')
    with pytest.raises(EspresenseError, match="field rssi"):
        parse_report("espresense/devices/a/b", json.dumps({"rssi": True}))


def test_live_source_through_a_broker_into_the_locator(embedded_broker):
    """ESP32s publish to a broker; the source maps their reports and the locator positions the tag."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from storesense.config import example_store_path, load_store_config
    from storesense.ips.setup import setup_from_config

    cfg = load_store_config(example_store_path())
    nodes = [n.id for n in cfg.ble_nodes]
    got = []
    bridge = EspresenseBridge(got.append, nodes=nodes)
    source = EspresenseSource(embedded_broker.url, bridge).start()
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="esp32-sim")
    pub.connect("127.0.0.1", int(embedded_broker.url.rsplit(":", 1)[1]))
    pub.loop_start()
    try:
        tag = f"iBeacon:{UUID}-1-7"
        for k, node in enumerate(nodes * 3):
            body = {"mac": "c4a1f3d2e901", "id": tag, "idType": 55, "rssi@1m": -59, "rssi": -60 - 3 * (k % 5),
                    "raw": 2.0, "channel": 38, "distance": 2.0, "mean": 2.0, "var": 0.1, "ci": 0.1, "int": 1000}
            pub.publish(f"espresense/devices/{tag}/{node}", json.dumps(body), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 10
        while len(got) < 3 * len(nodes) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pub.loop_stop()
        pub.disconnect()
        source.close()
    assert len(got) == 3 * len(nodes)
    locator = setup_from_config(cfg).locator("kalman")
    fixes = locator.run(got)
    assert fixes and all(f.tag == f"{UUID}-1-7" for f in fixes)
    assert cfg.is_walkable(fixes[-1].x, fixes[-1].y)


def test_edge_espresense_command_republishes_real_reports(embedded_broker, tmp_path):
    """``storesense edge espresense``: the firmware's reports from a broker become recorded ble_sightings."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from typer.testing import CliRunner

    from storesense.cli import app
    from storesense.transport.recording import replay

    out = tmp_path / "sightings.jsonl"
    result = {}

    def run():
        result["res"] = CliRunner().invoke(app, ["edge", "espresense", "--mqtt", embedded_broker.url, "--output",
                                                 str(out), "--duration", "4", "--room", "kitchen=ble-se",
                                                 "--run-id", "t"])

    cli = threading.Thread(target=run)
    cli.start()
    pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="esp32-sim")
    pub.connect("127.0.0.1", int(embedded_broker.url.rsplit(":", 1)[1]))
    pub.loop_start()
    try:
        while cli.is_alive():  # the ESP32s report every few hundred ms; the bridge hears them once subscribed
            for topic, payload in REPORTS:
                pub.publish(topic, payload, qos=1).wait_for_publish(5)
            time.sleep(0.2)
        cli.join()
    finally:
        pub.loop_stop()
        pub.disconnect()
    res = result["res"]
    assert res.exit_code == 0, res.output
    got = list(replay(out))
    assert got and all(isinstance(m, BleSighting) for m in got)
    expected = {("ble-sw", f"{UUID}-1-7", -71.0, -59.0), ("ble-ne", f"{UUID}-1-7", -83.0, -59.0),
                ("ble-sw", "edd1ebeac04e5defa0170bdb87539b67", -66.0, -62.0),
                ("ble-se", "apple:1005:9-26", -77.0, -65.0)}  # kitchen, mapped by --room
    assert {(m.node, m.tag, m.rssi, m.tx_power) for m in got} == expected
    assert "ESPresense bridge stopped" in res.output and "malformed" in res.output
    counts = dict(part.rsplit(" ", 1) for part in res.output.split("stopped: ", 1)[1].strip().split(", "))
    assert int(counts["published"]) == len(got) and int(counts["malformed"]) >= 2


def test_edge_espresense_command_refuses_bad_rooms_and_brokers(tmp_path):
    from typer.testing import CliRunner

    from storesense.cli import app
    from storesense.errors import StoresenseError

    res = CliRunner().invoke(app, ["edge", "espresense", "--mqtt", "mqtt://127.0.0.1:1", "--room", "kitchen=nowhere",
                                   "--output", str(tmp_path / "x.jsonl")])
    assert isinstance(res.exception, StoresenseError) and "--room 'kitchen=nowhere'" in str(res.exception)
    res = CliRunner().invoke(app, ["edge", "espresense", "--mqtt", "mqtt://127.0.0.1:1", "--output",
                                   str(tmp_path / "x.jsonl"), "--duration", "1"])
    assert isinstance(res.exception, StoresenseError) and "cannot reach MQTT broker 127.0.0.1:1" in str(res.exception)
