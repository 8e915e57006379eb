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
import re
import threading
import time
from collections.abc import Callable

from ..config import StoreConfig
from ..contracts import CartEvent, CartState, NodeStatus, Receipt, ShopperLocation
from .store import HubChange, HubStore

log = logging.getLogger(__name__)

#: events a slow page may have queued before its oldest ones are dropped
QUEUE_SIZE = 1000
#: a node that said online and then stays silent this long is shown offline (three 5 s heartbeats)
STALE_AFTER_S = 15.0


def node_kinds(config: StoreConfig) -> dict[str, str]:
    """Node id -> kind for the nodes the store config names (cameras, BLE receivers, shelf sensors)."""
    kinds = {c.id: "camera" for c in config.cameras}
    kinds.update({b.id: "ble" for b in config.ble_nodes})
    kinds.update({w.id: "shelf" for w in config.weight_sensors})
    return kinds


def node_health(config: StoreConfig, store: HubStore, *, heard: dict[str, float] | None = None,
                since: float | None = None, stale_after_s: float | None = None,
                now: float | None = None) -> list[dict]:
    """Every node heard from, plus the configured camera, BLE and shelf nodes never heard from (``unknown``).

    Each entry: ``node``, ``kind``, ``state`` (online, offline, unknown), ``ts`` (the timestamp of its
    last report), ``age_s`` (seconds since the hub heard it, when known) and ``stale`` (True when the
    node said online but has been silent longer than ``stale_after_s``: a node that died without a
    word is reported offline). ``heard`` maps node -> the hub's wall time of its last report; nodes
    stored before ``since`` (the feed's start) count as heard then.
    """
    kinds = node_kinds(config)
    now = time.time() if now is None else now
    heard = heard or {}
    out = {}
    for node, state, ts, kind in store.node_rows():
        kind = kind or kinds.get(node) or _kind_from_name(node)
        last = heard.get(node, since)
        age = None if last is None else max(0.0, now - last)
        # edge nodes heartbeat; the fusion node and the hub have MQTT wills that say offline for them
        stale = bool(stale_after_s is not None and kind in EDGE_KINDS and state == "online" and age is not None
                     and age > stale_after_s)
        out[node] = {"node": node, "kind": kind, "state": "offline" if stale else state, "ts": ts, "age_s": age,
                     "stale": stale}
    for node, kind in kinds.items():
        if node not in out:
            out[node] = {"node": node, "kind": kind, "state": "unknown", "ts": None, "age_s": None, "stale": False}
    return sorted(out.values(), key=lambda n: (KIND_ORDER.get(n["kind"], len(KIND_ORDER)), natural_key(n["node"])))


#: nodes that heartbeat (NodeStatus every few seconds): silence longer than the stale time means offline
EDGE_KINDS = ("camera", "ble", "shelf")
#: the order of node kinds in the health panel
KIND_ORDER = {"camera": 0, "ble": 1, "shelf": 2, "fusion": 3, "hub": 4}


def natural_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``cam2`` before ``cam10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", text) if part)


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

    def __init__(self, config: StoreConfig, store: HubStore, cart_summary: Callable[[str], dict | None],
                 stale_after_s: float = STALE_AFTER_S):
        self.config = config
        self.store = store
        self.cart_summary = cart_summary
        self.stale_after_s = stale_after_s
        self.heard: dict[str, float] = {}  # node -> hub wall time of its last status or availability
        self._since = time.time()
        self._clients: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        self.published = 0

    def attach(self) -> LiveFeed:
        """Start listening to the store (nodes that fall silent are watched for while a page is connected)."""
        self._since = time.time()
        self._stop.clear()
        self.store.add_listener(self._on_change)
        return self

    def detach(self) -> None:
        """Stop listening and end every client's stream."""
        self.store.remove_listener(self._on_change)
        self._stop.set()
        if self._watch is not None:
            self._watch.join(2.0)
        self.close()

    def nodes(self) -> list[dict]:
        """Node health now, silent nodes shown offline (see :func:`node_health`)."""
        return node_health(self.config, self.store, heard=dict(self.heard), since=self._since,
                           stale_after_s=self.stale_after_s)

    def _watch_nodes(self) -> None:
        """Publish node health whenever a node falls silent (no message arrives to say so)."""
        seen: set[str] = set()
        while not self._stop.wait(min(1.0, self.stale_after_s / 4)):
            with self._lock:
                if not self._clients:  # the last page went away: a new one restarts the watch
                    self._watch = None
                    return
            try:
                stale = {n["node"] for n in self.nodes() if n["stale"]}
            except Exception:  # noqa: BLE001 - a closed store during shutdown; keep watching until told to stop
                log.debug("node watch: store not readable", exc_info=True)
                continue
            if stale != seen:
                seen = stale
                if stale:
                    log.warning("node(s) silent for more than %.0f s: %s", self.stale_after_s,
                                ", ".join(sorted(stale, key=natural_key)))
                if self.clients:
                    self.publish({"type": "nodes", "nodes": self.nodes()})

    # -- clients (called on the event loop)

    def subscribe(self) -> asyncio.Queue:
        """A queue of events for one page; call from the event loop that will read it."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            self._clients[queue] = asyncio.get_running_loop()
            if self._watch is None and not self._stop.is_set():
                self._watch = threading.Thread(target=self._watch_nodes, name="live-node-watch", daemon=True)
                self._watch.start()
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
        """The whole live state: shoppers' positions, carts (open, closed, paid) and node health."""
        shoppers = [{"shopper": s, "x": x, "y": y, "ts": ts} for s, x, y, ts in self.store.locations()]
        carts = [c for c in (self.cart_summary(s.shopper) for s in self.store.sessions(("open", "closed", "settled"))) if c]
        return {"type": "snapshot", "shoppers": shoppers, "carts": carts, "nodes": self.nodes()}

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
        msg = change.msg
        if change.kind == "availability" and change.data:
            self.heard[change.data["node"]] = time.time()
        if isinstance(msg, NodeStatus):
            self.heard[msg.node] = time.time()
        if not self.clients:
            return
        if change.kind == "availability":
            self.publish({"type": "nodes", "nodes": self.nodes()})
        elif isinstance(msg, ShopperLocation):
            self.publish({"type": "location", "shopper": msg.shopper, "x": msg.x, "y": msg.y, "ts": msg.ts})
        elif isinstance(msg, NodeStatus):
            self.publish({"type": "nodes", "nodes": self.nodes()})
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
