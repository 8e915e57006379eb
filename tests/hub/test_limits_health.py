"""What an unauthenticated caller can make the hub do is bounded (body size 413, per-session rate 429),
and /api/health reports ingest lag and the last store error instead of a constant "ok"."""

from __future__ import annotations

import asyncio

import httpx

from storesense.config import example_store_path, load_store_config
from storesense.contracts import CartEvent, ShopperLocation, Stamper
from storesense.hub import ingest as ingest_module
from storesense.hub.api import HubContext, create_app
from storesense.hub.api.limits import MAX_BODY_BYTES
from storesense.hub.ingest import HubIngest
from storesense.hub.store import HubStore

CFG = load_store_config(example_store_path())


def _call(app, method: str, url: str, **kwargs) -> httpx.Response:
    async def call():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.0.0.7", 5000)),
                                     base_url="http://hub") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(call())


def _app(tmp_path, **ctx_kw):
    store = HubStore(tmp_path / "hub.db")
    published = []
    return create_app(HubContext(CFG, store, publish=published.append, **ctx_kw)), store, published


def test_a_request_body_over_the_limit_is_refused_unread(tmp_path):
    app, _, _ = _app(tmp_path)
    route = {"items": ["milk"], "start": {"x": 1.0, "y": 1.0}, "guide_lights": False}
    assert _call(app, "POST", "/api/wayfinding", json=route).status_code == 200
    big = b'{"items": ["milk"], "pad": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    r = _call(app, "POST", "/api/wayfinding", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over 65536 bytes" in r.json()["detail"]

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(8):
            yield b"x" * 16384

    r = _call(app, "POST", "/api/wayfinding", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = _call(app, "PUT", "/api/shoppers/s-1/offers/opt-out", content=b"{}", headers={"content-length": "99999999"})
    assert r.status_code == 413


def test_opt_out_and_guided_routes_are_rate_limited_per_session(tmp_path):
    app, store, published = _app(tmp_path)
    for i in range(10):
        assert _call(app, "PUT", "/api/shoppers/s-a/offers/opt-out", json={"opted_out": i % 2 == 0}).status_code == 200
    limited = _call(app, "PUT", "/api/shoppers/s-a/offers/opt-out", json={"opted_out": True})
    assert limited.status_code == 429 and 0 < int(limited.headers["retry-after"]) <= 60
    assert not store.opted_out("s-a")  # the 11th change did not happen
    assert _call(app, "PUT", "/api/shoppers/s-b/offers/opt-out", json={"opted_out": True}).status_code == 200

    f = Stamper("fusion", run_id="limits")
    store.ingest(f.make(CartEvent, 1.0, shopper="s-w", phase="new", cart_version=0))
    store.ingest(f.make(ShopperLocation, 2.0, shopper="s-w", track="t", x=1.5, y=1.0, cov=((0.05, 0), (0, 0.05))))
    route = {"items": ["COFFEE-500"], "shopper": "s-w"}
    for _ in range(6):
        r = _call(app, "POST", "/api/wayfinding", json=route)
        assert r.status_code == 200 and r.json()["lights_published"]
    lit = len(published)
    assert lit > 0
    r = _call(app, "POST", "/api/wayfinding", json=route)
    assert r.status_code == 429 and len(published) == lit  # no light command for the 7th
    # a route without light guidance is not an action: still answered
    assert _call(app, "POST", "/api/wayfinding", json={**route, "guide_lights": False}).status_code == 200
    # without a session, the limit is per client address
    anon = {"items": ["COFFEE-500"], "start": {"x": 1.5, "y": 1.0}}
    codes = [_call(app, "POST", "/api/wayfinding", json=anon).status_code for _ in range(7)]
    assert codes == [200] * 6 + [429]


def test_health_reports_ingest_lag_and_the_last_store_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "RETRY_PAUSES", (0.01,))
    store = HubStore(tmp_path / "hub.db")
    hub = HubIngest("mqtt://127.0.0.1:1", CFG.store.id, store)  # never connected: deliveries handed in below
    app = create_app(HubContext(CFG, store, ingest_status=hub.status))
    health = _call(app, "GET", "/api/health").json()
    assert health["ingest"]["backlog"] == 0 and health["ingest"]["last_store_error"] is None

    st = Stamper("fusion", run_id="health")
    good, poison = (st.make(CartEvent, 1.0 + i, shopper=f"s-h{i}", phase="new", cart_version=0) for i in range(2))
    for m in (good, poison):
        hub._on_delivery(m, f"storesense/{CFG.store.id}/carts/{m.shopper}/events", lambda: None)
    import time

    time.sleep(0.05)
    waiting = _call(app, "GET", "/api/health").json()["ingest"]
    assert waiting["backlog"] == 2 and waiting["lag_s"] >= 0.05

    real = store._project

    def project(msg, now):
        if msg.event_id == poison.event_id:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        real(msg, now)

    monkeypatch.setattr(store, "_project", project)
    assert hub._commit(hub._take_batch(0.1))
    health = _call(app, "GET", "/api/health").json()
    assert health["status"] == "degraded"  # a store error in the last minute
    ingest = health["ingest"]
    assert ingest["backlog"] == 0 and ingest["lag_s"] == 0.0 and ingest["dead_letters"] == 1
    assert ingest["stored"] == 1 and "OverflowError" in ingest["last_store_error"]
    assert 0 <= ingest["last_store_error_age_s"] < 5


def test_a_database_failure_after_the_charge_is_a_clear_503_and_the_retry_is_not_charged_twice(tmp_path, monkeypatch):
    from storesense.contracts import CartChange
    from storesense.hub.auth import TerminalRegistry
    from storesense.hub.db import DatabaseError

    store = HubStore(tmp_path / "hub.db")
    ctx = HubContext(CFG, store, terminals=TerminalRegistry.from_tokens({"till-1": "till-secret"}))
    app = create_app(ctx)
    f = Stamper("fusion", run_id="disk")
    store.ingest(f.make(CartEvent, 1.0, shopper="s-d", phase="new", cart_version=0))
    store.ingest(f.make(CartEvent, 2.0, shopper="s-d", phase="update", cart_version=1,
                        change=CartChange(sku="MILK-1L", quantity=1, confidence=0.95)))
    real = store.settle

    def full_disk(*args, **kwargs):
        raise DatabaseError("database or disk is full")

    monkeypatch.setattr(store, "settle", full_disk)
    till = {"Authorization": "Bearer till-secret"}
    r = _call(app, "POST", "/api/carts/s-d/checkout", headers=till, json={"method": "card"})
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert "payment went through" in detail["message"] and detail["payment_ref"].startswith("local-")
    assert store.settlement("s-d") is None
    monkeypatch.setattr(store, "settle", real)  # space freed: the till retries
    r = _call(app, "POST", "/api/carts/s-d/checkout", headers=till, json={"method": "card"})
    assert r.status_code == 200 and r.json()["payment_ref"] == detail["payment_ref"]  # the same charge
    assert len(ctx.payments.charges) == 1
