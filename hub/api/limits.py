"""Limits on what an unauthenticated caller can make the hub do: request size and rate.

- :class:`BodyLimit` (ASGI middleware): a request body over :data:`MAX_BODY_BYTES` is
  answered ``413`` without reading it (by its ``Content-Length``) or as soon as a chunked
  body passes the limit. Every route's largest legitimate body (a shopping list, a
  correction) is a few kilobytes.
- :class:`RateLimit`: per key (the shopper session, or the client's address when there is
  none), at most ``per_minute`` actions in any minute, answered ``429`` with ``Retry-After``.
  The shopper's app endpoints that act are limited this way: opting out or in, and a
  wayfinding request that lights fixtures (the light commands drive the store's lighting).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from fastapi import HTTPException

#: the largest request body the hub reads (bytes)
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """ASGI middleware answering 413 to a request whose body exceeds ``max_bytes``."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send) -> None:
        body = (f'{{"detail":"request body over {self.max_bytes} bytes"}}').encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        seen = 0
        started = refused = False

        async def limited_receive():
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes and not started:
                    # answer now, and tell the application the client is gone: it reads no further
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            if refused:
                return  # the 413 went out already
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except Exception:
            if not refused:
                raise


class RateLimit:
    """At most ``per_minute`` calls per key in any 60 s window (thread-safe; keys forgotten when idle)."""

    def __init__(self, what: str, per_minute: int):
        self.what = what
        self.per_minute = per_minute
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> None:
        """Count a call for ``key``; raise HTTP 429 (with Retry-After) when over the limit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and now - calls[0] >= 60.0:
                calls.popleft()
            if len(calls) >= self.per_minute:
                wait = math.ceil(60.0 - (now - calls[0]))
                raise HTTPException(429, f"{self.what}: at most {self.per_minute} a minute for {key}; "
                                         f"try again in {wait} s", headers={"Retry-After": str(wait)})
            calls.append(now)
            if len(self._calls) > 10_000:  # forget keys with no call in the last minute
                self._calls = {k: v for k, v in self._calls.items() if v and now - v[-1] < 60.0}
