"""Hub objects in their API form: carts, receipts, review items and routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import HTTPException

from ..carts import HubCart, build_cart
from ..store import StoredChange
from .context import HubContext
from .models import CartOut, CorrectionOut, LineOut, ReceiptOut, ReviewOut, RouteOut, StopOut

if TYPE_CHECKING:  # wayfinding (scipy's graph routines) loads on first use
    from ..wayfinding import Route


def cart_or_404(ctx: HubContext, shopper: str) -> HubCart:
    """The shopper's cart; 404 when there is no such session."""
    cart = build_cart(ctx.config, ctx.store, shopper)
    if cart is None:
        raise HTTPException(404, f"no session {shopper!r}")
    return cart


def _line_out(line) -> LineOut:
    return LineOut(**{**line.__dict__, "pending_review": list(line.pending_review)})


def cart_out(ctx: HubContext, cart: HubCart) -> CartOut:
    """The API form of a cart, with its receipt id once settled and what is due since."""
    settled = cart.paid[0] if cart.paid else None
    return CartOut(
        shopper=cart.shopper, status=cart.status, currency=cart.currency, total=cart.total,  # type: ignore[arg-type]
        lines=[_line_out(l) for l in cart.lines],
        pending_review=cart.pending_review,
        corrections=[CorrectionOut(**{k: v for k, v in c.__dict__.items() if k != "shopper"})
                     for c in cart.corrections],
        history_complete=cart.history_complete, receipt_id=settled.receipt.receipt_id if settled else None,
        paid_total=cart.paid_total, followup=[_line_out(l) for l in cart.followup],
        followup_total=cart.followup_total, followup_receipt_ids=[p.receipt.receipt_id for p in cart.paid[1:]],
    )


def product_name(ctx: HubContext, sku: str) -> str:
    """The catalog name of a product, or its SKU when the catalog does not know it."""
    try:
        return ctx.config.product(sku).name
    except KeyError:
        return sku


def review_out(ctx: HubContext, item: StoredChange) -> ReviewOut:
    """The API form of a cart change in the review queue (the product named from the catalog)."""
    c = item.change
    return ReviewOut(event_id=item.event_id, shopper=item.shopper, sku=c.sku, name=product_name(ctx, c.sku),
                     quantity=c.quantity,
                     confidence=c.confidence, shelf=c.shelf, plate=c.plate, evidence=list(c.evidence),
                     reason=c.reason, alternatives=list(c.alternatives), ts=item.ts, review=item.review,
                     decided_by=item.decided_by,  # type: ignore[arg-type]
                     note=item.note)


def receipt_out(ctx: HubContext, receipt_id: str) -> ReceiptOut:
    """The API form of a settled receipt; 404 when there is none with that id."""
    s = ctx.store.settlement_by_receipt(receipt_id)
    if s is None:
        raise HTTPException(404, f"no settled receipt {receipt_id!r}")
    r = s.receipt
    return ReceiptOut(
        receipt_id=r.receipt_id, shopper=r.shopper, lines=list(r.lines),
        total=r.total, currency=r.currency, opened_ts=r.opened_ts, closed_ts=r.closed_ts,
        settled_ts=s.settled_ts, terminal=s.terminal, payment_provider=s.provider, payment_ref=s.payment_ref,
        text_url=f"/api/receipts/{r.receipt_id}/text")


def route_out(route: Route, lights: list[str], published: bool) -> RouteOut:
    """The API form of a route."""
    return RouteOut(
        route_id=route.route_id, start=route.start, end=route.end,
        stops=[StopOut(shelf=s.shelf, point=s.point, distance_from_previous_m=s.distance_from_previous_m,
                       items=[{"query": i.query, "sku": i.sku, "name": i.name, "plate": i.plate} for i in s.items])
               for s in route.stops],
        path=route.path, length_m=route.length_m, walking_time_s=route.walking_time_s, ordering=route.ordering,
        lights=lights, lights_published=published)
