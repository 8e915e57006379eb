"""The hub's durable store and cart view: idempotency, review, corrections, retention, both databases."""

from __future__ import annotations

import socket
import uuid

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.contracts import (
    CartChange,
    CartEvent,
    CartLine,
    CartState,
    NodeStatus,
    Receipt,
    ReceiptLine,
    ShopperLocation,
    Stamper,
    ZoneEvent,
)
from storesense.hub.carts import build_cart, final_receipt, receipt_text
from storesense.hub.db import DatabaseError
from storesense.hub.store import HubStateError, HubStore

CFG = load_store_config(example_store_path())
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_reason() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed (pip install 'storesense[postgres]')"
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
    except OSError:
        return "no PostgreSQL server on 127.0.0.1:5432"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A fresh HubStore on SQLite (a file, WAL) or on PostgreSQL (a private schema), when reachable."""
    if request.param == "sqlite":
        s = HubStore(tmp_path / "hub.db")
        yield s
        s.close()
        return
    reason = _postgres_reason()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"hub_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} refused: {str(exc).strip().splitlines()[0]}")
    admin.execute(f"CREATE SCHEMA {schema}")
    s = HubStore(f"{PG_URL}?options=-csearch_path%3D{schema}")
    try:
        yield s
    finally:
        s.close()
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def _session(shopper="s-1", run="r"):
    f = Stamper("fusion", run_id=run)
    return f, [
        f.make(CartEvent, 100.0, shopper=shopper, phase="new", cart_version=0),
        f.make(CartEvent, 101.0, shopper=shopper, phase="update", cart_version=1,
               change=CartChange(sku="MILK-1L", quantity=2, confidence=0.95, shelf="A", plate="A1")),
        f.make(CartEvent, 102.0, shopper=shopper, phase="update", cart_version=2,
               change=CartChange(sku="BREAD-500", quantity=1, confidence=0.45, needs_review=True, shelf="D",
                                 evidence=("hand-1", "hand-2"), reason="hand in shelf without a load cell")),
        f.make(CartEvent, 103.0, shopper=shopper, phase="update", cart_version=3,
               change=CartChange(sku="MILK-1L", quantity=-1, confidence=0.9, shelf="A", plate="A1")),
    ]


def test_ingest_is_idempotent_and_projects_sessions_and_changes(store):
    _, msgs = _session()
    assert all(store.ingest(m, "t") for m in msgs)
    before = (store.count(), store.changes("s-1"), store.sessions())
    for m in msgs:
        assert store.ingest(m, "t") is False  # redelivered: nothing changes
    assert (store.count(), store.changes("s-1"), store.sessions()) == before
    assert store.count() == 4 and sorted(store.event_ids()) == sorted(m.event_id for m in msgs)
    [session] = store.sessions(("open",))
    assert session.shopper == "s-1" and session.opened_ts == 100.0
    assert [c.review for c in store.changes("s-1")] == ["none", "pending", "none"]


def test_cart_view_follows_review_decisions(store):
    _, msgs = _session()
    for m in msgs:
        store.ingest(m)
    cart = build_cart(CFG, store, "s-1")
    assert {l.sku: l.quantity for l in cart.lines} == {"MILK-1L": 1, "BREAD-500": 1}
    bread = next(l for l in cart.lines if l.sku == "BREAD-500")
    assert bread.needs_review and bread.confidence == 0.45 and bread.pending_review == (msgs[2].event_id,)
    assert cart.total == pytest.approx(1.09 + 2.19)

    store.decide_review(msgs[2].event_id, "rejected", by="till-1", note="no bread on camera")
    cart = build_cart(CFG, store, "s-1")
    assert {l.sku: l.quantity for l in cart.lines} == {"MILK-1L": 1}
    assert cart.total == pytest.approx(1.09) and cart.pending_review == []
    with pytest.raises(HubStateError):
        store.decide_review(msgs[2].event_id, "accepted", by="till-1")  # decided already


def test_accepted_review_becomes_a_confirmed_line(store):
    _, msgs = _session()
    for m in msgs:
        store.ingest(m)
    store.decide_review(msgs[2].event_id, "accepted", by="staff")
    bread = next(l for l in build_cart(CFG, store, "s-1").lines if l.sku == "BREAD-500")
    assert bread.quantity == 1 and not bread.needs_review and bread.confidence == 1.0


def test_corrections_change_the_cart_and_are_refused_after_settlement(store):
    _, msgs = _session()
    for m in msgs:
        store.ingest(m)
    store.decide_review(msgs[2].event_id, "accepted", by="staff")
    store.add_correction("s-1", "MILK-1L", before=1, after=3, reason="three bottles in the bag", terminal="till-1")
    cart = build_cart(CFG, store, "s-1")
    milk = next(l for l in cart.lines if l.sku == "MILK-1L")
    assert milk.quantity == 3 and milk.corrected
    receipt = final_receipt(CFG, store, cart, now=200.0)
    assert receipt.total == pytest.approx(3 * 1.09 + 2.19)
    assert store.settle(receipt, "till-1", "local", "ref-1", ts=200.0)
    assert store.settle(receipt, "till-1", "local", "ref-2", ts=201.0) is False
    assert store.session("s-1").status == "settled"
    with pytest.raises(HubStateError):
        store.add_correction("s-1", "MILK-1L", before=3, after=2, reason="late", terminal="till-1")
    text = receipt_text(CFG, store.settlement("s-1"), store.corrections("s-1"))
    assert "Whole milk 1 l" in text and "5.46" in text and "three bottles" in text


def test_late_joining_hub_starts_from_the_cart_state(store):
    """The hub missed the first changes: the retained cart_state seeds the cart, later changes add to it."""
    f = Stamper("fusion", run_id="late")
    state = f.make(CartState, 50.0, shopper="s-9", status="open", cart_version=2, total=1.09 + 2.19,
                   lines=(CartLine(sku="MILK-1L", name="Whole milk 1 l", quantity=1, unit_price=1.09, confidence=0.9),
                          CartLine(sku="BREAD-500", name="Rye bread 500 g", quantity=1, unit_price=2.19,
                                   confidence=0.4, needs_review=True)))
    flagged = f.make(CartEvent, 49.0, shopper="s-9", phase="update", cart_version=2,
                     change=CartChange(sku="BREAD-500", quantity=1, confidence=0.4, needs_review=True))
    later = f.make(CartEvent, 60.0, shopper="s-9", phase="update", cart_version=3,
                   change=CartChange(sku="TEA-20", quantity=1, confidence=0.9))
    for m in (state, flagged, later):
        store.ingest(m)
    cart = build_cart(CFG, store, "s-9")
    assert not cart.history_complete
    assert {l.sku: l.quantity for l in cart.lines} == {"MILK-1L": 1, "BREAD-500": 1, "TEA-20": 1}
    assert next(l for l in cart.lines if l.sku == "BREAD-500").needs_review
    store.decide_review(flagged.event_id, "rejected", by="staff")
    cart = build_cart(CFG, store, "s-9")
    assert {l.sku: l.quantity for l in cart.lines} == {"MILK-1L": 1, "TEA-20": 1}
    assert not any(l.needs_review for l in cart.lines)


def test_receipts_locations_nodes_and_the_foundation_reads(store):
    f = Stamper("fusion", run_id="x")
    loc = f.make(ShopperLocation, 10.0, shopper="s-1", track="t1", x=2.0, y=1.0, cov=((0.1, 0), (0, 0.1)))
    older = f.make(ShopperLocation, 9.0, shopper="s-1", track="t1", x=9.0, y=9.0, cov=((0.1, 0), (0, 0.1)))
    receipt = f.make(Receipt, 20.0, shopper="s-2", receipt_id="r-1", currency="EUR", total=1.09, opened_ts=1.0,
                     closed_ts=20.0, lines=(ReceiptLine(sku="MILK-1L", name="Whole milk 1 l", quantity=1,
                                                        unit_price=1.09, amount=1.09),))
    status = f.make(NodeStatus, 5.0, node="cam1", kind="camera", state="online")
    for m in (loc, older, receipt, status):
        store.ingest(m)
    store.set_availability("cam2", "offline", 6.0)
    assert store.location("s-1")[:2] == (2.0, 1.0)  # the older fix arrived late and does not win
    assert [r.receipt_id for r in store.receipts()] == ["r-1"]
    assert store.session("s-2").status == "closed"
    assert store.nodes() == {"cam1": "online", "cam2": "offline"}
    assert len(store.event_payloads("shopper_location")) == 2


def test_retention_purges_positions_and_zone_events_but_keeps_receipts(store):
    f = Stamper("fusion", run_id="ret")
    old_loc = f.make(ShopperLocation, 1.0, shopper="s-1", track="t1", x=2.0, y=1.0, cov=((0.1, 0), (0, 0.1)))
    old_zone = f.make(ZoneEvent, 1.0, shopper="s-1", zone="entry", phase="enter")
    new_zone = f.make(ZoneEvent, 2.0, shopper="s-1", zone="aisle-ab", phase="enter")
    receipt = f.make(Receipt, 3.0, shopper="s-1", receipt_id="r-keep", currency="EUR", total=0.0, opened_ts=1.0,
                     closed_ts=3.0, lines=())
    store.ingest(old_loc, received_ts=1000.0)
    store.ingest(old_zone, received_ts=1000.0)
    store.ingest(receipt, received_ts=1000.0)
    store.ingest(new_zone, received_ts=1900.0)
    gone = store.purge(positions_s=600.0, zone_events_s=600.0, now=2000.0)
    assert gone["locations"] == 1 and gone["events.shopper_location"] == 1
    assert gone["zone_events"] == 1 and gone["events.zone_event"] == 1
    assert store.location("s-1") is None
    assert [e["event_id"] for e in store.event_payloads("zone_event")] == [new_zone.event_id]
    assert [r.receipt_id for r in store.receipts()] == ["r-keep"]
    assert store.count("receipt") == 1


def test_offer_caps_and_opt_out(store):
    kw = dict(max_per_shopper=2, cooldown_s=10.0, max_total=3)
    assert store.record_offer("s-1", "o1", "visit-1", "e1", 0.0, **kw)
    assert not store.record_offer("s-1", "o1", "visit-1", "e2", 50.0, **kw)  # one per visit
    assert not store.record_offer("s-1", "o1", "visit-2", "e3", 5.0, **kw)  # cooldown
    assert store.record_offer("s-1", "o1", "visit-2", "e4", 20.0, **kw)
    assert not store.record_offer("s-1", "o1", "visit-3", "e5", 40.0, **kw)  # max per shopper
    assert store.record_offer("s-1", "o2", "visit-3", "e6", 40.0, **kw)
    assert not store.record_offer("s-1", "o3", "visit-3", "e7", 40.0, **kw)  # max in total
    store.set_opt_out("s-2", True)
    assert not store.record_offer("s-2", "o1", "visit-1", "e8", 0.0, **kw)
    store.set_opt_out("s-2", False)
    assert store.record_offer("s-2", "o1", "visit-1", "e9", 0.0, **kw)


def test_an_older_database_is_refused_with_a_clear_error(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (event_id TEXT PRIMARY KEY)")
    conn.close()
    with pytest.raises(DatabaseError, match="older storesense hub"):
        HubStore(path)


def test_a_bad_database_url_is_a_clear_error():
    with pytest.raises(DatabaseError, match="unsupported database URL"):
        HubStore("mysql://localhost/x")
    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL at postgresql://u:\\*\\*\\*@127.0.0.1:1/x"):
        HubStore("postgresql://u:secret@127.0.0.1:1/x")


def test_ingest_retries_a_failing_database_and_acknowledges_only_after_the_commit(monkeypatch):
    """A batch is acknowledged after the transaction holding it commits, never before, and never on a failure."""
    from storesense.hub import ingest as ingest_mod
    from storesense.hub.ingest import HubIngest

    events: list[str] = []

    class Flaky:
        def __init__(self):
            self.calls = 0

        def ingest_many(self, items):
            self.calls += 1
            if self.calls < 3:
                events.append("fail")
                raise OSError("disk I/O error")
            events.append(f"commit {len(items)}")
            return [True] * len(items)

    monkeypatch.setattr(ingest_mod, "RETRY_PAUSES", (0.001,))
    flaky = Flaky()
    hub = HubIngest("mqtt://127.0.0.1:1", "demo-shop", flaky)  # type: ignore[arg-type]
    _, msgs = _session()
    batch = [(msgs[0], "t", lambda: events.append("ack 0")), (None, "t", lambda: events.append("ack skipped")),
             (msgs[1], "t", lambda: events.append("ack 1"))]
    assert hub._commit(batch)
    assert events == ["fail", "fail", "commit 2", "ack 0", "ack skipped", "ack 1"]
    assert flaky.calls == 3 and hub.stored == 2 and hub.store_failures == 2 and hub.commits == 1
    # stopping while the database still fails: nothing is acknowledged
    events.clear()
    flaky.calls = 0
    hub._stopping.set()
    assert not hub._commit(batch)
    assert events == ["fail"]


def test_postgres_store_reconnects_after_losing_its_connection(store):
    if store.db.dialect != "postgresql":
        pytest.skip("PostgreSQL only")
    import psycopg

    _, msgs = _session()
    assert store.ingest(msgs[0])
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (store.db._conn.info.backend_pid,))
    with pytest.raises(psycopg.Error):
        store.ingest(msgs[1])  # the write in flight fails (the ingest retries it) ...
    assert store.ingest(msgs[1])  # ... and the next attempt runs on a new connection
    assert store.count() == 2
