"""The live store page and its feed (read only): floor plan, node health, snapshot and events.

The page, the floor plan and node health are open; the feed (every shopper's position and every open
cart) needs a terminal token with the ``viewer`` role, as a bearer token or a ``token`` query parameter.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from ..live import floor_plan, node_health
from .context import Ctx, ViewerTerminal

router = APIRouter()

# Routes carry no docstrings: FastAPI would publish them as the operation's description.


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> str:
    return resources.files("storesense.hub").joinpath("static/live.html").read_text(encoding="utf-8")


@router.get("/static/viewer-token.js", include_in_schema=False)
def viewer_token_script() -> Response:
    js = resources.files("storesense.hub").joinpath("static/viewer-token.js").read_text(encoding="utf-8")
    return Response(js, media_type="text/javascript")


@router.get("/api/floor", tags=["live"], summary="The floor plan: outline, shelves, zones, lights")
def floor(ctx: Ctx) -> dict:
    return floor_plan(ctx.config)


@router.get("/api/nodes", tags=["live"], summary="Node health: which camera, BLE or shelf node is offline")
def nodes(ctx: Ctx) -> list[dict]:
    return ctx.feed.nodes() if ctx.feed is not None else node_health(ctx.config, ctx.store)


@router.get("/api/live/snapshot", tags=["live"], summary="Shoppers, open carts and node health now")
def snapshot(ctx: Ctx, _viewer: ViewerTerminal) -> dict:
    return ctx.feed.snapshot()  # type: ignore[union-attr]


@router.get("/api/live/events", tags=["live"], summary="Server-sent events: a snapshot, then every change")
async def live_events(request: Request, ctx: Ctx, _viewer: ViewerTerminal) -> StreamingResponse:
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
