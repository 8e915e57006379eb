"""The hub's durable store (SQLite in WAL mode).

Every message the hub accepts is written once, keyed by its ``event_id``: a
redelivered or duplicated message changes nothing. Besides the raw event log
the store keeps the current cart per shopper (the newest ``cart_state`` by
cart version), receipts, zone events, shopper locations and node health, so
the checkout API and the live page read them directly.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from ..contracts import CartState, Envelope, NodeStatus, Receipt, ShopperLocation, ZoneEvent, decode, encode

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, type TEXT NOT NULL, source TEXT NOT NULL, seq INTEGER NOT NULL,
    ts REAL NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS carts (
    shopper TEXT PRIMARY KEY, status TEXT NOT NULL, cart_version INTEGER NOT NULL,
    total REAL NOT NULL, ts REAL NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    receipt_id TEXT PRIMARY KEY, shopper TEXT NOT NULL, total REAL NOT NULL, currency TEXT NOT NULL,
    closed_ts REAL NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS zone_events (
    event_id TEXT PRIMARY KEY, shopper TEXT NOT NULL, zone TEXT NOT NULL, phase TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS locations (
    shopper TEXT PRIMARY KEY, x REAL NOT NULL, y REAL NOT NULL, ts REAL NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY, state TEXT NOT NULL, ts REAL NOT NULL, kind TEXT);
CREATE INDEX IF NOT EXISTS events_type_ts ON events(type, ts);
"""


class HubStore:
    """Thread-safe SQLite store; every write is idempotent on ``event_id``."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def ingest(self, msg: Envelope, topic: str = "") -> bool:
        """Store one message; returns False when its event_id was already stored."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?)",
                    (msg.event_id, msg.type, msg.source, msg.seq, msg.ts, topic, encode(msg).decode()),  # type: ignore[attr-defined]
                )
                if cur.rowcount == 0:
                    db.execute("COMMIT")
                    return False
                self._project(msg)
                db.execute("COMMIT")
                return True
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _project(self, msg: Envelope) -> None:
        db = self._db
        if isinstance(msg, CartState):
            db.execute(
                "INSERT INTO carts VALUES (?,?,?,?,?,?) ON CONFLICT(shopper) DO UPDATE SET "
                "status=excluded.status, cart_version=excluded.cart_version, total=excluded.total, "
                "ts=excluded.ts, payload=excluded.payload "
                "WHERE excluded.cart_version > carts.cart_version OR "
                "(excluded.cart_version = carts.cart_version AND excluded.status = 'closed')",
                (msg.shopper, msg.status, msg.cart_version, msg.total, msg.ts, encode(msg).decode()),
            )
        elif isinstance(msg, Receipt):
            db.execute("INSERT OR IGNORE INTO receipts VALUES (?,?,?,?,?,?)",
                       (msg.receipt_id, msg.shopper, msg.total, msg.currency, msg.closed_ts, encode(msg).decode()))
        elif isinstance(msg, ZoneEvent):
            db.execute("INSERT OR IGNORE INTO zone_events VALUES (?,?,?,?,?)",
                       (msg.event_id, msg.shopper, msg.zone, msg.phase, msg.ts))
        elif isinstance(msg, ShopperLocation):
            db.execute(
                "INSERT INTO locations VALUES (?,?,?,?,?) ON CONFLICT(shopper) DO UPDATE SET "
                "x=excluded.x, y=excluded.y, ts=excluded.ts, payload=excluded.payload WHERE excluded.ts >= locations.ts",
                (msg.shopper, msg.x, msg.y, msg.ts, encode(msg).decode()),
            )
        elif isinstance(msg, NodeStatus):
            self._node(msg.node, msg.state, msg.ts, msg.kind)

    def _node(self, node: str, state: str, ts: float, kind: str | None) -> None:
        self._db.execute(
            "INSERT INTO nodes VALUES (?,?,?,?) ON CONFLICT(node) DO UPDATE SET state=excluded.state, "
            "ts=excluded.ts, kind=COALESCE(excluded.kind, nodes.kind)",
            (node, state, ts, kind),
        )

    def set_availability(self, node: str, state: str, ts: float) -> None:
        """Record a node's ``online``/``offline`` availability (from its retained topic)."""
        with self._lock:
            self._node(node, state, ts, None)

    # ------------------------------------------------------------------ reads

    def receipts(self) -> list[Receipt]:
        """All receipts, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT payload FROM receipts ORDER BY closed_ts, receipt_id").fetchall()
        return [decode(r[0]) for r in rows]  # type: ignore[misc]

    def cart(self, shopper: str) -> CartState | None:
        """The newest cart state of a shopper, if any."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM carts WHERE shopper=?", (shopper,)).fetchone()
        return decode(row[0]) if row else None  # type: ignore[return-value]

    def open_carts(self) -> list[CartState]:
        """Carts whose session is still open."""
        with self._lock:
            rows = self._db.execute("SELECT payload FROM carts WHERE status='open' ORDER BY ts").fetchall()
        return [decode(r[0]) for r in rows]  # type: ignore[misc]

    def nodes(self) -> dict[str, str]:
        """Node id -> last known state."""
        with self._lock:
            return dict(self._db.execute("SELECT node, state FROM nodes ORDER BY node").fetchall())

    def count(self, type_: str | None = None) -> int:
        """Number of stored events (of one type, if given)."""
        with self._lock:
            if type_ is None:
                return self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM events WHERE type=?", (type_,)).fetchone()[0]

    def event_payloads(self, type_: str) -> list[dict]:
        """Stored messages of one type as dicts, in timestamp order."""
        with self._lock:
            rows = self._db.execute("SELECT payload FROM events WHERE type=? ORDER BY ts, source, seq",
                                    (type_,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
