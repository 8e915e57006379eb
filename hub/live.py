"""The live store feed: what the live page shows, pushed to browsers as server-sent events.

:class:`LiveFeed` listens to the hub store and turns each committed change into
a small JSON event (a shopper's position, a cart summary, a session ending, a
node's health), fanned out to every connected page through an asyncio queue
per client. It works from any thread: the MQTT ingest stores on paho's
network thread and the page is served from uvicorn's event loop. A client that
falls behind loses its oldest events, never blocks the ingest.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from ..config import StoreConfig
from ..contracts import CartEvent, CartState, NodeStatus, Receipt, ShopperLocation
from .store import HubChange, HubStore

log = logging.getLogger(__name__)

#: events a slow page may have queued before its oldest ones are dropped
QUEUE_SIZE = 1000


def node_kinds(config: StoreConfig) -> dict[str, str]:
    """Node id -> kind for the nodes the store config names (cameras, BLE receivers, shelf sensors)."""
    kinds = {c.id: "camera" for c in config.cameras}
    kinds.update({b.id: "ble" for b in config.ble_nodes})
    kinds.update({w.id: "shelf" for w in config.weight_sensors})
    return kinds


def node_health(config: StoreConfig, store: HubStore) -> list[dict]:
    """Every node heard from, plus the configured cameras and BLE receivers never heard from (``unknown``)."""
    kinds = node_kinds(config)
    out = {node: {"node": node, "kind": kind or kinds.get(node) or _kind_from_name(node), "state": state, "ts": ts}
           for node, state, ts, kind in store.node_rows()}
    for node, kind in kinds.items():
        if kind in ("camera", "ble") and node not in out:
            out[node] = {"node": node, "kind": kind, "state": "unknown", "ts": None}
    return sorted(out.values(), key=lambda n: (n["kind"], n["node"]))


def _kind_from_name(node: str) -> str:
    """A node's kind guessed from its id, for nodes heard only on their availability topic."""
    for kind in ("fusion", "hub", "camera", "ble", "shelf"):
        if kind in node.lower():
            return kind
    return "other"


def floor_plan(config: StoreConfig) -> dict:
    """The store geometry the page draws: outline, obstacles, shelves, zones and light fixtures."""
    return {
        "store": {"id": config.store.id, "name": config.store.name, "currency": config.store.currency},
        "outline": [list(p) for p in config.floor.outline],
        "obstacles": [{"id": o.id, "polygon": [list(p) for p in o.polygon]} for o in config.floor.obstacles],
        "shelves": [{"id": s.id, "polygon": [list(p) for p in s.polygon], "access_point": list(s.access_point),
                     "products": [p.sku for p in s.plates]} for s in config.shelves],
        "zones": [{"id": z.id, "kind": z.kind, "polygon": [list(p) for p in z.polygon]} for z in config.zones],
        "lights": [{"id": l.id, "position": list(l.position)} for l in config.hub.lights],
    }


class LiveFeed:
    """Fans out live updates from the store to connected pages."""

    def __init__(self, config: StoreConfig, store: HubStore, cart_summary: Callable[[str], dict | None]):
        self.config = config
        self.store = store
        self.cart_summary = cart_summary
        self._clients: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()
        self.published = 0

    def attach(self) -> LiveFeed:
        """Start listening to the store."""
        self.store.add_listener(self._on_change)
        return self

    def detach(self) -> None:
        """Stop listening and end every client's stream."""
        self.store.remove_listener(self._on_change)
        self.close()

    # -- clients (called on the event loop)

    def subscribe(self) -> asyncio.Queue:
        """A queue of events for one page; call from the event loop that will read it."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            self._clients[queue] = asyncio.get_running_loop()
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        """Forget a page's queue."""
        with self._lock:
            self._clients.pop(queue, None)

    @property
    def clients(self) -> int:
        """Number of connected pages."""
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """End every client's stream (each gets a ``None``)."""
        self._send(None)

    # -- events (any thread)

    def snapshot(self) -> dict:
        """The whole live state: shoppers' positions, open carts and node health."""
        shoppers = [{"shopper": s, "x": x, "y": y, "ts": ts} for s, x, y, ts in self.store.locations()]
        carts = [c for c in (self.cart_summary(s.shopper) for s in self.store.sessions(("open", "closed"))) if c]
        return {"type": "snapshot", "shoppers": shoppers, "carts": carts,
                "nodes": node_health(self.config, self.store)}

    def publish(self, event: dict) -> None:
        """Send one event to every connected page."""
        self._send(event)

    def _send(self, event: dict | None) -> None:
        with self._lock:
            clients = list(self._clients.items())
        for queue, loop in clients:
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # that page's loop is gone
                self.unsubscribe(queue)
        if event is not None:
            self.published += 1

    def _on_change(self, change: HubChange) -> None:
        if not self.clients:
            return
        msg = change.msg
        if change.kind == "availability":
            self.publish({"type": "nodes", "nodes": node_health(self.config, self.store)})
        elif isinstance(msg, ShopperLocation):
            self.publish({"type": "location", "shopper": msg.shopper, "x": msg.x, "y": msg.y, "ts": msg.ts})
        elif isinstance(msg, NodeStatus):
            self.publish({"type": "nodes", "nodes": node_health(self.config, self.store)})
        elif isinstance(msg, (CartEvent, CartState, Receipt)) or change.kind == "cart":
            shopper = change.shopper
            if shopper:
                summary = self.cart_summary(shopper)
                if summary is not None:
                    self.publish({"type": "cart", "cart": summary})


def _offer(queue: asyncio.Queue, event: dict | None) -> None:
    """Put ``event`` on ``queue``, dropping the oldest event when the page lags behind."""
    if queue.full():
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    queue.put_nowait(event)
