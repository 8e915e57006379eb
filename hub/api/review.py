"""The review queue (bearer token with the ``review`` role): flagged cart lines with their evidence, decided."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException

from ..store import HubStateError
from .context import Ctx, ReviewTerminal
from .models import ReviewDecisionOut, ReviewIn, ReviewOut
from .views import cart_or_404, cart_out, review_out

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
