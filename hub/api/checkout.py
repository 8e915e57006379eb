"""Checkout terminals (bearer token with the ``checkout`` role): sessions, carts, checkout, receipts, corrections."""

from __future__ import annotations

import logging
import time
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse

from ...geometry.polygons import distance_to_polygon
from ..carts import HubCart, build_cart, final_receipt, followup_receipt, receipt_text
from ..payments import PaymentResult
from ..store import HubStateError
from .context import CheckoutTerminal, Ctx
from .models import CartOut, CheckoutIn, CorrectionIn, ReceiptOut, SessionOut
from .views import cart_or_404, cart_out, receipt_out

router = APIRouter(tags=["checkout"])
log = logging.getLogger(__name__)

# Routes carry no docstrings: FastAPI would publish them as the operation's description.


@router.get("/api/sessions", response_model=list[SessionOut],
            summary="Sessions not yet settled (or those with the given statuses)")
def sessions(ctx: Ctx, _: CheckoutTerminal,
             status: list[Literal["open", "closed", "settled"]] = Query(default=["open", "closed"])
             ) -> list[SessionOut]:
    out = []
    rows = ctx.store.sessions(tuple(status))
    if "settled" not in status:  # a settled session with something taken after paying is due again
        due = set(ctx.store.changed_after_payment())
        rows += [s for s in ctx.store.sessions(("settled",)) if s.shopper in due]
    for s in rows:
        cart = build_cart(ctx.config, ctx.store, s.shopper)
        if cart is not None and s.status == "settled" and "settled" not in status and not cart.followup:
            continue
        lines = cart.lines if cart else []
        out.append(SessionOut(shopper=s.shopper, status=s.status, opened_ts=s.opened_ts,  # type: ignore[arg-type]
                              closed_ts=s.closed_ts, items=sum(l.quantity for l in lines),
                              total=cart.total if cart else 0.0, needs_review=any(l.needs_review for l in lines),
                              followup_total=cart.followup_total if cart else 0.0))
    return out


@router.get("/api/sessions/near", summary="Open sessions standing in or near a zone (the till's own), nearest first")
def sessions_near(ctx: Ctx, _: CheckoutTerminal,
                  zone: str | None = Query(None, description="Zone id (default: the store's first checkout zone)."),
                  max_m: float = Query(1.5, ge=0.0, le=50.0, description="How far outside the zone still counts.")
                  ) -> list[dict]:
    zones = {z.id: z for z in ctx.config.zones}
    if zone is None:
        checkout = [z for z in ctx.config.zones if z.kind == "checkout"]
        if not checkout:
            raise HTTPException(400, "the store config has no checkout zone: name one with ?zone= (ids: "
                                     + ", ".join(sorted(zones)) + ")")
        zone = checkout[0].id
    if zone not in zones:
        raise HTTPException(404, f"no zone {zone!r} in the store config (ids: {', '.join(sorted(zones))})")
    polygon = zones[zone].polygon
    out = []
    for shopper, x, y, ts in ctx.store.locations():
        d = distance_to_polygon(x, y, polygon)
        if d <= max_m:
            cart = build_cart(ctx.config, ctx.store, shopper)
            out.append({"shopper": shopper, "zone": zone, "distance_m": round(d, 2), "x": x, "y": y, "ts": ts,
                        "items": sum(l.quantity for l in cart.lines) if cart else 0,
                        "total": cart.total if cart else 0.0})
    return sorted(out, key=lambda r: (r["distance_m"], -r["ts"]))


@router.get("/api/carts/{shopper}", response_model=CartOut,
            summary="A cart with per-line confidence and review state")
def read_cart(shopper: str, ctx: Ctx, _: CheckoutTerminal) -> CartOut:
    return cart_out(ctx, cart_or_404(ctx, shopper))


@router.post("/api/carts/{shopper}/checkout", response_model=ReceiptOut,
             responses={402: {"description": "payment declined"}, 404: {"description": "unknown session"},
                        409: {"description": "lines await review, or already settled with nothing due since"},
                        503: {"description": "paid, but the database could not record it: retry"}},
             summary="Settle a checkout: charge the cart (a settled one: what was taken since) and return the receipt")
def settle(shopper: str, ctx: Ctx, terminal: CheckoutTerminal, body: CheckoutIn | None = None) -> ReceiptOut:
    body = body or CheckoutIn()
    with ctx.checkout_lock:
        cart = cart_or_404(ctx, shopper)
        if cart.paid:
            return _settle_followup(ctx, cart, terminal, body)
        if cart.unknown_skus:
            raise HTTPException(409, {"message": f"the cart holds products not in the catalog: "
                                                 f"{', '.join(cart.unknown_skus)}"})
        flagged = [l for l in cart.lines if l.needs_review]
        if flagged:
            raise HTTPException(409, {
                "message": f"{len(flagged)} line(s) await review ({', '.join(l.sku for l in flagged)}): decide "
                           f"them in the review queue or correct them first",
                "pending_review": cart.pending_review})
        now = time.time()
        receipt = final_receipt(ctx.config, ctx.store, cart, now)
        if receipt.total > 0:
            result = ctx.payments.charge(receipt.receipt_id, receipt.total, receipt.currency, body.method)
        else:
            result = PaymentResult(True, "nothing-to-pay", "total is zero")
        if not result.approved:
            raise HTTPException(402, {"message": f"payment declined: {result.message}"})
        _record(ctx, receipt, result, lambda: ctx.store.settle(
            receipt, terminal.id, getattr(ctx.payments, "name", "payment"), result.reference, now))
        return receipt_out(ctx, receipt.receipt_id)


def _record(ctx: Ctx, receipt, result: PaymentResult, write) -> None:
    """Record a charged checkout; when the database fails (a full disk), 503 naming the payment.

    The charge is idempotent on the receipt id, so the till retrying gets the same payment, not a
    second one, and the hub records it then.
    """
    try:
        write()
    except Exception as exc:  # noqa: BLE001 - whatever the database raises, the till must hear what happened
        log.error("checkout %s: paid (%s) but not recorded: %s: %s", receipt.receipt_id, result.reference,
                  type(exc).__name__, exc)
        raise HTTPException(503, {
            "message": f"the payment went through ({result.reference}) but the hub could not record the receipt "
                       f"({type(exc).__name__}); retry the checkout: the same payment is recorded, not charged again",
            "receipt_id": receipt.receipt_id, "payment_ref": result.reference}) from None


def _settle_followup(ctx: Ctx, cart: HubCart, terminal: CheckoutTerminal, body: CheckoutIn) -> ReceiptOut:
    """A settled session: charge what was taken since the last payment as a receipt of its own."""
    done = cart.paid[-1].receipt.receipt_id
    if not cart.followup:
        raise HTTPException(409, {"message": f"session {cart.shopper} is already settled", "receipt_id": done})
    back = [l for l in cart.followup if l.quantity < 0]
    if back:
        raise HTTPException(409, {"message": f"put back after payment ({', '.join(l.sku for l in back)}): a refund "
                                             f"is a staff decision; correct the line to what was paid, or refund",
                                  "receipt_id": done, "followup_total": cart.followup_total})
    flagged = [l for l in cart.followup if l.needs_review]
    if flagged:
        raise HTTPException(409, {
            "message": f"{len(flagged)} follow-up line(s) await review ({', '.join(l.sku for l in flagged)})",
            "pending_review": [e for l in flagged for e in l.pending_review]})
    now = time.time()
    receipt = followup_receipt(ctx.config, cart, now)
    result = ctx.payments.charge(receipt.receipt_id, receipt.total, receipt.currency, body.method)
    if not result.approved:
        raise HTTPException(402, {"message": f"payment declined: {result.message}"})
    _record(ctx, receipt, result, lambda: ctx.store.settle_followup(
        receipt, len(cart.paid) + 1, terminal.id, getattr(ctx.payments, "name", "payment"), result.reference, now))
    return receipt_out(ctx, receipt.receipt_id)


@router.get("/api/receipts/{receipt_id}", response_model=ReceiptOut, summary="A settled receipt as JSON")
def read_receipt(receipt_id: str, ctx: Ctx, _: CheckoutTerminal) -> ReceiptOut:
    return receipt_out(ctx, receipt_id)


@router.get("/api/receipts/{receipt_id}/text", response_class=PlainTextResponse,
            summary="A settled receipt as printable text")
def read_receipt_text(receipt_id: str, ctx: Ctx, _: CheckoutTerminal) -> str:
    s = ctx.store.settlement_by_receipt(receipt_id)
    if s is None:
        raise HTTPException(404, f"no settled receipt {receipt_id!r}")
    return receipt_text(ctx.config, s, ctx.store.corrections(s.shopper))


@router.post("/api/carts/{shopper}/corrections", response_model=CartOut,
             summary="Correct a line with a reason (a dispute at the terminal)")
def correct(shopper: str, body: CorrectionIn, ctx: Ctx, terminal: CheckoutTerminal) -> CartOut:
    try:
        ctx.config.product(body.sku)
    except KeyError:
        raise HTTPException(422, f"unknown product {body.sku!r}") from None
    with ctx.checkout_lock:
        cart = cart_or_404(ctx, shopper)
        before = cart.quantity(body.sku)
        if before == body.quantity:
            raise HTTPException(409, f"{body.sku} already has {before} item(s) in the cart: nothing to correct")
        try:  # a settled cart: only while a follow-up is due, and it changes the follow-up, not the paid receipt
            ctx.store.add_correction(shopper, body.sku, before, body.quantity, body.reason, terminal.id,
                                     after_settlement=bool(cart.followup))
        except HubStateError as exc:
            raise HTTPException(409, str(exc)) from None
        return cart_out(ctx, cart_or_404(ctx, shopper))
