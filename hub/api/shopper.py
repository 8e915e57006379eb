"""The shopper's app (no token; the pseudonymous session id is the key): wayfinding, offers and the opt-out."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request

from .context import Ctx
from .models import OptOutIn, RouteIn, RouteOut
from .views import route_out

router = APIRouter(tags=["shopper"])

# Routes carry no docstrings: FastAPI would publish them as the operation's description.


@router.post("/api/wayfinding", response_model=RouteOut,
             responses={422: {"description": "unknown products, unreachable shelves or a bad start"},
                        429: {"description": "more than 6 guided routes a minute for this session (or address)"}},
             summary="A route through the store for a shopping list")
def wayfinding(body: RouteIn, ctx: Ctx, request: Request) -> RouteOut:
    start = (body.start.x, body.start.y) if body.start else None
    if start is None and body.shopper:
        here = ctx.store.location(body.shopper)
        if here is None:
            raise HTTPException(422, {"message": f"no live position for shopper {body.shopper!r}: give a start",
                                      "problems": [{"item": None, "problem": "no live position"}]})
        start = (here[0], here[1])
    if start is None:
        raise HTTPException(422, {"message": "give a start point or a shopper with a live position",
                                  "problems": [{"item": None, "problem": "no start"}]})
    end = (body.end.x, body.end.y) if body.end else None
    from ..wayfinding import WayfindingError

    try:
        route = ctx.wayfinder.plan(body.items, start, end)
    except WayfindingError as exc:
        raise HTTPException(422, {"message": str(exc), "problems": exc.problems}) from None
    # a fresh stamper per route: its random run id keeps event ids unique across threads
    commands = ctx.wayfinder.light_commands(route, body.shopper, time.time()) if body.guide_lights else []
    if commands:  # lighting fixtures is an action: rate-limited per session, or per address without one
        ctx.guidance_limit.check(body.shopper or (request.client.host if request.client else "?"))
    published = False
    if commands and ctx.publish is not None:
        for cmd in commands:
            ctx.publish(cmd)
        published = True
    return route_out(route, [c.fixture for c in commands] if commands else
                     ctx.wayfinder.fixtures_along(route.path), published)


@router.get("/api/shoppers/{shopper}/offers", summary="Offers sent to a shopper and the opt-out")
def offers(shopper: str, ctx: Ctx) -> dict:
    return {"shopper": shopper, "opted_out": ctx.store.opted_out(shopper),
            "offers": [{"offer": o, "trigger": e, "ts": ts} for o, e, ts in ctx.store.offers_sent(shopper)]}


@router.put("/api/shoppers/{shopper}/offers/opt-out", summary="Opt out of offers (or back in)",
            responses={429: {"description": "more than 10 changes a minute for this session"}})
def opt_out(shopper: str, body: OptOutIn, ctx: Ctx) -> dict:
    ctx.opt_out_limit.check(shopper)
    ctx.store.set_opt_out(shopper, body.opted_out)
    return {"shopper": shopper, "opted_out": body.opted_out}
