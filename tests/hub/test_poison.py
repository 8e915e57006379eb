"""A message the database refuses is dead-lettered after a few tries and ingest moves on;
while the database itself fails, nothing is acknowledged."""

from __future__ import annotations

import threading

from storesense.contracts import CartEvent, Stamper
from storesense.hub import ingest as ingest_module
from storesense.hub.ingest import HubIngest
from storesense.hub.store import HubStore


def _events(n: int) -> list:
    st = Stamper("fusion", run_id="poison")
    return [st.make(CartEvent, 1.0 + i, shopper=f"s-p{i}", phase="new", cart_version=0) for i in range(n)]


def _ingest(tmp_path, monkeypatch) -> HubIngest:
    monkeypatch.setattr(ingest_module, "RETRY_PAUSES", (0.01,))
    return HubIngest("mqtt://127.0.0.1:1", "shop", HubStore(tmp_path / "hub.db"))  # never connected here


def test_a_poison_message_is_dead_lettered_and_the_next_one_stored(tmp_path, monkeypatch):
    hub = _ingest(tmp_path, monkeypatch)
    good1, poison, good2 = _events(3)
    real = hub.db._project

    def project(msg, now):
        if msg.event_id == poison.event_id:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        real(msg, now)

    monkeypatch.setattr(hub.db, "_project", project)
    acked = []
    batch = [(m, f"storesense/shop/carts/{m.shopper}/events", lambda m=m: acked.append(m.event_id))
             for m in (good1, poison, good2)]
    assert hub._commit(batch)
    assert set(hub.db.event_ids()) == {good1.event_id, good2.event_id}
    assert acked == [good1.event_id, poison.event_id, good2.event_id]  # ingest moves on
    rows = hub.db.db.query("SELECT event_id, reason FROM dead_letters")
    assert rows == [(poison.event_id, "OverflowError: Python int too large to convert to SQLite INTEGER")]
    assert hub.dead_letters == 1 and "OverflowError" in hub.last_store_error


def test_while_the_database_fails_nothing_is_dead_lettered_or_acknowledged(tmp_path, monkeypatch):
    hub = _ingest(tmp_path, monkeypatch)
    msgs = _events(2)

    def broken(*args, **kwargs):
        raise OSError("disk I/O error")

    monkeypatch.setattr(hub.db, "ingest_many", broken)
    monkeypatch.setattr(hub.db.db, "transaction", broken)  # the dead letter cannot be written either
    acked = []
    batch = [(m, "t", lambda m=m: acked.append(m)) for m in msgs]
    stop = threading.Timer(0.5, hub._stopping.set)
    stop.start()
    assert not hub._commit(batch)  # gave up only because the hub stops
    assert acked == [] and hub.dead_letters == 0 and hub.store_failures > 3
