"""The live store page in a real headless browser: shoppers appear and move as locations arrive.

Needs Debian's Chromium (``apt-get install -y chromium chromium-driver``) and the Python
``playwright`` package (the ``test`` extra), driven through ``executable_path`` (Playwright's own
browser download is never used). Skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.contracts import CartChange, CartEvent, CartLine, CartState, NodeStatus, ShopperLocation, Stamper
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import HubService
from storesense.transport import MqttPublisher

CFG = load_store_config(example_store_path())
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser_page(tmp_path):
    """A page in Debian's headless Chromium with a fresh user-data dir."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium chromium-driver)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                                "(pip install -e '.[test]')")
    with sync_api.sync_playwright() as pw:
        # launch_persistent_context is how Playwright takes a --user-data-dir of our own
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 760})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _cov():
    return ((0.05, 0.0), (0.0, 0.05))


def test_shoppers_appear_and_move_on_the_live_page(embedded_broker, tmp_path, browser_page):
    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=embedded_broker.url, terminals=TerminalRegistry(),
                     client_id=f"browser-hub-{uuid.uuid4().hex[:6]}", port=0).start()
    pub = MqttPublisher(embedded_broker.url, store=CFG.store.id, node="fusion", kind="fusion",
                        client_id=f"browser-fusion-{uuid.uuid4().hex[:6]}").connect()
    page = browser_page
    try:
        page.goto(hub.http.url)
        page.wait_for_selector("#status.live", timeout=15000)
        assert page.locator("[data-shelf]").count() == len(CFG.shelves)
        assert page.locator("#shoppers [data-shopper]").count() == 0

        f = Stamper("fusion", run_id="browser")
        line = CartLine(sku="COFFEE-500", name="Coffee beans 500 g", quantity=1, unit_price=6.99, confidence=0.93)
        for msg in (
            f.make(CartEvent, 1.0, shopper="s-ada", phase="new", cart_version=0),
            f.make(CartEvent, 1.0, shopper="s-bob", phase="new", cart_version=0),
            f.make(ShopperLocation, 1.0, shopper="s-ada", track="t1", x=1.5, y=1.0, cov=_cov()),
            f.make(ShopperLocation, 1.0, shopper="s-bob", track="t2", x=10.5, y=6.5, cov=_cov()),
            f.make(CartEvent, 2.0, shopper="s-ada", phase="update", cart_version=1,
                   change=CartChange(sku="COFFEE-500", quantity=1, confidence=0.93)),
            f.make(CartState, 2.0, shopper="s-ada", status="open", cart_version=1, total=6.99, lines=(line,)),
            f.make(NodeStatus, 2.0, node="cam3", kind="camera", state="offline"),
        ):
            pub.publish(msg)
        assert pub.flush(10)

        # both shoppers appear where the fusion put them
        page.wait_for_function("document.querySelectorAll('#shoppers [data-shopper]').length === 2", timeout=10000)
        ada = page.locator('#shoppers [data-shopper="s-ada"]')
        assert (float(ada.get_attribute("data-x")), float(ada.get_attribute("data-y"))) == (1.5, 1.0)
        page.wait_for_selector('#carts [data-cart="s-ada"]', timeout=10000)
        assert "Coffee beans 500 g" in page.locator('#carts [data-cart="s-ada"]').inner_text()
        page.wait_for_selector('#nodes [data-node="cam3"][data-state="offline"]', timeout=10000)
        box_before = ada.bounding_box()

        # s-ada walks down the aisle: the dot follows
        for i, (x, y) in enumerate([(2.5, 2.0), (3.9, 3.0), (4.4, 4.2)]):
            pub.publish(f.make(ShopperLocation, 3.0 + i, shopper="s-ada", track="t1", x=x, y=y, cov=_cov()))
        assert pub.flush(10)
        page.wait_for_function(
            "(() => { const g = document.querySelector('#shoppers [data-shopper=\"s-ada\"]');"
            " return g && g.getAttribute('data-x') === '4.4' && g.getAttribute('data-y') === '4.2'; })()",
            timeout=10000)
        page.wait_for_timeout(600)  # the dot glides over 0.45 s
        box_after = ada.bounding_box()
        assert box_after["x"] > box_before["x"] + 50  # moved right on screen (x grows to the right)
        assert box_after["y"] < box_before["y"] - 50  # and up the plan (floor y points up)
        bob = page.locator('#shoppers [data-shopper="s-bob"]')
        assert (bob.get_attribute("data-x"), bob.get_attribute("data-y")) == ("10.5", "6.5")

        # leaving the store takes the shopper off the floor
        pub.publish(f.make(CartEvent, 9.0, shopper="s-bob", phase="end", cart_version=0))
        assert pub.flush(10)
        page.wait_for_function("!document.querySelector('#shoppers [data-shopper=\"s-bob\"]')", timeout=10000)
        shot = Path(os.environ.get("STORESENSE_SCREENSHOT_DIR", tmp_path)) / "hub-live-page.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        pub.close()
        hub.stop()
