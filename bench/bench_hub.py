"""Benchmark: the store hub's sustained MQTT ingest and its checkout API latency.

Ingest. N fusion messages (a mix of shopper locations, zone events, cart events and
cart states for 50 shoppers, all published with QoS 1) wait at a real broker for a
subscriber's persistent session; the subscriber then connects and drains them. The
rate is N over the time from the first to the N-th message handled. Two
subscribers drain the same N in the same run, in the same process:

- the ceiling: a bare paho-mqtt client that only counts its messages (QoS 1, acked
  by paho after the callback, as the hub's are);
- the hub: ``HubService`` as ``storesense hub`` runs it (decode, store in SQLite WAL
  or PostgreSQL in batched transactions, each message's PUBACK sent after the commit
  that holds it, offer engine, live feed, HTTP server idle), and then nothing may be
  missing: every event id is checked in the database.

The broker is the store's own, started as ``storesense store up`` starts it
(:func:`~storesense.transport.local_broker.start_local_broker`, its generated
config) on a free port: ``--broker mosquitto`` (default; persistence with a 5 s
autosave, ``max_inflight_messages 1000``), ``nats`` (nats-server's MQTT listener,
JetStream on disk) or ``amqtt``.

Checkout API. Against the same hub over HTTP (keep-alive, one client): GET a cart,
POST a checkout (local payment provider, settlement written), GET the text receipt,
each R times on different sessions; p50/p99 next to a bare FastAPI endpoint on the
same uvicorn set-up (the framework's floor).

    python bench/bench_hub.py [--events 20000] [--requests 300] [--postgres URL|none] [--pg-events 20000]
                              [--broker mosquitto|nats|amqtt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from storesense.config import example_store_path, load_store_config
from storesense.contracts import (
    CartChange,
    CartEvent,
    CartLine,
    CartState,
    ShopperLocation,
    Stamper,
    ZoneEvent,
    encode,
    topic_for,
)
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import HttpServer, HubService
from storesense.transport import parse_mqtt_url
from storesense.transport.local_broker import start_local_broker

CFG = load_store_config(example_store_path())
STORE = CFG.store.id
TOKEN = "bench-token"


# --------------------------------------------------------------------------- broker


def start_broker(engine: str):
    """The store's own broker as ``storesense store up`` starts it (generated config), on a free port."""
    broker = start_local_broker("127.0.0.1", 0, tempfile.mkdtemp(prefix="bench-hub-broker-"), engine=engine)
    if broker.engine == "amqtt":
        broker.name = "embedded amqtt broker"
    else:
        flag = "--version" if broker.engine == "nats" else "-h"
        out = subprocess.run([broker.binary, flag], capture_output=True, text=True).stdout.splitlines()
        broker.name = f"{broker.engine}: {out[0] if out else broker.binary}"
    return broker


# --------------------------------------------------------------------------- messages


def fusion_stream(n: int, run: str) -> list:
    """N fusion messages: 40 % locations, 20 % zone events, 25 % cart events, 15 % cart states."""
    f = Stamper("fusion", run_id=run)
    out = []
    cov = ((0.05, 0.0), (0.0, 0.05))
    zones = ["aisle-ab", "aisle-bc", "coffee-corner", "store"]
    skus = [p.sku for p in CFG.products]
    versions: dict[str, int] = {}
    for i in range(n):
        shopper = f"s-bench-{i % 50:02d}"
        kind = i % 20
        ts = 1000.0 + i * 0.01
        if kind < 8:
            msg = f.make(ShopperLocation, ts, shopper=shopper, track=f"t{i % 50}", x=2.0 + (i % 80) / 10,
                         y=1.0 + (i % 60) / 10, cov=cov)
        elif kind < 12:
            msg = f.make(ZoneEvent, ts, shopper=shopper, zone=zones[i % 4], phase="enter" if kind % 2 else "exit")
        elif kind < 17:
            versions[shopper] = versions.get(shopper, 0) + 1
            msg = f.make(CartEvent, ts, shopper=shopper, phase="update", cart_version=versions[shopper],
                         change=CartChange(sku=skus[i % len(skus)], quantity=1, confidence=0.9))
        else:
            v = versions.get(shopper, 0)
            msg = f.make(CartState, ts, shopper=shopper, status="open", cart_version=v, total=1.09 * v,
                         lines=(CartLine(sku="MILK-1L", name="Whole milk 1 l", quantity=max(v, 0), unit_price=1.09,
                                         confidence=0.9),) if v else ())
        out.append(msg)
    return out


def preload(url: str, messages: list) -> None:
    """Publish every message with QoS 1 and wait for all PUBACKs."""
    host, port, _, _ = parse_mqtt_url(url)
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}",
                         protocol=paho.MQTTv311)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    infos = [client.publish(topic_for(STORE, m), encode(m), qos=1) for m in messages]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def register(url: str, client_id: str) -> None:
    """Create a persistent session subscribed to the store's topics, then leave (messages now queue)."""
    host, port, _, _ = parse_mqtt_url(url)
    done = threading.Event()
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                    protocol=paho.MQTTv311)
    c.on_subscribe = lambda *a: done.set()
    c.on_connect = lambda cl, *a: cl.subscribe(f"storesense/{STORE}/#", qos=1)
    c.connect(host, port)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


# --------------------------------------------------------------------------- the two subscribers


def drain_bare(url: str, client_id: str, n: int) -> float:
    """Seconds from the first to the n-th of n queued messages at a bare paho subscriber."""
    host, port, _, _ = parse_mqtt_url(url)
    count = [0]
    first = [0.0]
    done = threading.Event()

    def on_message(client, userdata, message):
        count[0] += 1
        if count[0] == 1:
            first[0] = time.perf_counter()
        if count[0] >= n:
            done.set()

    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                    protocol=paho.MQTTv311)
    c.on_message = on_message
    c.connect(host, port)
    c.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"bare subscriber got {count[0]} of {n}")
    elapsed = time.perf_counter() - first[0]
    c.disconnect()
    c.loop_stop()
    return elapsed


def drain_hub(url: str, client_id: str, messages: list, db: str) -> tuple[float, HubService]:
    """Seconds from the first to the n-th message stored by the hub; checks none is missing.

    Returns the seconds and the running hub.
    """
    registry = TerminalRegistry.from_tokens({"bench-till": TOKEN})
    hub = HubService(CFG, db=db, mqtt_url=url, terminals=registry, client_id=client_id, port=0)
    n = len(messages)
    stored = [0]
    stamps = [0.0, 0.0]
    done = threading.Event()

    def on_stored(change) -> None:  # called after each commit of a new message
        if change.kind != "message" or change.msg.source != "fusion":  # not the hub's own offers
            return
        stored[0] += 1
        if stored[0] == 1:
            stamps[0] = time.perf_counter()
        if stored[0] == n:
            stamps[1] = time.perf_counter()
            done.set()

    hub.store.add_listener(on_stored)
    hub.start()
    if not done.wait(600):
        raise RuntimeError(f"the hub stored {stored[0]} of {n} in 600 s")
    elapsed = stamps[1] - stamps[0]
    ids = set(hub.store.event_ids())
    missing = [m.event_id for m in messages if m.event_id not in ids]
    if missing:
        raise RuntimeError(f"the hub lost {len(missing)} of {n} events")
    return elapsed, hub


# --------------------------------------------------------------------------- API latency


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 2), "p99_ms": round(q[98] * 1000, 2), "n": len(samples)}


def api_latency(hub: HubService, requests: int) -> dict:
    """Per-request latency of GET cart, POST checkout, GET receipt text over HTTP, on fresh sessions."""
    f = Stamper("fusion", run_id=f"api-{uuid.uuid4().hex[:6]}")
    shoppers = [f"s-api-{i:04d}" for i in range(requests)]
    for s in shoppers:
        hub.store.ingest(f.make(CartEvent, 1.0, shopper=s, phase="new", cart_version=0))
        for v, sku in enumerate(("MILK-1L", "COFFEE-500", "BREAD-500"), 1):
            hub.store.ingest(f.make(CartEvent, 1.0 + v, shopper=s, phase="update", cart_version=v,
                                    change=CartChange(sku=sku, quantity=1, confidence=0.9)))
        hub.store.ingest(f.make(CartEvent, 9.0, shopper=s, phase="end", cart_version=3))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    out: dict[str, list[float]] = {"GET /api/carts/{shopper}": [], "POST /api/carts/{shopper}/checkout": [],
                                   "GET /api/receipts/{id}/text": []}
    with httpx.Client(base_url=hub.http.url, timeout=30) as http:
        for _ in range(20):  # warm-up
            http.get(f"/api/carts/{shoppers[0]}", headers=headers)
        for s in shoppers:
            t = time.perf_counter()
            r = http.get(f"/api/carts/{s}", headers=headers)
            out["GET /api/carts/{shopper}"].append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            t = time.perf_counter()
            r = http.post(f"/api/carts/{s}/checkout", headers=headers, json={"method": "card"})
            out["POST /api/carts/{shopper}/checkout"].append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            t = time.perf_counter()
            r = http.get(r.json()["text_url"], headers=headers)
            out["GET /api/receipts/{id}/text"].append(time.perf_counter() - t)
            assert r.status_code == 200
    return {k: percentiles(v) for k, v in out.items()}


def bare_fastapi_latency(requests: int) -> dict:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    server = HttpServer(app, "127.0.0.1", 0).start()
    samples = []
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(20):
                http.get("/ping")
            for _ in range(requests):
                t = time.perf_counter()
                http.get("/ping")
                samples.append(time.perf_counter() - t)
    finally:
        server.stop()
    return percentiles(samples)


# --------------------------------------------------------------------------- main


def postgres_url(given: str | None) -> str | None:
    if given == "none":
        return None
    url = given or "postgresql://postgres@127.0.0.1:5432/test"
    try:
        import psycopg

        schema = f"bench_hub_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}options=-csearch_path%3D{schema}"
    except Exception as exc:  # noqa: BLE001 - PostgreSQL is optional here
        print(f"(PostgreSQL run skipped: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc})")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="messages to drain per subscriber")
    parser.add_argument("--requests", type=int, default=300, help="API requests per endpoint")
    parser.add_argument("--postgres", default=None,
                        help="PostgreSQL URL for a second hub run ('none' to skip; default: the local test database "
                             "when reachable)")
    parser.add_argument("--pg-events", type=int, default=20000, help="messages for the PostgreSQL run")
    parser.add_argument("--broker", default="mosquitto", choices=["mosquitto", "nats", "amqtt", "auto"],
                        help="the store broker to run the drain through")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    broker = start_broker(args.broker)
    work = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    results: dict = {"machine": f"{platform.machine()}, {platform.python_version()}", "broker": broker.name,
                     "events": args.events}
    try:
        messages = fusion_stream(args.events, run=uuid.uuid4().hex)
        runs = [("bare paho counter", None), ("hub, SQLite WAL", str(work / "hub.db"))]
        pg = postgres_url(args.postgres)
        if pg:
            runs.append(("hub, PostgreSQL", pg))
        hubs = []
        for name, db in runs:
            batch = messages[:args.pg_events] if db is not None and db.startswith("postgresql") else messages
            client_id = f"bench-{name.split(',')[0].replace(' ', '-')}-{uuid.uuid4().hex[:6]}"
            register(broker.url, client_id)
            preload(broker.url, batch)
            if db is None:
                seconds = drain_bare(broker.url, client_id, len(batch))
            else:
                seconds, hub = drain_hub(broker.url, client_id, batch, db)
                hubs.append((name, hub))
            results[name] = {"events": len(batch), "seconds": round(seconds, 3),
                             "events_per_s": round(len(batch) / seconds)}
            print(f"{name:<20} {len(batch)} events in {seconds:6.2f} s = {len(batch) / seconds:8.0f} events/s"
                  + ("  (all stored, none missing)" if db else ""))
        ceiling = results["bare paho counter"]["events_per_s"]
        for name, _ in runs[1:]:
            results[name]["ratio_to_bare"] = round(results[name]["events_per_s"] / ceiling, 3)
            print(f"{name}: {results[name]['ratio_to_bare']:.2f} x the bare paho counter")

        print(f"\ncheckout API latency over HTTP ({args.requests} requests each, keep-alive):")
        floor = bare_fastapi_latency(args.requests)
        results["api"] = {"bare FastAPI GET /ping": floor}
        print(f"  {'bare FastAPI GET /ping':<38} p50 {floor['p50_ms']:7.2f} ms  p99 {floor['p99_ms']:7.2f} ms")
        for name, hub in hubs:
            lat = api_latency(hub, args.requests)
            results["api"][name] = lat
            for endpoint, v in lat.items():
                print(f"  {name + ': ' + endpoint:<38} p50 {v['p50_ms']:7.2f} ms  p99 {v['p99_ms']:7.2f} ms")
        for _, hub in hubs:
            hub.stop()
    finally:
        broker.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
