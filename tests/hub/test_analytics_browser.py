"""The store analytics page in a real headless browser, over a hub that ingested a short simulated day.

Needs Debian's Chromium and the ``playwright`` package (the ``browser_page`` fixture, tests/hub/conftest.py); skipped with the reason
when either is missing.
"""

from __future__ import annotations

import uuid

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.hub.analytics import build_report
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import HubService

CFG = load_store_config(example_store_path())
VIEWER = TerminalRegistry.from_tokens({"back-office": "viewer-secret"}, roles=("viewer",))


def test_the_analytics_page_shows_a_simulated_day(embedded_broker, tmp_path, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 900})
    from storesense.datasets.sim.day import simulate_day
    from storesense.transport import MqttPublisher

    day = simulate_day(CFG, 11, visitors=30, open_hour=9.0, close_hour=10.0)
    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=embedded_broker.url, terminals=VIEWER,
                     client_id=f"analytics-page-{uuid.uuid4().hex[:6]}", port=0).start()
    pub = MqttPublisher(embedded_broker.url, store=CFG.store.id, node="fusion", kind="fusion",
                        client_id=f"analytics-page-fusion-{uuid.uuid4().hex[:6]}").connect()
    try:
        for msg in day.messages:
            pub.publish(msg)
        assert pub.flush(30)
        receipts = sum(m.type == "receipt" for m in day.messages)
        import time

        deadline = time.monotonic() + 60
        while hub.store.db.one("SELECT COALESCE(SUM(visits), 0) FROM analytics_hours")[0] < receipts:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        report = build_report(CFG, hub.store.db, day.open_ts - 3600, day.close_ts + 3600)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # the live page links to it
        page.goto(hub.http.url + "#token=viewer-secret")
        assert page.locator("#analytics-link").get_attribute("href") == "/analytics"
        page.goto(hub.http.url + f"analytics?from={day.date}&to={day.date}#token=viewer-secret")
        page.wait_for_selector("#status.ready, #status.down", timeout=15000)
        assert "ready" in page.locator("#status").get_attribute("class"), (page.locator("#status").inner_text(), errors)
        shown = page.locator('[data-figure="visits"] b').inner_text()
        assert shown == str(report.summary["visits"]) and report.summary["visits"] >= 10
        assert page.locator("#footfall rect.bar:not(.buy)").count() == len(report.tables["hourly"])
        assert page.locator("#heatmap [data-cell]").count() == len(report.tables["heatmap"]) > 10
        assert page.locator("#zones tbody tr").count() == len(report.tables["zones"])
        assert page.locator("[data-note]").count() == 6  # what k-anonymity did, per table
        assert "k=5" in page.locator("#anonymity").inner_text()
        # a wrong token is refused on the page
        page.evaluate("localStorage.setItem('storesense-viewer-token', 'wrong')")
        page.reload()
        page.wait_for_selector("#status.down", timeout=15000)
    finally:
        pub.close()
        hub.stop()
