"""The hub driven as in a store: fusion messages through a real MQTT broker, terminals over HTTP."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from storesense.config import example_store_path, load_store_config
from storesense.contracts import (
    CartChange,
    CartEvent,
    CartLine,
    CartState,
    LightCommand,
    Offer,
    Receipt,
    ReceiptLine,
    ShopperLocation,
    Stamper,
    ZoneEvent,
)
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import HubService
from storesense.transport import MqttPublisher, MqttSubscriber, parse_mqtt_url

CFG = load_store_config(example_store_path())
STORE = CFG.store.id
TILL = {"Authorization": "Bearer till-secret"}
KIOSK = {"Authorization": "Bearer kiosk-secret"}


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def hub_on(tmp_path):
    """Start a HubService (SQLite in tmp_path, HTTP on a free port) against a broker URL."""
    started = []

    def start(url: str) -> HubService:
        registry = TerminalRegistry(
            TerminalRegistry.from_tokens({"till-1": "till-secret"}).entries
            + TerminalRegistry.from_tokens({"kiosk": "kiosk-secret"}, roles=("checkout",)).entries)
        service = HubService(CFG, db=tmp_path / f"hub-{len(started)}.db", mqtt_url=url, terminals=registry,
                             client_id=f"test-hub-{uuid.uuid4().hex[:8]}", port=0).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def fusion_out():
    pubs = []

    def make(url: str) -> MqttPublisher:
        pub = MqttPublisher(url, store=STORE, node="fusion", kind="fusion",
                            client_id=f"test-fusion-{uuid.uuid4().hex[:8]}").connect()
        pubs.append(pub)
        return pub

    yield make
    for pub in pubs:
        pub.close()


def _shopping_trip(shopper: str):
    """What the fusion publishes for one shopper: first pick, a doubtful pick, leaving, the receipt."""
    f = Stamper("fusion", run_id=f"trip-{shopper}")
    milk = CartLine(sku="MILK-1L", name="Whole milk 1 l", quantity=2, unit_price=1.09, confidence=0.95)
    bread = CartLine(sku="BREAD-500", name="Rye bread 500 g", quantity=1, unit_price=2.19, confidence=0.45,
                     needs_review=True)
    return [
        f.make(CartEvent, 100.0, shopper=shopper, phase="new", cart_version=0),
        f.make(CartState, 100.0, shopper=shopper, status="open", cart_version=0, total=0.0),
        f.make(ShopperLocation, 100.5, shopper=shopper, track="ft-1", x=1.4, y=0.8, cov=((0.05, 0), (0, 0.05))),
        f.make(CartEvent, 110.0, shopper=shopper, phase="update", cart_version=1,
               change=CartChange(sku="MILK-1L", quantity=2, confidence=0.95, shelf="A", plate="A1",
                                 evidence=("hand-a", "weight-a"), reason="hand exit from A matched -2060 g on A1")),
        f.make(CartState, 110.0, shopper=shopper, status="open", cart_version=1, total=2.18, lines=(milk,)),
        f.make(CartEvent, 120.0, shopper=shopper, phase="update", cart_version=2,
               change=CartChange(sku="BREAD-500", quantity=1, confidence=0.45, needs_review=True, shelf="D",
                                 plate="D1", evidence=("hand-d",), reason="hand in shelf without a load cell",
                                 alternatives=("s-next-to-them",))),
        f.make(CartState, 120.0, shopper=shopper, status="open", cart_version=2, total=4.37, lines=(bread, milk)),
        f.make(CartEvent, 130.0, shopper=shopper, phase="end", cart_version=2),
        f.make(CartState, 130.0, shopper=shopper, status="closed", cart_version=2, total=4.37, lines=(bread, milk)),
        f.make(Receipt, 130.0, shopper=shopper, receipt_id=f"r-{shopper}", currency="EUR", total=4.37,
               opened_ts=100.0, closed_ts=130.0, needs_review=True,
               lines=(ReceiptLine(sku="BREAD-500", name="Rye bread 500 g", quantity=1, unit_price=2.19, amount=2.19),
                      ReceiptLine(sku="MILK-1L", name="Whole milk 1 l", quantity=2, unit_price=1.09, amount=2.18))),
    ]


def test_a_cart_goes_from_first_pick_to_a_settled_receipt(broker, hub_on, fusion_out):
    hub = hub_on(broker.url)
    pub = fusion_out(broker.url)
    shopper = "s-trip"
    trip = _shopping_trip(shopper)
    http = httpx.Client(base_url=hub.http.url, timeout=10)

    # the first pick arrives: the terminal sees an open cart
    for msg in trip[:5]:
        pub.publish(msg)
    assert pub.flush(10)
    wait_until(lambda: hub.store.count("cart_state") == 2, what="the first pick at the hub")
    cart = http.get(f"/api/carts/{shopper}", headers=TILL).json()
    assert cart["status"] == "open" and [(l["sku"], l["quantity"]) for l in cart["lines"]] == [("MILK-1L", 2)]
    assert cart["lines"][0]["confidence"] == 0.95 and not cart["lines"][0]["needs_review"]

    # the rest of the trip: a doubtful pick, leaving, the fusion's receipt
    for msg in trip[5:]:
        pub.publish(msg)
    assert pub.flush(10)
    wait_until(lambda: hub.store.count() >= len(trip), what="the whole trip at the hub")
    sessions = http.get("/api/sessions", headers=TILL).json()
    assert [(s["shopper"], s["status"], s["items"], s["needs_review"]) for s in sessions] == \
        [(shopper, "closed", 3, True)]
    cart = http.get(f"/api/carts/{shopper}", headers=TILL).json()
    bread = next(l for l in cart["lines"] if l["sku"] == "BREAD-500")
    assert bread["needs_review"] and bread["confidence"] == 0.45 and bread["pending_review"] == [trip[5].event_id]

    # a doubtful line blocks the checkout until it is reviewed
    blocked = http.post(f"/api/carts/{shopper}/checkout", headers=TILL, json={"method": "card"})
    assert blocked.status_code == 409 and blocked.json()["detail"]["pending_review"] == [trip[5].event_id]
    queue = http.get("/api/review", headers=TILL).json()
    assert [(q["event_id"], q["sku"], q["evidence"], q["reason"], q["alternatives"]) for q in queue] == \
        [(trip[5].event_id, "BREAD-500", ["hand-d"], "hand in shelf without a load cell", ["s-next-to-them"])]
    decided = http.post(f"/api/review/{trip[5].event_id}", headers=TILL, json={"decision": "accept"}).json()
    assert decided["item"]["review"] == "accepted" and decided["item"]["decided_by"] == "till-1"
    assert decided["cart"]["total"] == 4.37 and not any(l["needs_review"] for l in decided["cart"]["lines"])

    # settle: paid through the local provider, the fusion's receipt id kept
    paid = http.post(f"/api/carts/{shopper}/checkout", headers=TILL, json={"method": "card"})
    assert paid.status_code == 200, paid.text
    receipt = paid.json()
    assert receipt["receipt_id"] == f"r-{shopper}" and receipt["total"] == 4.37 and receipt["terminal"] == "till-1"
    assert receipt["payment_provider"] == "local" and receipt["payment_ref"].startswith("local-")
    assert http.get(f"/api/receipts/{receipt['receipt_id']}", headers=TILL).json() == receipt
    text = http.get(receipt["text_url"], headers=TILL)
    assert text.headers["content-type"].startswith("text/plain")
    assert "Rye bread 500 g" in text.text and "TOTAL EUR" in text.text and "4.37" in text.text
    assert http.get(f"/api/carts/{shopper}", headers=TILL).json()["status"] == "settled"
    again = http.post(f"/api/carts/{shopper}/checkout", headers=TILL)
    assert again.status_code == 409 and again.json()["detail"]["receipt_id"] == f"r-{shopper}"

    # a duplicate event changes nothing
    stored = hub.store.count()
    dupes = hub.ingest.subscriber.decoder.duplicates
    pub.publish(trip[3])
    pub.publish(trip[9])
    assert pub.flush(10)
    wait_until(lambda: hub.ingest.subscriber.decoder.duplicates >= dupes + 2, what="the duplicates to arrive")
    assert hub.store.count() == stored
    assert hub.store.ingest(trip[3]) is False  # and the store itself drops it too (after a restart, say)
    assert http.get(f"/api/carts/{shopper}", headers=TILL).json()["total"] == 4.37


def test_wrong_or_missing_tokens_are_refused(embedded_broker, hub_on):
    hub = hub_on(embedded_broker.url)
    http = httpx.Client(base_url=hub.http.url, timeout=10)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGlsbDpzZWNyZXQ="}):
        r = http.get("/api/sessions", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert http.post("/api/carts/s-1/checkout", headers=headers).status_code == 401
        assert http.get("/api/review", headers=headers).status_code == 401
    assert http.get("/api/sessions", headers=KIOSK).status_code == 200
    assert http.get("/api/review", headers=KIOSK).status_code == 403  # a kiosk without the review role
    assert http.get("/api/carts/s-nobody", headers=TILL).status_code == 404
    spec = http.get("/openapi.json").json()
    assert {"/api/sessions", "/api/carts/{shopper}", "/api/carts/{shopper}/checkout", "/api/receipts/{receipt_id}",
            "/api/receipts/{receipt_id}/text", "/api/carts/{shopper}/corrections", "/api/review",
            "/api/review/{event_id}", "/api/wayfinding", "/api/live/events"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_dispute_correction_and_a_declined_payment(embedded_broker, hub_on, fusion_out):
    hub = hub_on(embedded_broker.url)
    pub = fusion_out(embedded_broker.url)
    trip = _shopping_trip("s-dispute")
    for msg in trip:
        pub.publish(msg)
    assert pub.flush(10)
    wait_until(lambda: hub.store.count() >= len(trip), what="the trip at the hub")
    http = httpx.Client(base_url=hub.http.url, timeout=10)
    bad = http.post("/api/carts/s-dispute/corrections", headers=TILL, json={"sku": "NOPE", "quantity": 1,
                                                                            "reason": "scanned"})
    assert bad.status_code == 422 and "unknown product" in bad.text
    assert http.post("/api/carts/s-dispute/corrections", headers=TILL,
                     json={"sku": "MILK-1L", "quantity": 1}).status_code == 422  # a reason is required
    cart = http.post("/api/carts/s-dispute/corrections", headers=TILL,
                     json={"sku": "BREAD-500", "quantity": 0, "reason": "shopper put the bread back"}).json()
    assert [(l["sku"], l["quantity"]) for l in cart["lines"]] == [("MILK-1L", 2)]
    assert cart["corrections"][0]["reason"] == "shopper put the bread back"
    # the flagged change still awaits its review decision, so settle after rejecting it
    http.post(f"/api/review/{trip[5].event_id}", headers=TILL, json={"decision": "reject", "note": "put back"})
    declined = http.post("/api/carts/s-dispute/checkout", headers=TILL, json={"method": "decline"})
    assert declined.status_code == 402 and "declined" in declined.json()["detail"]["message"]
    assert hub.store.settlement("s-dispute") is None
    paid = http.post("/api/carts/s-dispute/checkout", headers=TILL, json={"method": "card"}).json()
    assert paid["total"] == 2.18 and [l["sku"] for l in paid["lines"]] == ["MILK-1L"]
    assert "shopper put the bread back" in http.get(paid["text_url"], headers=TILL).text


def test_malformed_messages_are_counted_and_skipped(embedded_broker, hub_on, fusion_out):
    hub = hub_on(embedded_broker.url)
    host, port, _, _ = parse_mqtt_url(embedded_broker.url)
    raw = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4().hex[:6]}")
    raw.connect(host, port)
    raw.loop_start()
    try:
        for payload in (b"not json", b'{"type": "cart_event", "v": 1}', b"\xff\xfe"):
            raw.publish(f"storesense/{STORE}/carts/s-x/events", payload, qos=1).wait_for_publish(5)
    finally:
        raw.loop_stop()
        raw.disconnect()
    pub = fusion_out(embedded_broker.url)
    good = Stamper("fusion", run_id="after-bad").make(CartEvent, 1.0, shopper="s-ok", phase="new", cart_version=0)
    pub.publish(good)
    assert pub.flush(10)
    wait_until(lambda: hub.store.session("s-ok") is not None, what="the good message after the bad ones")
    assert hub.ingest.malformed == 3


def test_offers_reach_the_shoppers_app_topic_with_caps_and_opt_out(embedded_broker, hub_on, fusion_out):
    hub = hub_on(embedded_broker.url)
    pub = fusion_out(embedded_broker.url)
    got: list[tuple[str, Offer]] = []
    lock = threading.Lock()

    def on_offer(msg, topic):
        with lock:
            got.append((topic, msg))

    app = MqttSubscriber(embedded_broker.url, store=STORE, client_id=f"app-{uuid.uuid4().hex[:6]}",
                         topics=[f"storesense/{STORE}/shoppers/+/offers"], on_message=on_offer,
                         clean_session=True).connect()
    try:
        http = httpx.Client(base_url=hub.http.url, timeout=10)
        assert http.put("/api/shoppers/s-quiet/offers/opt-out", json={"opted_out": True}).json()["opted_out"]
        f = Stamper("fusion", run_id="offers")
        cov = ((0.05, 0.0), (0.0, 0.05))
        msgs = [
            f.make(CartEvent, 0.0, shopper="s-a", phase="new", cart_version=0),
            f.make(CartEvent, 0.0, shopper="s-quiet", phase="new", cart_version=0),
            f.make(ZoneEvent, 1.0, shopper="s-a", zone="entry", phase="enter"),
            f.make(ZoneEvent, 1.0, shopper="s-quiet", zone="entry", phase="enter"),
            f.make(ZoneEvent, 3.0, shopper="s-a", zone="entry", phase="exit", dwell_s=2.0),
            f.make(ZoneEvent, 4.0, shopper="s-a", zone="entry", phase="enter"),  # again: capped at 1
            f.make(ZoneEvent, 10.0, shopper="s-a", zone="coffee-corner", phase="enter"),
            f.make(ShopperLocation, 11.0, shopper="s-a", track="t", x=7.0, y=4.2, cov=cov),  # 1 s: too early
            f.make(ShopperLocation, 13.5, shopper="s-a", track="t", x=7.0, y=4.3, cov=cov),  # 3.5 s: dwell offer
            f.make(ShopperLocation, 15.0, shopper="s-a", track="t", x=7.1, y=4.3, cov=cov),  # same visit: no more
        ]
        for m in msgs:
            pub.publish(m)
        assert pub.flush(10)
        wait_until(lambda: len(got) >= 2 and hub.store.count() >= len(msgs), what="two offers")
        time.sleep(0.3)  # nothing more should come
        with lock:
            offers = sorted((o.shopper, o.offer, t) for t, o in got)
        assert offers == [("s-a", "coffee-pairing", f"storesense/{STORE}/shoppers/s-a/offers"),
                          ("s-a", "welcome", f"storesense/{STORE}/shoppers/s-a/offers")]
        dwell = next(o for _, o in got if o.offer == "coffee-pairing")
        assert dwell.trigger == msgs[8].event_id and dwell.zone == "coffee-corner"
        listed = http.get("/api/shoppers/s-a/offers").json()
        assert sorted(o["offer"] for o in listed["offers"]) == ["coffee-pairing", "welcome"]
    finally:
        app.close()


def test_wayfinding_from_a_live_position_guides_the_lights(embedded_broker, hub_on, fusion_out):
    hub = hub_on(embedded_broker.url)
    pub = fusion_out(embedded_broker.url)
    commands: list[LightCommand] = []
    lights = MqttSubscriber(embedded_broker.url, store=STORE, client_id=f"lights-{uuid.uuid4().hex[:6]}",
                            topics=[f"storesense/{STORE}/lights/+/set"], on_message=lambda m, t: commands.append(m),
                            clean_session=True).connect()
    try:
        f = Stamper("fusion", run_id="wf")
        pub.publish(f.make(ShopperLocation, 1.0, shopper="s-w", track="t", x=1.5, y=1.0,
                           cov=((0.05, 0.0), (0.0, 0.05))))
        assert pub.flush(10)
        wait_until(lambda: hub.store.location("s-w") is not None, what="the live position")
        http = httpx.Client(base_url=hub.http.url, timeout=10)
        r = http.post("/api/wayfinding", json={"items": ["COFFEE-500", "rye bread"], "shopper": "s-w"})
        assert r.status_code == 200, r.text
        route = r.json()
        assert [s["shelf"] for s in route["stops"]] == ["B", "D"] and route["ordering"] == "exact"
        assert route["start"] == pytest.approx([1.55, 1.05]) and route["lights_published"]
        assert route["walking_time_s"] == pytest.approx(route["length_m"] / CFG.hub.walking_speed_mps, abs=0.1)
        wait_until(lambda: len(commands) == len(route["lights"]), what="the light commands")
        assert [c.fixture for c in sorted(commands, key=lambda c: c.step)] == route["lights"]
        assert {c.route for c in commands} == {route["route_id"]} and {c.shopper for c in commands} == {"s-w"}

        bad = http.post("/api/wayfinding", json={"items": ["coffee", "caviar", "1 l"], "start": {"x": 1, "y": 1}})
        assert bad.status_code == 422
        problems = {p["item"]: p["problem"] for p in bad.json()["detail"]["problems"]}
        assert "unknown product 'caviar'" in problems["caviar"] and "fits several products" in problems["1 l"]
        nowhere = http.post("/api/wayfinding", json={"items": ["milk"], "shopper": "s-ghost"})
        assert nowhere.status_code == 422 and "no live position" in nowhere.text
    finally:
        lights.close()
