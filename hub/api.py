"""The hub's HTTP API (FastAPI): checkout terminals, review queue, wayfinding, offers, live page.

:func:`create_app` builds the application over a :class:`HubContext`. The
OpenAPI document is served at ``/openapi.json`` (browsable at ``/docs``).

Who may call what:

- checkout terminals (bearer token with the ``checkout`` role): list sessions,
  read a cart, settle a checkout, read a receipt (JSON or printable text),
  correct a line with a reason;
- review (bearer token with the ``review`` role): list flagged lines with their
  evidence, accept or reject them;
- the shopper's app (no token; the pseudonymous session id is the key):
  wayfinding, offers and opting out of them;
- the live page and its feed (no token, read only): floor plan, positions,
  open carts, node health. Bind the hub to the store's LAN only.

A wrong or missing token is answered 401; a token without the role, 403.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from ..config import StoreConfig
from ..contracts import Envelope, ReceiptLine
from .auth import Terminal, TerminalRegistry
from .carts import HubCart, build_cart, final_receipt, receipt_text
from .live import LiveFeed, floor_plan, node_health
from .payments import LocalPaymentProvider, PaymentProvider, PaymentResult
from .store import HubStateError, HubStore, StoredChange

if TYPE_CHECKING:  # wayfinding (scipy's graph routines) loads on first use
    from .wayfinding import Route, Wayfinder


@dataclass
class HubContext:
    """What the API works on: the store config, the hub store, terminals, payments and MQTT output."""

    config: StoreConfig
    store: HubStore
    terminals: TerminalRegistry = field(default_factory=TerminalRegistry)
    payments: PaymentProvider = field(default_factory=LocalPaymentProvider)
    publish: Callable[[Envelope], None] | None = None  # MQTT output for light commands
    feed: LiveFeed | None = None
    _wayfinder: "Wayfinder | None" = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        if self.feed is None:
            self.feed = LiveFeed(self.config, self.store, self.cart_summary).attach()

    @property
    def wayfinder(self) -> Wayfinder:
        """The store's wayfinder (built on first use: rasterising the floor takes a moment)."""
        from .wayfinding import Wayfinder

        with self._lock:
            if self._wayfinder is None:
                self._wayfinder = Wayfinder(self.config)
            return self._wayfinder

    def cart_summary(self, shopper: str) -> dict | None:
        """A short cart for the live page: status, item count, total, lines, review flag."""
        cart = build_cart(self.config, self.store, shopper)
        if cart is None:
            return None
        return {"shopper": shopper, "status": cart.status, "items": sum(l.quantity for l in cart.lines),
                "total": cart.total, "currency": cart.currency, "needs_review": any(l.needs_review for l in cart.lines),
                "lines": [{"sku": l.sku, "name": l.name, "quantity": l.quantity} for l in cart.lines]}


# --------------------------------------------------------------------------- schemas


class LineOut(BaseModel):
    """A cart line with its confidence and review state."""

    sku: str = Field(description="Product SKU.")
    name: str = Field(description="Product name.")
    quantity: int = Field(description="Items in the cart.")
    unit_price: float = Field(description="Price per item.")
    amount: float = Field(description="quantity × unit_price.")
    confidence: float = Field(description="Lowest confidence of the changes behind the line (1 once a person confirmed).")
    needs_review: bool = Field(description="True while a change behind the line awaits review.")
    pending_review: list[str] = Field(description="Event ids of the changes awaiting review.")
    corrected: bool = Field(description="True when a terminal corrected the line.")


class CorrectionOut(BaseModel):
    """A correction made at a terminal."""

    id: str = Field(description="Correction id.")
    sku: str = Field(description="Product SKU.")
    quantity_before: int = Field(description="Items before the correction.")
    quantity_after: int = Field(description="Items after it.")
    reason: str = Field(description="Why the line was corrected.")
    terminal: str = Field(description="Terminal that corrected it.")
    ts: float = Field(description="When, Unix seconds.")


class CartOut(BaseModel):
    """A cart as a checkout terminal reads it."""

    shopper: str = Field(description="Pseudonymous session id.")
    status: Literal["open", "closed", "settled"] = Field(description="open: shopping; closed: left; settled: paid.")
    currency: str = Field(description="ISO 4217 currency.")
    total: float = Field(description="Sum of line amounts.")
    lines: list[LineOut] = Field(description="Current lines.")
    pending_review: list[str] = Field(description="Event ids of the cart's changes awaiting review.")
    corrections: list[CorrectionOut] = Field(description="Corrections made at terminals.")
    history_complete: bool = Field(description="False when the hub joined after the session began (lines then start "
                                               "from the fusion's cart state).")
    receipt_id: str | None = Field(description="The settled receipt, once paid.")


class SessionOut(BaseModel):
    """A shopper session in the terminal's list."""

    shopper: str = Field(description="Pseudonymous session id.")
    status: Literal["open", "closed", "settled"] = Field(description="Session status.")
    opened_ts: float | None = Field(description="When the session began.")
    closed_ts: float | None = Field(description="When the shopper left, if they did.")
    items: int = Field(description="Items in the cart.")
    total: float = Field(description="Cart total.")
    needs_review: bool = Field(description="True when a line awaits review.")


class CheckoutIn(BaseModel):
    """A checkout request."""

    method: str = Field(default="card", min_length=1, description="Payment method passed to the provider.")


class ReceiptOut(BaseModel):
    """A settled receipt."""

    receipt_id: str = Field(description="Receipt id.")
    shopper: str = Field(description="Pseudonymous session id.")
    lines: list[ReceiptLine] = Field(description="Lines bought (as on the wire).")
    total: float = Field(description="Amount paid.")
    currency: str = Field(description="ISO 4217 currency.")
    opened_ts: float = Field(description="When the session began.")
    closed_ts: float = Field(description="When the shopper left (or checked out).")
    settled_ts: float = Field(description="When it was paid.")
    terminal: str = Field(description="Terminal that settled it.")
    payment_provider: str = Field(description="Payment provider.")
    payment_ref: str = Field(description="The provider's reference.")
    text_url: str = Field(description="Where the printable text receipt is.")


class CorrectionIn(BaseModel):
    """A terminal's correction of one line (a dispute)."""

    sku: str = Field(min_length=1, description="Product SKU of the line.")
    quantity: int = Field(ge=0, le=1000, description="The right number of items.")
    reason: str = Field(min_length=3, max_length=500, description="Why (kept with the cart and printed).")


class ReviewOut(BaseModel):
    """A cart change flagged for review, with its evidence."""

    event_id: str = Field(description="The cart event's id (identifies the change).")
    shopper: str = Field(description="Pseudonymous session id.")
    sku: str = Field(description="Product SKU.")
    name: str = Field(description="Product name.")
    quantity: int = Field(description="Signed change: +n picked, -n put back.")
    confidence: float = Field(description="The fusion's confidence in the change.")
    shelf: str | None = Field(description="Shelf involved.")
    plate: str | None = Field(description="Plate involved.")
    evidence: list[str] = Field(description="event_ids of the edge messages behind the decision.")
    reason: str = Field(description="The fusion's explanation.")
    ts: float = Field(description="When the change was decided.")
    review: Literal["pending", "accepted", "rejected"] = Field(description="Review state.")
    decided_by: str | None = Field(description="Terminal that decided it.")
    note: str | None = Field(description="The reviewer's note.")


class ReviewIn(BaseModel):
    """A review decision."""

    decision: Literal["accept", "reject"] = Field(description="accept: the change stands; reject: it is undone.")
    note: str = Field(default="", max_length=500, description="Optional note.")


class ReviewDecisionOut(BaseModel):
    """The decided item and the cart after the decision."""

    item: ReviewOut = Field(description="The decided change.")
    cart: CartOut = Field(description="The cart after the decision.")


class PointIn(BaseModel):
    """A floor point in metres."""

    x: float = Field(description="Floor x, metres.")
    y: float = Field(description="Floor y, metres.")


class RouteIn(BaseModel):
    """A wayfinding request: a shopping list and where to start."""

    items: list[str] = Field(min_length=1, max_length=100, description="SKUs or product names (or a unique part).")
    start: PointIn | None = Field(default=None, description="Start point; default: the shopper's live position.")
    shopper: str | None = Field(default=None, description="Session id: its live position is the start, and its "
                                                          "lights are guided.")
    end: PointIn | None = Field(default=None, description="Where the route should end (e.g. the checkout).")
    guide_lights: bool = Field(default=True, description="Publish guidance commands to the fixtures along the path.")


class StopOut(BaseModel):
    """One stop of a route."""

    shelf: str = Field(description="Shelf id.")
    point: tuple[float, float] = Field(description="Where to stand, metres.")
    items: list[dict] = Field(description="Items taken there: query, sku, name, plate.")
    distance_from_previous_m: float = Field(description="Walking distance from the previous stop (or the start).")


class RouteOut(BaseModel):
    """A planned route."""

    route_id: str = Field(description="Route id (also in the light commands).")
    start: tuple[float, float] = Field(description="Start, snapped onto free floor.")
    end: tuple[float, float] | None = Field(description="End, if one was asked for.")
    stops: list[StopOut] = Field(description="Stops in visiting order.")
    path: list[tuple[float, float]] = Field(description="The walkable path through every stop, metres.")
    length_m: float = Field(description="Path length, metres.")
    walking_time_s: float = Field(description="Walking time at the store's walking speed, seconds.")
    ordering: str = Field(description="How the order was found: exact or nearest-neighbour+2-opt.")
    lights: list[str] = Field(description="Fixtures along the path, in passing order.")
    lights_published: bool = Field(description="True when guidance commands went out on MQTT.")


class OptOutIn(BaseModel):
    """Opt out of offers (or back in)."""

    opted_out: bool = Field(description="True: no more offers for this session.")


# --------------------------------------------------------------------------- app


def create_app(ctx: HubContext) -> FastAPI:
    """The hub's FastAPI application over ``ctx``."""
    app = FastAPI(title="storesense hub", version="1",
                  description="Checkout terminals, review queue, wayfinding, offers and the live store page.")
    bearer = HTTPBearer(auto_error=False, description="The terminal's token")
    checkout_lock = threading.Lock()
    app.state.ctx = ctx

    def terminal_with(role: str):
        def check(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Terminal:
            terminal = ctx.terminals.verify(creds.credentials if creds else None)
            if terminal is None:
                raise HTTPException(401, "missing or wrong terminal token", headers={"WWW-Authenticate": "Bearer"})
            if role not in terminal.roles:
                raise HTTPException(403, f"terminal {terminal.id} does not have the {role} role")
            return terminal
        return check

    checkout = Depends(terminal_with("checkout"))
    review = Depends(terminal_with("review"))

    def cart_or_404(shopper: str) -> HubCart:
        cart = build_cart(ctx.config, ctx.store, shopper)
        if cart is None:
            raise HTTPException(404, f"no session {shopper!r}")
        return cart

    def cart_out(cart: HubCart) -> CartOut:
        settled = ctx.store.settlement(cart.shopper) if cart.status == "settled" else None
        return CartOut(
            shopper=cart.shopper, status=cart.status, currency=cart.currency, total=cart.total,  # type: ignore[arg-type]
            lines=[LineOut(**{**l.__dict__, "pending_review": list(l.pending_review)}) for l in cart.lines],
            pending_review=cart.pending_review,
            corrections=[CorrectionOut(**{k: v for k, v in c.__dict__.items() if k != "shopper"})
                         for c in cart.corrections],
            history_complete=cart.history_complete, receipt_id=settled.receipt.receipt_id if settled else None,
        )

    def review_out(item: StoredChange) -> ReviewOut:
        c = item.change
        try:
            name = ctx.config.product(c.sku).name
        except KeyError:
            name = c.sku
        return ReviewOut(event_id=item.event_id, shopper=item.shopper, sku=c.sku, name=name, quantity=c.quantity,
                         confidence=c.confidence, shelf=c.shelf, plate=c.plate, evidence=list(c.evidence),
                         reason=c.reason, ts=item.ts, review=item.review, decided_by=item.decided_by,  # type: ignore[arg-type]
                         note=item.note)

    def receipt_out(receipt_id: str) -> ReceiptOut:
        s = ctx.store.settlement_by_receipt(receipt_id)
        if s is None:
            raise HTTPException(404, f"no settled receipt {receipt_id!r}")
        r = s.receipt
        return ReceiptOut(
            receipt_id=r.receipt_id, shopper=r.shopper, lines=list(r.lines),
            total=r.total, currency=r.currency, opened_ts=r.opened_ts, closed_ts=r.closed_ts,
            settled_ts=s.settled_ts, terminal=s.terminal, payment_provider=s.provider, payment_ref=s.payment_ref,
            text_url=f"/api/receipts/{r.receipt_id}/text")

    # -- service

    @app.get("/api/health", tags=["service"], summary="Liveness and what the hub holds")
    def health() -> dict:
        return {"status": "ok", "store": ctx.config.store.id, "events": ctx.store.count(),
                "database": ctx.store.db.dialect}

    # -- checkout terminals

    @app.get("/api/sessions", tags=["checkout"], response_model=list[SessionOut],
             summary="Sessions not yet settled (or those with the given statuses)")
    def sessions(status: list[Literal["open", "closed", "settled"]] = Query(default=["open", "closed"]),
                 _: Terminal = checkout) -> list[SessionOut]:
        out = []
        for s in ctx.store.sessions(tuple(status)):
            cart = build_cart(ctx.config, ctx.store, s.shopper)
            lines = cart.lines if cart else []
            out.append(SessionOut(shopper=s.shopper, status=s.status, opened_ts=s.opened_ts,  # type: ignore[arg-type]
                                  closed_ts=s.closed_ts, items=sum(l.quantity for l in lines),
                                  total=cart.total if cart else 0.0, needs_review=any(l.needs_review for l in lines)))
        return out

    @app.get("/api/carts/{shopper}", tags=["checkout"], response_model=CartOut,
             summary="A cart with per-line confidence and review state")
    def read_cart(shopper: str, _: Terminal = checkout) -> CartOut:
        return cart_out(cart_or_404(shopper))

    @app.post("/api/carts/{shopper}/checkout", tags=["checkout"], response_model=ReceiptOut,
              responses={402: {"description": "payment declined"}, 404: {"description": "unknown session"},
                         409: {"description": "lines await review, or already settled"}},
              summary="Settle a checkout: charge the cart and return the receipt")
    def settle(shopper: str, body: CheckoutIn | None = None, terminal: Terminal = checkout) -> ReceiptOut:
        body = body or CheckoutIn()
        with checkout_lock:
            cart = cart_or_404(shopper)
            done = ctx.store.settlement(shopper)
            if done is not None:
                raise HTTPException(409, {"message": f"session {shopper} is already settled",
                                          "receipt_id": done.receipt.receipt_id})
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
            ctx.store.settle(receipt, terminal.id, getattr(ctx.payments, "name", "payment"), result.reference, now)
            return receipt_out(receipt.receipt_id)

    @app.get("/api/receipts/{receipt_id}", tags=["checkout"], response_model=ReceiptOut,
             summary="A settled receipt as JSON")
    def read_receipt(receipt_id: str, _: Terminal = checkout) -> ReceiptOut:
        return receipt_out(receipt_id)

    @app.get("/api/receipts/{receipt_id}/text", tags=["checkout"], response_class=PlainTextResponse,
             summary="A settled receipt as printable text")
    def read_receipt_text(receipt_id: str, _: Terminal = checkout) -> str:
        s = ctx.store.settlement_by_receipt(receipt_id)
        if s is None:
            raise HTTPException(404, f"no settled receipt {receipt_id!r}")
        return receipt_text(ctx.config, s, ctx.store.corrections(s.shopper))

    @app.post("/api/carts/{shopper}/corrections", tags=["checkout"], response_model=CartOut,
              summary="Correct a line with a reason (a dispute at the terminal)")
    def correct(shopper: str, body: CorrectionIn, terminal: Terminal = checkout) -> CartOut:
        try:
            ctx.config.product(body.sku)
        except KeyError:
            raise HTTPException(422, f"unknown product {body.sku!r}") from None
        with checkout_lock:
            cart = cart_or_404(shopper)
            before = cart.quantity(body.sku)
            if before == body.quantity:
                raise HTTPException(409, f"{body.sku} already has {before} item(s) in the cart: nothing to correct")
            try:
                ctx.store.add_correction(shopper, body.sku, before, body.quantity, body.reason, terminal.id)
            except HubStateError as exc:
                raise HTTPException(409, str(exc)) from None
            return cart_out(cart_or_404(shopper))

    # -- review queue

    @app.get("/api/review", tags=["review"], response_model=list[ReviewOut],
             summary="Cart lines flagged by the fusion, with their evidence")
    def review_queue(status: Literal["pending", "accepted", "rejected", "all"] = "pending",
                     _: Terminal = review) -> list[ReviewOut]:
        items = ctx.store.review_items(None if status == "all" else status)
        return [review_out(i) for i in items]

    @app.post("/api/review/{event_id}", tags=["review"], response_model=ReviewDecisionOut,
              summary="Accept or reject a flagged line; the cart and receipt follow")
    def decide(event_id: str, body: ReviewIn, terminal: Terminal = review) -> ReviewDecisionOut:
        decision = "accepted" if body.decision == "accept" else "rejected"
        try:
            item = ctx.store.decide_review(event_id, decision, terminal.id, body.note)
        except KeyError:
            raise HTTPException(404, f"no cart change {event_id!r}") from None
        except HubStateError as exc:
            raise HTTPException(409, str(exc)) from None
        return ReviewDecisionOut(item=review_out(item), cart=cart_out(cart_or_404(item.shopper)))

    # -- shopper app: wayfinding and offers

    @app.post("/api/wayfinding", tags=["shopper"], response_model=RouteOut,
              responses={422: {"description": "unknown products, unreachable shelves or a bad start"}},
              summary="A route through the store for a shopping list")
    def wayfinding(body: RouteIn) -> RouteOut:
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
        from .wayfinding import WayfindingError

        try:
            route = ctx.wayfinder.plan(body.items, start, end)
        except WayfindingError as exc:
            raise HTTPException(422, {"message": str(exc), "problems": exc.problems}) from None
        # a fresh stamper per route: its random run id keeps event ids unique across threads
        commands = ctx.wayfinder.light_commands(route, body.shopper, time.time()) if body.guide_lights else []
        published = False
        if commands and ctx.publish is not None:
            for cmd in commands:
                ctx.publish(cmd)
            published = True
        return route_out(route, [c.fixture for c in commands] if commands else
                         ctx.wayfinder.fixtures_along(route.path), published)

    @app.get("/api/shoppers/{shopper}/offers", tags=["shopper"], summary="Offers sent to a shopper and the opt-out")
    def offers(shopper: str) -> dict:
        return {"shopper": shopper, "opted_out": ctx.store.opted_out(shopper),
                "offers": [{"offer": o, "trigger": e, "ts": ts} for o, e, ts in ctx.store.offers_sent(shopper)]}

    @app.put("/api/shoppers/{shopper}/offers/opt-out", tags=["shopper"], summary="Opt out of offers (or back in)")
    def opt_out(shopper: str, body: OptOutIn) -> dict:
        ctx.store.set_opt_out(shopper, body.opted_out)
        return {"shopper": shopper, "opted_out": body.opted_out}

    # -- live page

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("storesense.hub").joinpath("static/live.html").read_text(encoding="utf-8")

    @app.get("/api/floor", tags=["live"], summary="The floor plan: outline, shelves, zones, lights")
    def floor() -> dict:
        return floor_plan(ctx.config)

    @app.get("/api/nodes", tags=["live"], summary="Node health: which camera, BLE or shelf node is offline")
    def nodes() -> list[dict]:
        return node_health(ctx.config, ctx.store)

    @app.get("/api/live/snapshot", tags=["live"], summary="Shoppers, open carts and node health now")
    def snapshot() -> dict:
        return ctx.feed.snapshot()  # type: ignore[union-attr]

    @app.get("/api/live/events", tags=["live"], summary="Server-sent events: a snapshot, then every change")
    async def live_events(request: Request) -> StreamingResponse:
        feed = ctx.feed
        queue = feed.subscribe()  # type: ignore[union-attr]

        async def stream():
            try:
                first = await asyncio.to_thread(feed.snapshot)  # type: ignore[union-attr]
                yield f"data: {json.dumps(first)}\n\n"
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), timeout=15.0)
                    except asyncio.TimeoutError:
                        if await request.is_disconnected():
                            break
                        yield ": keep-alive\n\n"
                        continue
                    if event is None:
                        break
                    yield f"data: {json.dumps(event)}\n\n"
            finally:
                feed.unsubscribe(queue)  # type: ignore[union-attr]

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def route_out(route: Route, lights: list[str], published: bool) -> RouteOut:
    """The API form of a route."""
    return RouteOut(
        route_id=route.route_id, start=route.start, end=route.end,
        stops=[StopOut(shelf=s.shelf, point=s.point, distance_from_previous_m=s.distance_from_previous_m,
                       items=[{"query": i.query, "sku": i.sku, "name": i.name, "plate": i.plate} for i in s.items])
               for s in route.stops],
        path=route.path, length_m=route.length_m, walking_time_s=route.walking_time_s, ordering=route.ordering,
        lights=lights, lights_published=published)
