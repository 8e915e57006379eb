"""The review queue (bearer token with the ``review`` role): flagged cart lines with their evidence, decided."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from ..store import HubStateError, ShelfReview
from .context import Ctx, ReviewTerminal
from .models import ReviewDecisionOut, ReviewIn, ReviewOut
from .views import cart_or_404, cart_out, product_name, review_out

router = APIRouter(tags=["review"])

# Routes carry no docstrings: FastAPI would publish them as the operation's description.


@router.get("/api/review", response_model=list[ReviewOut],
            summary="Cart lines flagged by the fusion, with their evidence")
def review_queue(ctx: Ctx, _: ReviewTerminal,
                 status: Literal["pending", "accepted", "rejected", "all"] = "pending") -> list[ReviewOut]:
    items = ctx.store.review_items(None if status == "all" else status)
    return [review_out(ctx, i) for i in items]


@router.post("/api/review/{event_id}", response_model=ReviewDecisionOut,
             summary="Accept or reject a flagged line; the cart and receipt follow")
def decide(event_id: str, body: ReviewIn, ctx: Ctx, terminal: ReviewTerminal) -> ReviewDecisionOut:
    decision = "accepted" if body.decision == "accept" else "rejected"
    try:
        item = ctx.store.decide_review(event_id, decision, terminal.id, body.note)
    except KeyError:
        raise HTTPException(404, f"no cart change {event_id!r}") from None
    except HubStateError as exc:
        raise HTTPException(409, str(exc)) from None
    return ReviewDecisionOut(item=review_out(ctx, item), cart=cart_out(ctx, cart_or_404(ctx, item.shopper)))


class NearbyOut(BaseModel):
    """A shopper near the shelf when the load changed."""

    shopper: str = Field(description="Pseudonymous session id.")
    distance_m: float = Field(description="Distance from the shelf, metres.")


class ShelfReviewOut(BaseModel):
    """A shelf load change no shopper's hand explains, with its evidence."""

    event_id: str = Field(description="Id of the fusion's shelf_event.")
    ts: float = Field(description="When the fusion decided it could not attribute the change.")
    shelf: str = Field(description="Shelf id.")
    plate: str = Field(description="Plate id.")
    sku: str | None = Field(description="The product the weight fits best.")
    name: str | None = Field(description="That product's name.")
    quantity: int = Field(description="Signed items: +n taken off the plate, -n put on it.")
    delta_g: float = Field(description="The load change in grams.")
    change_ts: float | None = Field(description="When the load started changing.")
    nearby: list[NearbyOut] = Field(description="Shoppers within 3 m of the shelf then, nearest first.")
    evidence: list[str] = Field(description="Event ids of the messages behind it.")
    reason: str = Field(description="The fusion's explanation.")
    review: str = Field(description="pending, resolved or dismissed.")
    decided_by: str | None = Field(description="Terminal that closed it.")
    note: str = Field(description="Note given when it was closed.")


class ShelfReviewIn(BaseModel):
    """Closing an unattributed shelf change."""

    decision: Literal["resolve", "dismiss"] = Field(description="resolve: handled (e.g. a cart corrected at a "
                                                                "terminal, stock counted); dismiss: nothing to do.")
    note: str = Field(default="", max_length=500, description="What was done.")


def shelf_review_out(ctx, item: ShelfReview) -> ShelfReviewOut:
    e = item.event
    name = product_name(ctx, e.sku) if e.sku else None
    return ShelfReviewOut(event_id=e.event_id, ts=e.ts, shelf=e.shelf, plate=e.plate, sku=e.sku, name=name,
                          quantity=e.quantity, delta_g=e.delta_g, change_ts=e.change_ts,
                          nearby=[NearbyOut(shopper=n.shopper, distance_m=n.distance_m) for n in e.nearby],
                          evidence=list(e.evidence), reason=e.reason, review=item.review,
                          decided_by=item.decided_by, note=item.note)


@router.get("/api/review/shelf", response_model=list[ShelfReviewOut],
            summary="Shelf load changes no shopper's hand explains, with their evidence")
def shelf_queue(ctx: Ctx, _: ReviewTerminal,
                status: Literal["pending", "resolved", "dismissed", "all"] = "pending") -> list[ShelfReviewOut]:
    return [shelf_review_out(ctx, i) for i in ctx.store.shelf_reviews(None if status == "all" else status)]


@router.post("/api/review/shelf/{event_id}", response_model=ShelfReviewOut,
             summary="Close an unattributed shelf change (resolved or dismissed)")
def decide_shelf(event_id: str, body: ShelfReviewIn, ctx: Ctx, terminal: ReviewTerminal) -> ShelfReviewOut:
    decision = "resolved" if body.decision == "resolve" else "dismissed"
    try:
        item = ctx.store.decide_shelf_review(event_id, decision, terminal.id, body.note)
    except KeyError:
        raise HTTPException(404, f"no unattributed shelf change {event_id!r}") from None
    except HubStateError as exc:
        raise HTTPException(409, str(exc)) from None
    return shelf_review_out(ctx, item)
