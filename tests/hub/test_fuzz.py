"""Strict input at the boundaries: malformed payloads among valid ones, to the hub over a real
Mosquitto and to the fusion node's ZeroMQ subscriber. Nothing valid is lost, nothing invalid is
stored, no traceback is logged and neither end stops."""

from __future__ import annotations

import json
import logging
import random
import time
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from storesense.config import example_store_path, load_store_config
from storesense.contracts import (
    MAX_MESSAGE_BYTES,
    CartChange,
    CartEvent,
    CartLine,
    CartState,
    Decoder,
    NodeStatus,
    ShopperLocation,
    Stamper,
    encode,
    topic_for,
)
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import HubService
from storesense.transport import ZmqPublisher, ZmqSubscriber, parse_mqtt_url

CFG = load_store_config(example_store_path())
STORE = CFG.store.id
N_BAD = 10_000
EVERY = 20  # one valid message after every EVERY malformed ones


def valid_stream(n: int, run: str) -> list:
    """``n`` valid fusion messages of the kinds the hub projects (ids from ``run``)."""
    st = Stamper("fusion", run_id=run)
    out = []
    for i in range(n):
        shopper = f"s-fz{i % 7}"
        k = i % 4
        if k == 0:
            out.append(st.make(ShopperLocation, 1000.0 + i, shopper=shopper, track=f"ft-{i % 7}", x=1.0 + i % 5,
                               y=2.0, cov=((0.02, 0.0), (0.0, 0.02))))
        elif k == 1:
            out.append(st.make(CartEvent, 1000.0 + i, shopper=shopper, phase="update", cart_version=i,
                               change=CartChange(sku="MILK-1L", quantity=1, confidence=0.9)))
        elif k == 2:
            out.append(st.make(CartState, 1000.0 + i, shopper=shopper, status="open", cart_version=i, total=1.09,
                               lines=(CartLine(sku="MILK-1L", name="Milk", quantity=1, unit_price=1.09,
                                               confidence=0.9),)))
        else:
            out.append(st.make(NodeStatus, 1000.0 + i, node="fusion", kind="fusion", state="online",
                               counters={"n": i}))
    return out


def _as_dict(msg) -> dict:
    return json.loads(encode(msg))


def malformed(rng: random.Random, i: int, template, camera_topic: str) -> tuple[str, bytes]:
    """One malformed (topic, payload), of the kind ``i % 16``; its event id (if any) starts ``bad-``."""
    topic = topic_for(STORE, template)
    body = _as_dict(template)
    body["event_id"] = f"bad-{i}"
    kind = i % 16
    if kind == 0:  # a cart_state on a shopper's location topic
        body.update(type="cart_state", status="open", total=1.0, cart_version=1)
        for key in ("track", "x", "y", "cov", "vx", "vy", "sources", "change", "phase", "node", "kind", "state",
                    "uptime_s", "counters", "warnings"):
            body.pop(key, None)
        body.setdefault("shopper", "s-fz0")
        return f"storesense/{STORE}/shoppers/{body['shopper']}/location", json.dumps(body).encode()
    if kind == 1:  # the message under a camera's topic (a camera login forging a bill)
        return camera_topic, json.dumps(body).encode()
    if kind == 2:  # an event id of thousands of characters
        body["event_id"] = "bad-" + "x" * rng.randint(200, 5000)
    elif kind == 3:  # an event id of arbitrary text
        body["event_id"] = f"bad-{i} " + rng.choice(["'; DROP TABLE events; --", "ü/ä", "a\nb", "../../etc", "#+"])
    elif kind == 4:  # deep nesting inside a field
        depth = rng.randint(20, 3000)
        return topic, (json.dumps(body)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}").encode()
    elif kind == 5:  # deep nesting of the whole document
        depth = rng.randint(500, 5000)
        return topic, ("[" * depth + "]" * depth).encode()
    elif kind == 6:  # a sequence number beyond 64 bits
        body["seq"] = 2**64 + rng.randint(0, 1000)
    elif kind == 7:  # a lone surrogate in a string
        return topic, json.dumps(body).replace("bad-", "bad-\\ud800", 1).encode()
    elif kind == 8:  # an integer of thousands of digits
        return topic, json.dumps(body).replace(f'"seq": {body["seq"]}', '"seq": ' + "9" * rng.randint(4301, 6000)).encode()
    elif kind == 9:  # a type that is not a string
        return topic, rng.choice([b'{"type":[]}', b'{"type":{}}', b'{"type":null,"v":1}', b'{"type":1.5}'])
    elif kind == 10:  # truncated
        data = json.dumps(body).encode()
        return topic, data[: rng.randint(1, len(data) - 1)]
    elif kind == 11:  # random bytes
        return topic, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
    elif kind == 12:  # NaN / Infinity
        return topic, json.dumps(body).replace(f'"ts": {body["ts"]}', '"ts": ' + rng.choice(["NaN", "Infinity"])).encode()
    elif kind == 13:  # a field that does not exist, or a negative sequence number
        if rng.random() < 0.5:
            body["admin"] = True
        else:
            body["seq"] = -rng.randint(0, 10)
    elif kind == 14:  # a subject that does not match the topic (the topic names the shopper or node)
        for key in ("shopper", "node"):
            if key in body:
                body[key] = "s-other" if key == "shopper" else "cam9"
    else:  # oversized, rarely (each is a quarter of a megabyte)
        if i % 160 == 15:
            body["pad"] = "x" * MAX_MESSAGE_BYTES
        else:
            body["v"] = rng.choice([0, 2, "1", None])
    return topic, json.dumps(body).encode()


def _fuzz_items(seed: int = 15):
    rng = random.Random(seed)
    valid = valid_stream(N_BAD // EVERY, run=f"fuzz-{uuid.uuid4().hex[:6]}")
    templates = valid_stream(16, run="templates")
    camera_topic = f"storesense/{STORE}/edge/cam1/person"
    items, bad_ids = [], 0
    for i in range(N_BAD):
        items.append(malformed(rng, i, templates[i % len(templates)], camera_topic))
        bad_ids += 1
        if i % EVERY == EVERY - 1:
            msg = valid[i // EVERY]
            items.append((topic_for(STORE, msg), encode(msg)))
    return items, valid


def _no_tracebacks(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text


def test_decoder_rejects_every_malformed_payload_in_one_line(caplog):
    items, valid = _fuzz_items()
    dec = Decoder("fuzz", check_topic=True)
    with caplog.at_level(logging.WARNING):
        got = [m for topic, payload in items if (m := dec.decode(payload, topic)) is not None]
    assert [m.event_id for m in got] == [m.event_id for m in valid]
    assert dec.rejected_total == N_BAD
    _no_tracebacks(caplog)
    # one line per kind of reason per 10 s, not one per message
    assert len(caplog.records) < 60, len(caplog.records)


def test_hub_stores_every_valid_message_and_no_malformed_one(mosquitto_broker, tmp_path, caplog):
    registry = TerminalRegistry.from_tokens({"till-1": "till-secret"})
    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=mosquitto_broker.url, terminals=registry,
                     client_id=f"test-hub-{uuid.uuid4().hex[:8]}", port=0)
    items, valid = _fuzz_items()
    host, port, _, _ = parse_mqtt_url(mosquitto_broker.url)
    raw = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:6]}")
    with caplog.at_level(logging.WARNING):
        hub.start()
        try:
            raw.connect(host, port)
            raw.loop_start()
            # in chunks the hub keeps up with: the broker queues at most 1000 messages per client
            for start in range(0, len(items), 500):
                for topic, payload in items[start:start + 500]:
                    raw.publish(topic, payload, qos=1)
                sent = min(start + 500, len(items))
                deadline = time.monotonic() + 30
                while hub.ingest.malformed + hub.ingest.stored < sent and time.monotonic() < deadline:
                    time.sleep(0.05)
            deadline = time.monotonic() + 30
            want = {m.event_id for m in valid}
            while time.monotonic() < deadline:
                if want <= set(hub.store.event_ids()) and hub.ingest.malformed >= N_BAD:
                    break
                time.sleep(0.2)
            stored = set(hub.store.event_ids())
            assert want <= stored, f"{len(want - stored)} valid message(s) not stored"
            assert not [e for e in stored if e.startswith("bad-")], "a malformed message was stored"
            assert hub.ingest.malformed == N_BAD
            assert hub.ingest.running
        finally:
            raw.loop_stop()
            raw.disconnect()
            hub.stop()
    _no_tracebacks(caplog)


def test_fusion_subscriber_survives_malformed_frames_and_keeps_valid_ones(caplog):
    items, valid = _fuzz_items(seed=16)
    items = items[: len(items) // 2]
    sub = ZmqSubscriber("tcp://127.0.0.1:*")
    pub = ZmqPublisher(sub.endpoint, store=STORE)
    got = []
    try:
        deadline = time.monotonic() + 5
        while not pub.wait_for_subscriber(0.05) and time.monotonic() < deadline:
            sub.recv(0.01)
        with caplog.at_level(logging.WARNING):
            for n, (topic, payload) in enumerate(items):
                pub._sock.send_multipart([topic.encode("utf-8"), payload])
                if n % 200 == 0:  # drain as we go, like the fusion node's loop
                    while (m := sub.recv(0)) is not None or sub._sock.poll(0):
                        if m is not None:
                            got.append(m.event_id)
            idle = time.monotonic()
            while time.monotonic() - idle < 1.0:
                m = sub.recv(0.1)
                if m is not None:
                    got.append(m.event_id)
                    idle = time.monotonic()
    finally:
        pub.close(0)
        sub.close()
    sent = {payload for _, payload in items}
    sent_valid = [m.event_id for m in valid if encode(m) in sent]
    assert got == sent_valid and len(got) >= N_BAD // EVERY // 2
    _no_tracebacks(caplog)
