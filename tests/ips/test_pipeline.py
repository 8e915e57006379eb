"""Recorded BLE sightings replayed through a real MQTT broker into positioning and geofencing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from storesense.transport.recording import record, replay
from storesense.datasets.scoring.ips import load_truth_csv, score_against_truth, setup_from_config
from storesense.ips.geofence import Geofence, is_in_store_event
from storesense.ips.locator import floor_point
from storesense.transport import MqttPublisher, MqttSubscriber

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ble" / "kolakowski2021"


def test_replay_through_a_real_broker_into_positions_and_zone_events(embedded_broker, store_walk):
    cfg, folder, sc, _ = store_walk
    setup = setup_from_config(cfg)
    locator = setup.locator("kalman")
    fence = Geofence(cfg.zones, source="fusion")
    fixes, events, received = [], [], []
    lock = threading.Lock()

    def on_message(msg, topic):
        with lock:
            received.append(msg)

    sub = MqttSubscriber(embedded_broker.url, store=cfg.store.id, client_id="ips-test",
                         topics=[f"storesense/{cfg.store.id}/edge/+/ble"], on_message=on_message)
    sub.connect()
    pubs = {}
    try:
        sent = list(replay(folder / "sightings.jsonl"))
        for msg in sent:  # each BLE node publishes its own sightings, as on site
            if msg.node not in pubs:
                pubs[msg.node] = MqttPublisher(embedded_broker.url, store=cfg.store.id, node=msg.node, kind="ble")
                pubs[msg.node].connect()
            pubs[msg.node].publish(msg)
        for p in pubs.values():
            p.flush(10.0)
        deadline = time.monotonic() + 15.0
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for p in pubs.values():
            p.close()
        sub.close()
    assert len(received) >= 0.98 * len(sent)  # QoS 0 on a local broker: all of them in practice
    with lock:
        ordered = sorted(received, key=lambda m: (m.ts, m.source, m.seq))
    for msg in ordered:
        for fix in locator.handle(msg):
            fixes.append(fix)
            events += fence.update(fix.tag, fix.ts, fix.x, fix.y, fix.cov)
    fixes += locator.flush()
    assert {f.tag for f in fixes} == {s.tag for s in sc.shoppers}
    score = score_against_truth("kalman", fixes, load_truth_csv(folder / "truth.csv"))
    assert score.summary()["n"] >= 0.9 * len(fixes)
    assert score.summary()["median"] < 2.0  # 5 nodes in a 12 m x 8 m shop with 4 dB shadowing
    fp = floor_point(fixes[-1])  # what the fusion node receives
    assert fp.cov[0][0] > 0 and fp.cov[1][1] > 0
    in_store = [e for e in events if is_in_store_event(e, cfg.zones)]
    assert sorted(e.shopper for e in in_store) == sorted(s.tag for s in sc.shoppers)  # each phone once


def test_eval_ips_on_the_projects_own_recording(store_walk, tmp_path):
    from typer.testing import CliRunner

    from storesense.cli import app

    cfg, folder, _, _ = store_walk
    res = CliRunner().invoke(app, ["eval", "ips", str(folder / "sightings.jsonl"), "--truth",
                                   str(folder / "truth.csv"), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    for m in ("trilateration", "Kalman", "particle"):
        assert m in res.output
    assert (tmp_path / "ips_error_cdf.png").stat().st_size > 10_000
    assert (tmp_path / "ips_tracks.png").stat().st_size > 10_000


@pytest.mark.skipif(not DATA.is_dir(), reason=f"Kolakowski BLE dataset not found at {DATA}")
def test_kolakowski_sightings_replay_through_the_broker(embedded_broker, tmp_path):
    """Real RSSI recorded as the project's sightings, through MQTT, into the particle filter."""
    from storesense.datasets.loaders.kolakowski import KolakowskiDataset, track_sightings
    from storesense.datasets.scoring.ips import score_fixes, setup_from_dataset

    ds = KolakowskiDataset(DATA)
    track = ds.robot_track().subset(slice(300, 420))  # hall and living room
    record(track_sightings(track), tmp_path / "robot.jsonl", "flat")
    sent = list(replay(tmp_path / "robot.jsonl"))
    got = []
    sub = MqttSubscriber(embedded_broker.url, store="flat", client_id="ips-k", on_message=lambda m, t: got.append(m))
    sub.connect()
    pub = MqttPublisher(embedded_broker.url, store="flat", node="anchors", kind="ble")
    pub.connect()
    try:
        for m in sent:
            pub.publish(m)
        pub.flush(10.0)
        deadline = time.monotonic() + 15.0
        while len(got) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pub.close()
        sub.close()
    assert len(got) >= 0.98 * len(sent)
    got.sort(key=lambda m: (m.ts, m.source, m.seq))
    setup = setup_from_dataset(ds)
    score = score_fixes("particle", setup.locator("particle").run(got), track)
    assert score.coverage > 0.95
    assert score.summary()["median"] < 1.5


def test_eval_ips_bad_inputs_are_one_clear_error(tmp_path):
    from typer.testing import CliRunner

    from storesense.cli import app
    from storesense.errors import StoresenseError

    cases = [
        (["eval", "ips", str(tmp_path / "missing")], "no such file or folder"),
        (["eval", "ips", str(tmp_path)], "not a Kolakowski BLE dataset folder"),
    ]
    rec = tmp_path / "rec.jsonl"
    rec.write_text('{"topic": "x", "msg": {"type": "nonsense"}}\nnot json\n')
    cases.append((["eval", "ips", str(rec)], "needs --truth"))
    (tmp_path / "truth.csv").write_text("ts,tag,x,y\n1,t,0,0\n")
    cases.append((["eval", "ips", str(rec), "--truth", str(tmp_path / "truth.csv")], "no ble_sighting messages"))
    for args, words in cases:
        res = CliRunner().invoke(app, args)
        assert isinstance(res.exception, StoresenseError) and words in str(res.exception), (args, res.output)
