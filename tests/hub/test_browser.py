"""The live store page in a real headless browser: shoppers appear and move as locations arrive.

Needs Debian's Chromium and the Python ``playwright`` package (the ``browser_page`` fixture,
tests/hub/conftest.py); skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.contracts import CartChange, CartEvent, CartLine, CartState, NodeStatus, ShopperLocation, Stamper
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import HubService
from storesense.transport import MqttPublisher

CFG = load_store_config(example_store_path())
#: the live feed needs a viewer token: the page takes it from the address's fragment once
VIEWER = TerminalRegistry.from_tokens({"back-office": "viewer-secret"}, roles=("viewer",))
VIEWER_FRAGMENT = "#token=viewer-secret"
def _cov():
    return ((0.05, 0.0), (0.0, 0.05))


def test_shoppers_appear_and_move_on_the_live_page(embedded_broker, tmp_path, browser_page):
    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=embedded_broker.url, terminals=VIEWER,
                     client_id=f"browser-hub-{uuid.uuid4().hex[:6]}", port=0).start()
    pub = MqttPublisher(embedded_broker.url, store=CFG.store.id, node="fusion", kind="fusion",
                        client_id=f"browser-fusion-{uuid.uuid4().hex[:6]}").connect()
    page = browser_page
    try:
        page.goto(hub.http.url + VIEWER_FRAGMENT)
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


def test_a_camera_whose_status_stream_stops_goes_offline_on_the_page(embedded_broker, tmp_path, browser_page):
    """Edge heartbeats travel edge -> ZeroMQ -> fusion -> MQTT -> hub; a camera that falls silent shows offline."""
    import threading
    import time

    from storesense.fusion.service import FusionService
    from storesense.transport import ZmqPublisher

    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=embedded_broker.url, terminals=VIEWER,
                     client_id=f"browser-hub-{uuid.uuid4().hex[:6]}", port=0).start()
    hub.ctx.feed.stale_after_s = 1.5  # three heartbeats of 0.5 s
    fusion = FusionService(CFG, run_id="health", mqtt_url=embedded_broker.url,
                           mqtt_client_id=f"health-fusion-{uuid.uuid4().hex[:6]}")
    endpoint = fusion.listen("tcp://127.0.0.1:*")
    fusion.start()
    fusion.serve_in_thread(poll_s=0.1)
    edge = ZmqPublisher(endpoint, store=CFG.store.id)
    assert edge.wait_for_subscriber(5.0)
    alive = {"cam2": True, "cam10": True, "ble-mid": True}
    stop = threading.Event()

    def heartbeats():
        stampers = {n: Stamper(n, run_id="health") for n in alive}
        while not stop.is_set():
            for node, on in alive.items():
                if on:
                    kind = "ble" if node.startswith("ble") else "camera"
                    edge.publish(stampers[node].make(NodeStatus, time.time(), node=node, kind=kind, state="online"))
            stop.wait(0.5)

    beat = threading.Thread(target=heartbeats, daemon=True)
    beat.start()
    page = browser_page
    try:
        page.goto(hub.http.url + VIEWER_FRAGMENT)
        page.wait_for_selector("#status.live", timeout=15000)
        for node in alive:
            page.wait_for_selector(f'#nodes [data-node="{node}"][data-state="online"]', timeout=10000)
        # every configured node is listed, the never-heard ones as unknown, cameras in natural order
        rows = page.locator('#nodes tr[data-kind="camera"], #nodes tr[data-kind="ble"], #nodes tr[data-kind="shelf"]')
        assert rows.count() == len(CFG.cameras) + len(CFG.ble_nodes) + len(CFG.weight_sensors)
        assert page.locator('#nodes [data-node="cam1"]').get_attribute("data-state") == "unknown"
        cams = [r for r in page.locator('#nodes tr[data-kind="camera"]').evaluate_all(
            "rows => rows.map(r => r.dataset.node)")]
        assert cams == [f"cam{i}" for i in range(1, 11)]
        assert re.search(r"just now|\d+ s ago", page.locator('#nodes [data-node="cam2"]').inner_text())
        assert page.locator('#nodes [data-node="cam1"]').inner_text().endswith("never heard")

        alive["cam2"] = False  # the camera node dies: no goodbye, its heartbeats just stop
        page.wait_for_selector('#nodes [data-node="cam2"][data-state="offline"]', timeout=10000)
        assert page.locator('#nodes [data-node="cam10"]').get_attribute("data-state") == "online"
        assert page.locator('#nodes [data-node="ble-mid"]').get_attribute("data-state") == "online"
        assert "1 node offline" in page.locator("#counts").inner_text()
        assert any(n["node"] == "cam2" and n["state"] == "offline" and n["stale"]
                   for n in hub.ctx.feed.nodes())

        alive["cam2"] = True  # it comes back
        page.wait_for_selector('#nodes [data-node="cam2"][data-state="online"]', timeout=10000)
    finally:
        stop.set()
        beat.join(2)
        edge.close()
        fusion.stop(2.0)
        fusion.close()
        hub.stop()


def test_the_demo_page_during_the_run(tmp_path, browser_page):
    """`storesense demo --speed`: shoppers move, nodes are online, carts are grouped, ids are whole, the page reads."""
    import threading

    from storesense.demo import run_demo

    pages, results, errors = [], [], []
    opened = threading.Event()
    release = threading.Event()

    def on_page(p):
        pages.append(p)
        opened.set()

    def run():
        try:
            results.append(run_demo(CFG, shoppers=6, seed=1, speed=8.0, on_page=on_page,
                                    keep_page=lambda result: release.wait(60)))
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            opened.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    page = browser_page
    try:
        assert opened.wait(60), "the demo never served its page"
        assert not errors, errors
        page.goto(pages[0].live_url)
        page.wait_for_selector("#status.live", timeout=15000)
        # shoppers appear and move while the demo runs
        page.wait_for_function("document.querySelectorAll('#shoppers [data-shopper]').length >= 2", timeout=30000)
        first = page.locator("#shoppers [data-shopper]").first
        sid = first.get_attribute("data-shopper")
        dot = page.locator(f'#shoppers [data-shopper="{sid}"]')
        before = (dot.get_attribute("data-x"), dot.get_attribute("data-y"))
        page.wait_for_function(
            f"(() => {{ const g = document.querySelector('#shoppers [data-shopper=\"{sid}\"]');"
            f" return !g || g.getAttribute('data-x') !== '{before[0]}' || g.getAttribute('data-y') !== '{before[1]}'; }})()",
            timeout=15000)
        # every simulated camera, BLE and shelf node reports online through the fusion node
        n_nodes = len(CFG.cameras) + len(CFG.ble_nodes) + len(CFG.weight_sensors)
        page.wait_for_function(
            f"document.querySelectorAll('#nodes tr[data-state=\"online\"]').length >= {n_nodes}", timeout=15000)
        assert page.locator('#nodes tr[data-state="unknown"]').count() == 0
        # distinct colours for the shoppers on the floor; their numbers sit inside their dots
        fills = page.locator("#shoppers [data-shopper] circle").evaluate_all("cs => cs.map(c => c.getAttribute('fill'))")
        assert len(set(fills)) == len(fills)
        # the legend explains the plan
        legend = page.locator("#legend").inner_text()
        kinds = {z.kind for z in CFG.zones} - {"store", "aisle"}
        assert kinds and {"offer", "exit"} <= kinds
        for word in ("shopper", "shelf", "counter", "light", *(k.replace("offer", "offer zone") for k in kinds)):
            assert word in legend
        if "checkout" not in kinds:
            assert "checkout" not in legend  # no key for what the plan does not show
        # full session ids, the ones the API takes
        page.wait_for_selector("#carts [data-cart]", timeout=15000)
        shown = page.locator("#carts [data-cart] code.sid").first.inner_text()
        api = page.request.get(pages[0].url + "api/sessions",
                               headers={"Authorization": f"Bearer {pages[0].token}"}).json()
        assert shown in {s["shopper"] for s in api}

        # shoppers leave: their carts move out of "shopping now" into "not yet paid"
        page.wait_for_selector("#carts-closed [data-cart]", timeout=40000)
        shot = Path(os.environ.get("STORESENSE_SCREENSHOT_DIR", tmp_path)) / "hub-live-demo.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        counts = page.locator("#counts").inner_text()
        assert "1 shoppers" not in counts and "1 open carts" not in counts and "1 nodes" not in counts
        # labels never overlap: shelf letters apart from each other, no zone text over them (the legend
        # names the zones), and each shopper's number inside its own dot
        rect = "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"
        shelves = page.locator("#layer-shelves text").evaluate_all(rect)
        assert len(shelves) == len(CFG.shelves)
        for i, a in enumerate(shelves):
            for b in shelves[i + 1:]:
                assert not (min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])), (a, b)
        assert page.locator("#layer-zones text").count() == 0
        # dot and number measured in one call: the feed keeps moving them, and two calls saw one moved
        dots = page.locator("#shoppers [data-shopper]").evaluate_all(
            "gs => gs.map(g => [g.dataset.shopper].concat(['circle', 'text'].map(tag => {"
            " const r = g.querySelector(tag).getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })))")
        for sid, c, t in dots:
            assert c[0] - 1 <= t[0] and t[2] <= c[2] + 1 and c[1] - 1 <= t[1] and t[3] <= c[3] + 1, (sid, c, t)
    finally:
        release.set()
        thread.join(90)
    assert not errors, errors
    assert results and results[0].all_match


def test_misplaced_stock_shows_on_the_live_page_and_goes_when_tidied(embedded_broker, tmp_path, browser_page):
    """The fusion's shelf inventory says an item lies on the wrong plate: the page's tidy list shows it."""
    from storesense.contracts import ShelfEvent

    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=embedded_broker.url, terminals=VIEWER,
                     client_id=f"browser-hub-{uuid.uuid4().hex[:6]}", port=0).start()
    pub = MqttPublisher(embedded_broker.url, store=CFG.store.id, node="fusion", kind="fusion",
                        client_id=f"browser-fusion-{uuid.uuid4().hex[:6]}").connect()
    page = browser_page
    try:
        page.goto(hub.http.url + VIEWER_FRAGMENT)
        page.wait_for_selector("#status.live", timeout=15000)
        assert page.locator("#misplaced [data-misplaced]").count() == 0
        f = Stamper("fusion", run_id="browser-stock")
        pub.publish(f.make(ShelfEvent, 100.0, kind="misplaced", shelf="B", plate="B1", sku="MILK-1L", count=1,
                           since_ts=95.0))
        assert pub.flush(10)
        row = page.locator('#misplaced [data-misplaced="B1/MILK-1L"]')
        row.wait_for(timeout=10000)  # the list refreshes every 3 s
        text = row.inner_text()
        assert "Whole milk 1 l" in text and "1 ×" in text and "A1" in text  # where it belongs
        pub.publish(f.make(ShelfEvent, 130.0, kind="misplaced", shelf="B", plate="B1", sku="MILK-1L", count=0))
        assert pub.flush(10)
        page.wait_for_function("!document.querySelector('#misplaced [data-misplaced]')", timeout=10000)
    finally:
        pub.close()
        hub.stop()
