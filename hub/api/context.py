"""What the API works on (:class:`HubContext`) and the dependencies its routers share.

A route reaches the context through :data:`Ctx` (the application's ``state.ctx``), and a
terminal through :data:`CheckoutTerminal`, :data:`ReviewTerminal` or :data:`ViewerTerminal`
(the live feed): a bearer token the
registry does not know is answered 401, one without the role 403.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ...config import StoreConfig
from ...contracts import Envelope
from ..auth import Terminal, TerminalRegistry
from ..carts import build_cart
from ..live import LiveFeed
from ..payments import LocalPaymentProvider, PaymentProvider
from ..store import HubStore
from .limits import RateLimit

if TYPE_CHECKING:  # wayfinding (scipy's graph routines) loads on first use
    from ..wayfinding import Wayfinder


@dataclass
class HubContext:
    """What the API works on: the store config, the hub store, terminals, payments and MQTT output."""

    config: StoreConfig
    store: HubStore
    terminals: TerminalRegistry = field(default_factory=TerminalRegistry)
    payments: PaymentProvider = field(default_factory=LocalPaymentProvider)
    publish: Callable[[Envelope], None] | None = None  # MQTT output for light commands
    feed: LiveFeed | None = None
    ingest_status: Callable[[], dict] | None = None  # the MQTT ingest's health (HubIngest.status)
    _wayfinder: "Wayfinder | None" = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    checkout_lock: threading.Lock = field(default_factory=threading.Lock)  # settling and correcting take turns
    #: the shopper's app acts without a token: opting out and lighting a route are rate-limited per session
    opt_out_limit: RateLimit = field(default_factory=lambda: RateLimit("opt-out", 10))
    guidance_limit: RateLimit = field(default_factory=lambda: RateLimit("wayfinding with light guidance", 6))

    def __post_init__(self):
        if self.feed is None:
            self.feed = LiveFeed(self.config, self.store, self.cart_summary).attach()

    @property
    def wayfinder(self) -> Wayfinder:
        """The store's wayfinder (built on first use: rasterising the floor takes a moment)."""
        from ..wayfinding import Wayfinder

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


async def get_ctx(request: Request) -> HubContext:
    """The context of the application serving ``request`` (set by :func:`~storesense.hub.api.create_app`).

    Async only so that FastAPI calls it in the event loop rather than in a worker thread.
    """
    return request.app.state.ctx


Ctx = Annotated[HubContext, Depends(get_ctx)]

bearer = HTTPBearer(auto_error=False, description="The terminal's token")


def terminal_with(role: str) -> Callable[..., Terminal]:
    """A dependency: the terminal behind the request's bearer token, which must hold ``role``."""

    def check(ctx: Ctx, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Terminal:
        terminal = ctx.terminals.verify(creds.credentials if creds else None)
        if terminal is None:
            raise HTTPException(401, "missing or wrong terminal token", headers={"WWW-Authenticate": "Bearer"})
        if role not in terminal.roles:
            raise HTTPException(403, f"terminal {terminal.id} does not have the {role} role")
        return terminal

    return check


def live_viewer(ctx: Ctx, creds: HTTPAuthorizationCredentials | None = Depends(bearer),
                token: str | None = Query(None, max_length=256, include_in_schema=False)) -> Terminal:
    """A dependency for the live feed: a terminal with the ``viewer`` role, by bearer token or,
    for the browser's ``EventSource`` (which cannot send headers), a ``token`` query parameter."""
    return terminal_with("viewer")(ctx, creds or (HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)
                                                  if token else None))


CheckoutTerminal = Annotated[Terminal, Depends(terminal_with("checkout"))]
ReviewTerminal = Annotated[Terminal, Depends(terminal_with("review"))]
ViewerTerminal = Annotated[Terminal, Depends(live_viewer)]
