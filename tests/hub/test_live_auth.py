"""The live feed (every shopper's position and every open cart) needs a viewer token."""

from __future__ import annotations

import httpx
import pytest

from storesense.config import example_store_path, load_store_config
from storesense.contracts import ShopperLocation, Stamper
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import start_live_page
from storesense.hub.store import HubStore

CFG = load_store_config(example_store_path())


@pytest.fixture
def live(tmp_path):
    store = HubStore(tmp_path / "hub.db")
    store.ingest(Stamper("fusion", run_id="live-auth").make(
        ShopperLocation, 1.0, shopper="s-live", track="ft-1", x=2.0, y=3.0, cov=((0.05, 0.0), (0.0, 0.05))))
    registry = TerminalRegistry(
        TerminalRegistry.from_tokens({"back-office": "viewer-secret"}, roles=("viewer",)).entries
        + TerminalRegistry.from_tokens({"kiosk": "kiosk-secret"}, roles=("checkout",)).entries)
    server, _ = start_live_page(CFG, store, port=0, terminals=registry)
    try:
        yield httpx.Client(base_url=server.url, timeout=10)
    finally:
        server.stop()
        store.close()


def test_snapshot_needs_a_viewer_token(live):
    assert live.get("/api/live/snapshot").status_code == 401
    assert live.get("/api/live/snapshot", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert live.get("/api/live/snapshot", params={"token": "wrong"}).status_code == 401
    assert live.get("/api/live/snapshot", headers={"Authorization": "Bearer kiosk-secret"}).status_code == 403
    ok = live.get("/api/live/snapshot", headers={"Authorization": "Bearer viewer-secret"})
    assert ok.status_code == 200 and "s-live" in ok.text
    assert live.get("/api/live/snapshot", params={"token": "viewer-secret"}).status_code == 200


def test_event_stream_needs_a_viewer_token_and_the_page_stays_open(live):
    assert live.get("/api/live/events").status_code == 401
    with live.stream("GET", "/api/live/events", params={"token": "viewer-secret"}) as resp:
        assert resp.status_code == 200
        first = next(resp.iter_lines())
        assert first.startswith("data: ") and "s-live" in first
    # the page itself and the floor plan carry no shopper data and stay open
    assert live.get("/").status_code == 200
    assert live.get("/api/floor").status_code == 200
