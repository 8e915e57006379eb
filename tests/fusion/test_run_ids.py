"""Fresh ids per live run: `storesense fusion` run twice into one hub, both runs stored in full.

Before, every live run used the run id "fusion": a hub that had stored the first run
dropped the second run's messages as duplicates and its shoppers and receipts reused
the first run's ids. Also: ids carry the store id, so two stores never collide.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import yaml

from storesense.config import example_store_path, load_store_config
from storesense.contracts import Receipt
from storesense.datasets.sim.synthetic import generate_scenario
from storesense.fusion.node import FusionNode, run
from storesense.hub.ingest import HubIngest
from storesense.hub.store import HubStore
from storesense.transport import ZmqPublisher

from ..conftest import free_port
from ..fusion_process import interrupt, start_fusion


def _live_run(cfg_path: Path, cfg, url: str, messages) -> str:
    """One live `storesense fusion` run fed ``messages`` over ZeroMQ; returns its output (with its run id)."""
    proc, seen = start_fusion("--config", str(cfg_path), "--mqtt", url)
    try:
        pub = ZmqPublisher(cfg.transports.zmq.observations, store=cfg.store.id)
        try:
            assert pub.wait_for_subscriber(30.0)
            for msg in messages:
                pub.publish(msg)
            time.sleep(2.5)  # the node fuses them and flushes at the pause
        finally:
            pub.close()
    finally:
        out = interrupt(proc)  # Ctrl-C: the publisher flushes to the broker on the way out
    assert proc.returncode == 0, seen + out
    return seen + out


def test_two_live_runs_into_one_hub_are_both_stored_with_their_own_ids(mosquitto_broker, tmp_path):
    raw = yaml.safe_load(Path(example_store_path()).read_text())
    raw["transports"]["zmq"]["observations"] = f"tcp://127.0.0.1:{free_port()}"
    cfg_path = tmp_path / "store.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_store_config(cfg_path)
    messages = generate_scenario(cfg, shoppers=2, seed=4).messages  # the same input both times: the worst case
    reference: list = []
    run(FusionNode(cfg, reference.append, run_id="ref"), messages)
    per_run = sum(m.source == "fusion" for m in reference)

    store = HubStore(tmp_path / "hub.db")
    ingest = HubIngest(mosquitto_broker.url, cfg.store.id, store, client_id=f"hub-{uuid.uuid4().hex[:6]}").start()
    try:
        logs = [_live_run(cfg_path, cfg, mosquitto_broker.url, messages) for _ in range(2)]
        deadline = time.monotonic() + 30
        while sum(p["source"] == "fusion" for t in ("receipt", "cart_event", "cart_state", "shopper_location",
                                                    "zone_event") for p in store.event_payloads(t)) < 2 * per_run \
                and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        ingest.stop()
    runs = [log.split("(run ")[1].split(",")[0].split(";")[0] for log in logs]
    assert runs[0] != runs[1]
    stored = [p for t in ("receipt", "cart_event", "cart_state", "shopper_location", "zone_event")
              for p in store.event_payloads(t) if p["source"] == "fusion"]
    assert len(stored) == 2 * per_run  # the second run's events are all stored, none dropped as a duplicate
    receipts: list[Receipt] = store.receipts()
    assert len(receipts) == 2 * sum(m.type == "receipt" for m in reference)
    assert len({r.receipt_id for r in receipts}) == len(receipts)
    assert len({r.shopper for r in receipts}) == len(receipts)
    store.close()


def test_ids_carry_the_store_and_a_given_run_id_replays_them():
    cfg = load_store_config(example_store_path())
    other = cfg.model_copy(update={"store": cfg.store.model_copy(update={"id": "other-shop"})})
    messages = generate_scenario(cfg, shoppers=2, seed=4).messages

    def outputs(config, run_id):
        out: list = []
        run(FusionNode(config, out.append, run_id=run_id), messages)
        return out

    a, again, b, fresh = outputs(cfg, "r1"), outputs(cfg, "r1"), outputs(other, "r1"), outputs(cfg, None)
    def ids(out):  # the fusion's own event ids and shopper ids (edge nodes' statuses pass through unchanged)
        own = [m for m in out if m.source == "fusion"]
        return {m.event_id for m in own} | {m.shopper for m in own if hasattr(m, "shopper")}

    assert [m.model_dump() for m in a] == [m.model_dump() for m in again]  # a given run id: deterministic
    assert not ids(a) & ids(b)  # same run id, another store: no id in common
    assert not ids(a) & ids(fresh)  # no run id: a fresh one
    receipts = lambda out: {m.receipt_id for m in out if m.type == "receipt"}  # noqa: E731
    assert receipts(a) and not receipts(a) & receipts(b) and not receipts(a) & receipts(fresh)
