"""The hub's HTTP API (FastAPI): checkout terminals, review queue, wayfinding, offers, live page.

:func:`create_app` builds the application over a :class:`HubContext` from one router per
area (``checkout``, ``review``, ``shopper``, ``live``, ``service``). The OpenAPI document is
served at ``/openapi.json`` (browsable at ``/docs``).

Who may call what:

- checkout terminals (bearer token with the ``checkout`` role): list sessions,
  read a cart, settle a checkout, read a receipt (JSON or printable text),
  correct a line with a reason;
- review (bearer token with the ``review`` role): list flagged lines with their
  evidence, accept or reject them;
- the shopper's app (no token; the pseudonymous session id is the key):
  wayfinding, offers and opting out of them; what acts is rate-limited per
  session (:mod:`.limits`); every request body is limited to 64 KiB (413);
- the live page and its feed (no token, read only): floor plan, positions,
  open carts, node health. Bind the hub to the store's LAN only.
- misplaced stock (``stock``: viewer role, like the live feed): items lying on
  the wrong plate, for staff to tidy.

- store analytics (viewer role; the page at ``/analytics`` is open): anonymous
  footfall, dwell, heatmap, zone and shelf aggregates (docs/analytics.md).

A wrong or missing token is answered 401; a token without the role, 403.
"""

from __future__ import annotations

from fastapi import FastAPI

from . import analytics, checkout, live, review, service, shopper, stock
from .context import HubContext
from .limits import MAX_BODY_BYTES, BodyLimit

__all__ = ["HubContext", "create_app"]


def create_app(ctx: HubContext) -> FastAPI:
    """The hub's FastAPI application over ``ctx``."""
    app = FastAPI(title="storesense hub", version="1",
                  description="Checkout terminals, review queue, wayfinding, offers and the live store page.")
    app.state.ctx = ctx
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # 413 for a body over 64 KiB, unread
    for area in (service, checkout, review, shopper, live, stock, analytics):  # the order of the OpenAPI document's paths
        app.include_router(area.router)
    return app
