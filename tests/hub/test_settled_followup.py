"""Money rule: a change to a settled session never changes the paid receipt; it is a follow-up charge.

Fusion messages go through a real broker to the hub's ingest; the till settles over HTTP.
Before: a pick after paying raised the settled cart (EUR 1.99 -> 22.96, still "settled") and
settling again answered 409, so the goods left unpaid with no warning.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from storesense.contracts import CartChange, CartEvent, CartLine, CartState, Stamper

from .test_api import CFG, TILL, fusion_out, hub_on, wait_until  # noqa: F401 - fixtures

MILK, COFFEE = CFG.product("MILK-1L"), CFG.product("COFFEE-500")


def _pick(f: Stamper, shopper: str, ts: float, version: int, product, quantity: int, lines: tuple,
          needs_review: bool = False):
    change = CartChange(sku=product.sku, quantity=quantity, confidence=0.5 if needs_review else 0.95,
                        needs_review=needs_review, shelf="A", plate="A1", evidence=(f"hand-{version}",),
                        reason="hand exit matched a load drop")
    total = round(sum(l.quantity * l.unit_price for l in lines), 2)
    return [f.make(CartEvent, ts, shopper=shopper, phase="update", cart_version=version, change=change),
            f.make(CartState, ts, shopper=shopper, status="open", cart_version=version, total=total, lines=lines)]


def _line(product, quantity: int) -> CartLine:
    return CartLine(sku=product.sku, name=product.name, quantity=quantity, unit_price=product.price, confidence=0.95)


@pytest.fixture
def scene(mosquitto_broker, hub_on, fusion_out):  # noqa: F811 - pytest fixtures by name
    hub = hub_on(mosquitto_broker.url)
    pub = fusion_out(mosquitto_broker.url)
    http = httpx.Client(base_url=hub.http.url, timeout=10)

    def send(messages):
        stored = hub.store.count()
        for m in messages:
            pub.publish(m)
        assert pub.flush(10)
        wait_until(lambda: hub.store.count() >= stored + len(messages), what="the messages at the hub")

    yield hub, http, send
    http.close()


def test_a_pick_after_paying_is_a_follow_up_charge_never_added_to_the_paid_receipt(scene):
    hub, http, send = scene
    shopper = f"s-{uuid.uuid4().hex[:12]}"
    f = Stamper("fusion", run_id=f"followup-{shopper}")
    send([f.make(CartEvent, 100.0, shopper=shopper, phase="new", cart_version=0),
          *_pick(f, shopper, 110.0, 1, MILK, 1, (_line(MILK, 1),))])
    paid = http.post(f"/api/carts/{shopper}/checkout", headers=TILL, json={"method": "card"})
    assert paid.status_code == 200, paid.text
    receipt = paid.json()
    assert receipt["total"] == MILK.price

    # the shopper picks again after paying: twice a coffee, one of them doubtful
    send([*_pick(f, shopper, 120.0, 2, COFFEE, 1, (_line(MILK, 1), _line(COFFEE, 1))),
          *_pick(f, shopper, 125.0, 3, COFFEE, 1, (_line(MILK, 1), _line(COFFEE, 2)), needs_review=True)])
    assert http.get(f"/api/receipts/{receipt['receipt_id']}", headers=TILL).json() == receipt  # unchanged
    assert f"{MILK.price:.2f}" in http.get(receipt["text_url"], headers=TILL).text
    cart = http.get(f"/api/carts/{shopper}", headers=TILL).json()
    assert cart["status"] == "settled" and cart["receipt_id"] == receipt["receipt_id"]
    assert cart["paid_total"] == MILK.price
    assert [(l["sku"], l["quantity"]) for l in cart["followup"]] == [(COFFEE.sku, 2)]
    assert cart["followup_total"] == round(2 * COFFEE.price, 2)
    # the till's default list shows the session again, with what is due
    listed = {s["shopper"]: s for s in http.get("/api/sessions", headers=TILL).json()}
    assert listed[shopper]["followup_total"] == round(2 * COFFEE.price, 2)

    # the doubtful pick blocks the follow-up until reviewed (a change after paying can be decided)
    blocked = http.post(f"/api/carts/{shopper}/checkout", headers=TILL)
    assert blocked.status_code == 409 and blocked.json()["detail"]["pending_review"]
    doubtful = blocked.json()["detail"]["pending_review"][0]
    decided = http.post(f"/api/review/{doubtful}", headers=TILL, json={"decision": "reject", "note": "put back"})
    assert decided.status_code == 200, decided.text

    second = http.post(f"/api/carts/{shopper}/checkout", headers=TILL, json={"method": "card"})
    assert second.status_code == 200, second.text
    follow = second.json()
    assert follow["receipt_id"] == f"{receipt['receipt_id']}-2" and follow["total"] == COFFEE.price
    assert [(l["sku"], l["quantity"]) for l in follow["lines"]] == [(COFFEE.sku, 1)]
    assert follow["payment_ref"] != receipt["payment_ref"]
    assert http.get(f"/api/receipts/{receipt['receipt_id']}", headers=TILL).json() == receipt  # still unchanged
    cart = http.get(f"/api/carts/{shopper}", headers=TILL).json()
    assert cart["followup"] == [] and cart["paid_total"] == round(MILK.price + COFFEE.price, 2)
    assert cart["followup_receipt_ids"] == [follow["receipt_id"]]
    assert shopper not in {s["shopper"] for s in http.get("/api/sessions", headers=TILL).json()}
    again = http.post(f"/api/carts/{shopper}/checkout", headers=TILL)
    assert again.status_code == 409 and again.json()["detail"]["receipt_id"] == follow["receipt_id"]

    # a put-back after paying is not refunded silently: it waits for staff, the receipts stay as paid
    send(_pick(f, shopper, 130.0, 4, MILK, -1, (_line(COFFEE, 1),)))
    cart = http.get(f"/api/carts/{shopper}", headers=TILL).json()
    assert [(l["sku"], l["quantity"]) for l in cart["followup"]] == [(MILK.sku, -1)]
    refused = http.post(f"/api/carts/{shopper}/checkout", headers=TILL)
    assert refused.status_code == 409 and "put back after payment" in refused.json()["detail"]["message"]
    assert http.get(f"/api/receipts/{receipt['receipt_id']}", headers=TILL).json() == receipt
    charges = hub.ctx.payments.charges  # charged once per receipt, for what it says
    assert charges[receipt["receipt_id"]][0] == MILK.price and charges[follow["receipt_id"]][0] == COFFEE.price
