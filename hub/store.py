"""The hub's durable store: SQLite (WAL) by default, PostgreSQL given a URL.

Every message the hub accepts is written once, keyed by its ``event_id``: a
redelivered or duplicated message changes nothing (``ON CONFLICT DO NOTHING``
on the event log, and every projection is written in the same transaction
only when the event was new). Besides the raw event log the store keeps:

- ``sessions``: each shopper session, ``open`` -> ``closed`` (left the store)
  -> ``settled`` (paid at a terminal);
- ``cart_changes``: every cart change the fusion published, keyed by the cart
  event's own id, with its review state (``none``, ``pending``, ``accepted``,
  ``rejected``), which makes it the review queue too;
- ``carts``: the newest ``cart_state`` per shopper (as the fusion saw it);
- ``corrections``: lines corrected at a terminal (disputes), with the reason;
- ``receipts`` (the fusion's) and ``settlements`` (the hub's, once paid), then
  ``followups``: charges for what the shopper took after paying (a paid receipt
  never changes; docs/hub.md, "Changes after payment");
- ``zone_events``, ``locations`` (latest position per shopper) and ``nodes``;
- ``offers_sent`` and ``opt_outs`` for offer frequency caps.

Positions and zone events are purged after the configured retention
(:meth:`HubStore.purge`); receipts and settlements are kept. Listeners added
with :meth:`HubStore.add_listener` hear about every stored change after it is
committed (the live page and the offer engine use this).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..contracts import (
    CartChange,
    CartEvent,
    CartState,
    Envelope,
    NodeStatus,
    Receipt,
    ShelfEvent,
    ShopperLocation,
    ZoneEvent,
    decode,
    encode,
)
from .db import Database, DatabaseError, open_database

log = logging.getLogger(__name__)

#: bump when a table changes; an older database file is then refused with a clear error
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, type TEXT NOT NULL, source TEXT NOT NULL, seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, stored_ts DOUBLE PRECISION NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_type_ts ON events(type, ts);
CREATE INDEX IF NOT EXISTS events_stored ON events(stored_ts);
CREATE TABLE IF NOT EXISTS sessions (
    shopper TEXT PRIMARY KEY, status TEXT NOT NULL, opened_ts DOUBLE PRECISION, closed_ts DOUBLE PRECISION,
    last_ts DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS cart_changes (
    event_id TEXT PRIMARY KEY, shopper TEXT NOT NULL, cart_version BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL,
    sku TEXT NOT NULL, quantity BIGINT NOT NULL, confidence DOUBLE PRECISION NOT NULL, review TEXT NOT NULL,
    decided_by TEXT, decided_ts DOUBLE PRECISION, note TEXT, change TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cart_changes_shopper ON cart_changes(shopper, cart_version);
CREATE INDEX IF NOT EXISTS cart_changes_review ON cart_changes(review, ts);
CREATE TABLE IF NOT EXISTS carts (
    shopper TEXT PRIMARY KEY, status TEXT NOT NULL, cart_version BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS corrections (
    id TEXT PRIMARY KEY, shopper TEXT NOT NULL, sku TEXT NOT NULL, quantity_before BIGINT NOT NULL,
    quantity_after BIGINT NOT NULL, reason TEXT NOT NULL, terminal TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS corrections_shopper ON corrections(shopper, ts);
CREATE TABLE IF NOT EXISTS receipts (
    receipt_id TEXT PRIMARY KEY, shopper TEXT NOT NULL, total DOUBLE PRECISION NOT NULL, currency TEXT NOT NULL,
    closed_ts DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS receipts_shopper ON receipts(shopper);
CREATE TABLE IF NOT EXISTS settlements (
    shopper TEXT PRIMARY KEY, receipt_id TEXT NOT NULL UNIQUE, total DOUBLE PRECISION NOT NULL,
    currency TEXT NOT NULL, terminal TEXT NOT NULL, provider TEXT NOT NULL, payment_ref TEXT NOT NULL,
    settled_ts DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS followups (
    receipt_id TEXT PRIMARY KEY, shopper TEXT NOT NULL, part BIGINT NOT NULL, total DOUBLE PRECISION NOT NULL,
    currency TEXT NOT NULL, terminal TEXT NOT NULL, provider TEXT NOT NULL, payment_ref TEXT NOT NULL,
    settled_ts DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL, UNIQUE (shopper, part));
CREATE TABLE IF NOT EXISTS zone_events (
    event_id TEXT PRIMARY KEY, shopper TEXT NOT NULL, zone TEXT NOT NULL, phase TEXT NOT NULL,
    dwell_s DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL, stored_ts DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS zone_events_shopper ON zone_events(shopper, zone, ts);
CREATE TABLE IF NOT EXISTS locations (
    shopper TEXT PRIMARY KEY, x DOUBLE PRECISION NOT NULL, y DOUBLE PRECISION NOT NULL, ts DOUBLE PRECISION NOT NULL,
    stored_ts DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    node TEXT PRIMARY KEY, state TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, kind TEXT);
CREATE TABLE IF NOT EXISTS offers_sent (
    shopper TEXT NOT NULL, offer TEXT NOT NULL, visit TEXT NOT NULL, event_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL, stored_ts DOUBLE PRECISION NOT NULL, PRIMARY KEY (shopper, offer, visit));
CREATE TABLE IF NOT EXISTS opt_outs (shopper TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS shelf_reviews (
    event_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, shelf TEXT NOT NULL, plate TEXT NOT NULL, sku TEXT,
    quantity BIGINT NOT NULL, review TEXT NOT NULL, decided_by TEXT, decided_ts DOUBLE PRECISION, note TEXT,
    payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS shelf_reviews_review ON shelf_reviews(review, ts);
CREATE TABLE IF NOT EXISTS misplaced_stock (
    shelf TEXT NOT NULL, plate TEXT NOT NULL, sku TEXT NOT NULL, count BIGINT NOT NULL,
    since_ts DOUBLE PRECISION, ts DOUBLE PRECISION NOT NULL, PRIMARY KEY (shelf, plate, sku))
"""

#: message types that are personal movement data, purged after retention
MOVEMENT_TYPES = ("shopper_location", "zone_event")


class HubStateError(DatabaseError):
    """A hub-side change is not allowed in the current state (e.g. the cart is settled)."""


@dataclass(frozen=True)
class SessionRow:
    """A shopper session as the hub knows it."""

    shopper: str
    status: str  # open | closed | settled
    opened_ts: float | None
    closed_ts: float | None
    last_ts: float


@dataclass(frozen=True)
class StoredChange:
    """One cart change (a ``cart_event`` update) and its review state."""

    event_id: str
    shopper: str
    cart_version: int
    ts: float
    change: CartChange
    review: str  # none | pending | accepted | rejected
    decided_by: str | None = None
    decided_ts: float | None = None
    note: str | None = None


@dataclass
class ShelfReview:
    """An unattributed shelf change in the review queue and its state (pending, resolved, dismissed)."""

    event: ShelfEvent
    review: str
    decided_by: str | None = None
    decided_ts: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Correction:
    """A cart line corrected at a terminal (a dispute)."""

    id: str
    shopper: str
    sku: str
    quantity_before: int
    quantity_after: int
    reason: str
    terminal: str
    ts: float


@dataclass(frozen=True)
class Settlement:
    """A paid checkout: the hub's final receipt and the payment reference."""

    shopper: str
    receipt: Receipt
    terminal: str
    provider: str
    payment_ref: str
    settled_ts: float


@dataclass(frozen=True)
class HubChange:
    """What a store listener hears after a commit.

    ``kind`` is ``message`` (a newly stored message, in ``msg``), ``availability``
    (``data`` has node and state) or ``cart`` (a hub-side change to ``shopper``'s
    cart: a review decision, a correction or a settlement; ``data['what']`` says which).
    """

    kind: str
    msg: Envelope | None = None
    shopper: str | None = None
    data: dict = field(default_factory=dict)


class HubStore:
    """The hub's store; thread-safe, every message write idempotent on ``event_id``."""

    def __init__(self, path: str | Path = ":memory:"):
        self.path = str(path)
        self.db: Database = open_database(path)
        self._listeners: list[Callable[[HubChange], None]] = []
        self._create_schema()

    def _create_schema(self) -> None:
        db = self.db
        if db.table_exists("events") and not db.table_exists("meta"):
            raise DatabaseError(f"{db.where}: created by an older storesense hub (no schema version); "
                                "move it away to start a new one")
        db.script(SCHEMA)
        with db.transaction():
            row = db.one("SELECT value FROM meta WHERE key='schema'")
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise DatabaseError(f"{db.where}: hub schema version {row[0]}, this storesense needs "
                                    f"{SCHEMA_VERSION}; move the database away to start a new one")

    # ------------------------------------------------------------------ listeners

    def add_listener(self, listener: Callable[[HubChange], None]) -> None:
        """Call ``listener(change)`` after every committed change (on the writing thread)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[HubChange], None]) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, change: HubChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # noqa: BLE001 - a listener must never undo or block a stored write
                log.exception("hub store listener %r failed on %s", listener, change.kind)

    # ------------------------------------------------------------------ ingest

    def ingest(self, msg: Envelope, topic: str = "", received_ts: float | None = None) -> bool:
        """Store one message; returns False (changing nothing) when its event_id was already stored."""
        return self.ingest_many([(msg, topic)], received_ts)[0]

    def ingest_many(self, items: list[tuple[Envelope, str]], received_ts: float | None = None) -> list[bool]:
        """Store ``(message, topic)`` pairs in one transaction, in order; per pair, whether it was new.

        Listeners hear about the new ones after the commit. On an exception
        nothing of the batch is stored.
        """
        now = time.time() if received_ts is None else received_ts
        added: list[bool] = []
        with self.db.transaction() as db:
            # which are new, in one query (this transaction is the only writer of events: the lock)
            ids = list({msg.event_id for msg, _ in items})
            known = {r[0] for r in db.query(
                f"SELECT event_id FROM events WHERE event_id IN ({','.join('?' * len(ids))})", ids)} if ids else set()
            with db.pipeline():  # PostgreSQL: the batch's statements without a round trip each
                for msg, topic in items:
                    new = msg.event_id not in known
                    if new:
                        known.add(msg.event_id)
                        db.execute(
                            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING",
                            (msg.event_id, msg.type, msg.source, msg.seq, msg.ts, now, topic,  # type: ignore[attr-defined]
                             encode(msg).decode()),
                        )
                        self._project(msg, now)
                    added.append(new)
        for (msg, _), new in zip(items, added):
            if new:
                self._notify(HubChange("message", msg=msg, shopper=getattr(msg, "shopper", None)))
        return added

    def _project(self, msg: Envelope, now: float) -> None:
        db = self.db
        if isinstance(msg, CartEvent):
            if msg.phase == "new":
                self._touch_session(msg.shopper, msg.ts, opened=msg.ts)
            elif msg.phase == "end":
                self._touch_session(msg.shopper, msg.ts, closed=msg.ts)
            else:
                self._touch_session(msg.shopper, msg.ts)
            if msg.change is not None:
                c = msg.change
                db.execute(
                    "INSERT INTO cart_changes VALUES (?,?,?,?,?,?,?,?,NULL,NULL,NULL,?) ON CONFLICT (event_id) DO NOTHING",
                    (msg.event_id, msg.shopper, msg.cart_version, msg.ts, c.sku, c.quantity, c.confidence,
                     "pending" if c.needs_review else "none", c.model_dump_json()),
                )
        elif isinstance(msg, CartState):
            db.execute(
                "INSERT INTO carts VALUES (?,?,?,?,?,?) ON CONFLICT (shopper) DO UPDATE SET "
                "status=excluded.status, cart_version=excluded.cart_version, total=excluded.total, "
                "ts=excluded.ts, payload=excluded.payload "
                "WHERE excluded.cart_version > carts.cart_version OR "
                "(excluded.cart_version = carts.cart_version AND excluded.status = 'closed')",
                (msg.shopper, msg.status, msg.cart_version, msg.total, msg.ts, encode(msg).decode()),
            )
            self._touch_session(msg.shopper, msg.ts, closed=msg.ts if msg.status == "closed" else None)
        elif isinstance(msg, Receipt):
            db.execute("INSERT INTO receipts VALUES (?,?,?,?,?,?) ON CONFLICT (receipt_id) DO NOTHING",
                       (msg.receipt_id, msg.shopper, msg.total, msg.currency, msg.closed_ts, encode(msg).decode()))
            self._touch_session(msg.shopper, msg.closed_ts, opened=msg.opened_ts, closed=msg.closed_ts)
        elif isinstance(msg, ZoneEvent):
            db.execute("INSERT INTO zone_events VALUES (?,?,?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING",
                       (msg.event_id, msg.shopper, msg.zone, msg.phase, msg.dwell_s, msg.ts, now))
        elif isinstance(msg, ShopperLocation):
            db.execute(
                "INSERT INTO locations VALUES (?,?,?,?,?,?) ON CONFLICT (shopper) DO UPDATE SET "
                "x=excluded.x, y=excluded.y, ts=excluded.ts, stored_ts=excluded.stored_ts, payload=excluded.payload "
                "WHERE excluded.ts >= locations.ts",
                (msg.shopper, msg.x, msg.y, msg.ts, now, encode(msg).decode()),
            )
        elif isinstance(msg, NodeStatus):
            self._node(msg.node, msg.state, msg.ts, msg.kind)
        elif isinstance(msg, ShelfEvent):
            self._shelf_event(msg)

    def _shelf_event(self, msg: ShelfEvent) -> None:
        """Unattributed load changes join the review queue; misplaced counts replace older ones per plate and SKU."""
        if msg.kind == "unattributed":
            self.db.execute("INSERT INTO shelf_reviews VALUES (?,?,?,?,?,?,'pending',NULL,NULL,NULL,?) "
                            "ON CONFLICT (event_id) DO NOTHING",
                            (msg.event_id, msg.ts, msg.shelf, msg.plate, msg.sku, msg.quantity, encode(msg).decode()))
        elif msg.sku is not None:
            self.db.execute(
                "INSERT INTO misplaced_stock VALUES (?,?,?,?,?,?) ON CONFLICT (shelf, plate, sku) DO UPDATE SET "
                "count=excluded.count, since_ts=excluded.since_ts, ts=excluded.ts WHERE excluded.ts >= misplaced_stock.ts",
                (msg.shelf, msg.plate, msg.sku, msg.count, msg.since_ts, msg.ts))

    def _touch_session(self, shopper: str, ts: float, *, opened: float | None = None,
                       closed: float | None = None) -> None:
        self.db.execute(
            "INSERT INTO sessions VALUES (?,?,?,?,?) ON CONFLICT (shopper) DO UPDATE SET "
            "status = CASE WHEN sessions.status = 'settled' THEN 'settled' "
            "  WHEN excluded.status = 'closed' THEN 'closed' ELSE sessions.status END, "
            "opened_ts = CASE WHEN sessions.opened_ts IS NULL OR excluded.opened_ts < sessions.opened_ts "
            "  THEN COALESCE(excluded.opened_ts, sessions.opened_ts) ELSE sessions.opened_ts END, "
            "closed_ts = COALESCE(sessions.closed_ts, excluded.closed_ts), "
            "last_ts = CASE WHEN excluded.last_ts > sessions.last_ts THEN excluded.last_ts ELSE sessions.last_ts END",
            (shopper, "closed" if closed is not None else "open", opened, closed, ts),
        )

    def _node(self, node: str, state: str, ts: float, kind: str | None) -> None:
        self.db.execute(
            "INSERT INTO nodes VALUES (?,?,?,?) ON CONFLICT (node) DO UPDATE SET state=excluded.state, "
            "ts=excluded.ts, kind=COALESCE(excluded.kind, nodes.kind)",
            (node, state, ts, kind),
        )

    def set_availability(self, node: str, state: str, ts: float) -> None:
        """Record a node's ``online``/``offline`` availability (from its retained topic)."""
        with self.db.transaction():
            self._node(node, state, ts, None)
        self._notify(HubChange("availability", data={"node": node, "state": state, "ts": ts}))

    # ------------------------------------------------------------------ reads (Foundation API)

    def receipts(self) -> list[Receipt]:
        """All receipts the fusion published, oldest first."""
        rows = self.db.query("SELECT payload FROM receipts ORDER BY closed_ts, receipt_id")
        return [decode(r[0]) for r in rows]  # type: ignore[misc]

    def receipt_for(self, shopper: str) -> Receipt | None:
        """The fusion's receipt of a session, if it published one."""
        row = self.db.one("SELECT payload FROM receipts WHERE shopper=? ORDER BY closed_ts DESC", (shopper,))
        return decode(row[0]) if row else None  # type: ignore[return-value]

    def cart(self, shopper: str) -> CartState | None:
        """The newest cart state of a shopper as the fusion published it, if any."""
        row = self.db.one("SELECT payload FROM carts WHERE shopper=?", (shopper,))
        return decode(row[0]) if row else None  # type: ignore[return-value]

    def open_carts(self) -> list[CartState]:
        """Carts whose session is still open (as the fusion published them)."""
        rows = self.db.query("SELECT payload FROM carts WHERE status='open' ORDER BY ts")
        return [decode(r[0]) for r in rows]  # type: ignore[misc]

    def nodes(self) -> dict[str, str]:
        """Node id -> last known state."""
        return dict(self.db.query("SELECT node, state FROM nodes ORDER BY node"))  # type: ignore[arg-type]

    def node_rows(self) -> list[tuple[str, str, float, str | None]]:
        """(node, state, ts, kind) of every node heard from."""
        return self.db.query("SELECT node, state, ts, kind FROM nodes ORDER BY node")  # type: ignore[return-value]

    def count(self, type_: str | None = None) -> int:
        """Number of stored events (of one type, if given)."""
        if type_ is None:
            return int(self.db.one("SELECT COUNT(*) FROM events")[0])  # type: ignore[index]
        return int(self.db.one("SELECT COUNT(*) FROM events WHERE type=?", (type_,))[0])  # type: ignore[index]

    def event_payloads(self, type_: str) -> list[dict]:
        """Stored messages of one type as dicts, in timestamp order."""
        rows = self.db.query("SELECT payload FROM events WHERE type=? ORDER BY ts, source, seq", (type_,))
        return [json.loads(r[0]) for r in rows]

    def event_ids(self) -> list[str]:
        """Every stored event id (one row per id: the event log's primary key)."""
        return [r[0] for r in self.db.query("SELECT event_id FROM events")]

    # ------------------------------------------------------------------ sessions and carts

    def sessions(self, statuses: tuple[str, ...] = ("open", "closed", "settled")) -> list[SessionRow]:
        """Sessions whose status is one of ``statuses``, oldest first."""
        marks = ",".join("?" * len(statuses))
        rows = self.db.query(f"SELECT shopper, status, opened_ts, closed_ts, last_ts FROM sessions "
                             f"WHERE status IN ({marks}) ORDER BY COALESCE(opened_ts, last_ts), shopper", statuses)
        return [SessionRow(*r) for r in rows]

    def session(self, shopper: str) -> SessionRow | None:
        """One session, if known."""
        row = self.db.one("SELECT shopper, status, opened_ts, closed_ts, last_ts FROM sessions WHERE shopper=?",
                          (shopper,))
        return SessionRow(*row) if row else None

    def changes(self, shopper: str) -> list[StoredChange]:
        """A session's cart changes in the order the fusion applied them."""
        rows = self.db.query(
            "SELECT event_id, shopper, cart_version, ts, change, review, decided_by, decided_ts, note "
            "FROM cart_changes WHERE shopper=? ORDER BY cart_version, ts, event_id", (shopper,))
        return [_stored_change(r) for r in rows]

    def review_items(self, status: str | None = "pending") -> list[StoredChange]:
        """Changes flagged for review (all flagged ones when ``status`` is None), oldest first."""
        if status is None:
            rows = self.db.query(
                "SELECT event_id, shopper, cart_version, ts, change, review, decided_by, decided_ts, note "
                "FROM cart_changes WHERE review <> 'none' ORDER BY ts, event_id")
        else:
            rows = self.db.query(
                "SELECT event_id, shopper, cart_version, ts, change, review, decided_by, decided_ts, note "
                "FROM cart_changes WHERE review=? ORDER BY ts, event_id", (status,))
        return [_stored_change(r) for r in rows]

    def review_item(self, event_id: str) -> StoredChange | None:
        """One flagged or unflagged change by its cart event id."""
        row = self.db.one(
            "SELECT event_id, shopper, cart_version, ts, change, review, decided_by, decided_ts, note "
            "FROM cart_changes WHERE event_id=?", (event_id,))
        return _stored_change(row) if row else None

    def decide_review(self, event_id: str, decision: str, by: str, note: str = "",
                      ts: float | None = None) -> StoredChange:
        """Accept or reject a pending change; raises :class:`HubStateError` when it cannot be decided."""
        if decision not in ("accepted", "rejected"):
            raise ValueError(f"decision must be accepted or rejected, not {decision!r}")
        ts = time.time() if ts is None else ts
        with self.db.transaction() as db:
            item = self.review_item(event_id)
            if item is None:
                raise KeyError(event_id)
            if item.review != "pending":
                raise HubStateError(f"change {event_id} is not awaiting review (it is {item.review})")
            paid = self._paid_ts(item.shopper)
            if paid is not None and self._stored_ts(event_id) <= paid:
                raise HubStateError(f"the cart of {item.shopper} is already settled with this change in it")
            db.execute("UPDATE cart_changes SET review=?, decided_by=?, decided_ts=?, note=? WHERE event_id=?",
                       (decision, by, ts, note, event_id))
            item = self.review_item(event_id)
        self._notify(HubChange("cart", shopper=item.shopper, data={"what": "review", "event_id": event_id,  # type: ignore[union-attr]
                                                                   "decision": decision}))
        return item  # type: ignore[return-value]

    def shelf_reviews(self, status: str | None = "pending") -> list[ShelfReview]:
        """Unattributed shelf changes awaiting review (every one when ``status`` is None), oldest first."""
        sql = "SELECT payload, review, decided_by, decided_ts, note FROM shelf_reviews"
        rows = (self.db.query(sql + " ORDER BY ts, event_id") if status is None
                else self.db.query(sql + " WHERE review=? ORDER BY ts, event_id", (status,)))
        return [ShelfReview(decode(r[0]), r[1], r[2], r[3], r[4] or "") for r in rows]  # type: ignore[arg-type]

    def decide_shelf_review(self, event_id: str, decision: str, by: str, note: str = "",
                            ts: float | None = None) -> ShelfReview:
        """Close a pending unattributed change (``resolved`` or ``dismissed``); KeyError when unknown."""
        if decision not in ("resolved", "dismissed"):
            raise ValueError(f"decision must be resolved or dismissed, not {decision!r}")
        ts = time.time() if ts is None else ts
        with self.db.transaction() as db:
            row = db.one("SELECT review FROM shelf_reviews WHERE event_id=?", (event_id,))
            if row is None:
                raise KeyError(event_id)
            if row[0] != "pending":
                raise HubStateError(f"shelf change {event_id} is not awaiting review (it is {row[0]})")
            db.execute("UPDATE shelf_reviews SET review=?, decided_by=?, decided_ts=?, note=? WHERE event_id=?",
                       (decision, by, ts, note, event_id))
        item = next(i for i in self.shelf_reviews(None) if i.event.event_id == event_id)
        self._notify(HubChange("shelf", data={"what": "review", "event_id": event_id, "decision": decision}))
        return item

    def misplaced_stock(self) -> list[tuple[str, str, str, int, float | None, float]]:
        """Items lying on plates whose planogram does not hold them: (shelf, plate, sku, count, since_ts, ts)."""
        return [tuple(r) for r in self.db.query(  # type: ignore[misc]
            "SELECT shelf, plate, sku, count, since_ts, ts FROM misplaced_stock WHERE count > 0 "
            "ORDER BY since_ts, shelf, plate, sku")]

    def corrections(self, shopper: str) -> list[Correction]:
        """Corrections made to a session's cart, oldest first."""
        rows = self.db.query("SELECT id, shopper, sku, quantity_before, quantity_after, reason, terminal, ts "
                             "FROM corrections WHERE shopper=? ORDER BY ts, id", (shopper,))
        return [Correction(*r) for r in rows]

    def add_correction(self, shopper: str, sku: str, before: int, after: int, reason: str, terminal: str,
                       ts: float | None = None, *, after_settlement: bool = False) -> Correction:
        """Record that a terminal set ``sku`` in ``shopper``'s cart from ``before`` to ``after`` items.

        A settled cart takes a correction only with ``after_settlement`` (a follow-up is due): it
        changes what the shopper took, never the paid receipt.
        """
        corr = Correction(uuid.uuid4().hex, shopper, sku, int(before), int(after), reason, terminal,
                          time.time() if ts is None else ts)
        with self.db.transaction() as db:
            if self._settled(shopper) and not after_settlement:
                raise HubStateError(f"the cart of {shopper} is already settled")
            db.execute("INSERT INTO corrections VALUES (?,?,?,?,?,?,?,?)",
                       (corr.id, corr.shopper, corr.sku, corr.quantity_before, corr.quantity_after, corr.reason,
                        corr.terminal, corr.ts))
        self._notify(HubChange("cart", shopper=shopper, data={"what": "correction", "sku": sku}))
        return corr

    def _settled(self, shopper: str) -> bool:
        return self.db.one("SELECT 1 FROM settlements WHERE shopper=?", (shopper,)) is not None

    def settlement(self, shopper: str) -> Settlement | None:
        """The settlement of a session, if it was paid."""
        row = self.db.one("SELECT shopper, payload, terminal, provider, payment_ref, settled_ts FROM settlements "
                          "WHERE shopper=?", (shopper,))
        return _settlement(row) if row else None

    def settlement_by_receipt(self, receipt_id: str) -> Settlement | None:
        """The settlement (or follow-up charge) whose receipt has this id, if any."""
        row = self.db.one("SELECT shopper, payload, terminal, provider, payment_ref, settled_ts FROM settlements "
                          "WHERE receipt_id=?", (receipt_id,)) or self.db.one(
            "SELECT shopper, payload, terminal, provider, payment_ref, settled_ts FROM followups WHERE receipt_id=?",
            (receipt_id,))
        return _settlement(row) if row else None

    def followups(self, shopper: str) -> list[Settlement]:
        """The follow-up charges of a settled session (what was taken after paying), in order."""
        rows = self.db.query("SELECT shopper, payload, terminal, provider, payment_ref, settled_ts FROM followups "
                             "WHERE shopper=? ORDER BY part", (shopper,))
        return [_settlement(r) for r in rows]

    def settle_followup(self, receipt: Receipt, part: int, terminal: str, provider: str, payment_ref: str,
                        ts: float | None = None) -> bool:
        """Record a paid follow-up charge (part 2, 3, ... of a settled session); False when that part exists."""
        ts = time.time() if ts is None else ts
        with self.db.transaction() as db:
            if not self._settled(receipt.shopper):
                raise HubStateError(f"{receipt.shopper} has no settlement to follow up")
            added = db.execute(
                "INSERT INTO followups VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (receipt.receipt_id, receipt.shopper, part, receipt.total, receipt.currency, terminal, provider,
                 payment_ref, ts, encode(receipt).decode()),
            )
        if added:
            self._notify(HubChange("cart", shopper=receipt.shopper, data={"what": "followup settled",
                                                                          "receipt_id": receipt.receipt_id}))
        return bool(added)

    def changed_after_payment(self) -> list[str]:
        """Settled sessions with cart changes or corrections the hub stored after their last payment."""
        return [r[0] for r in self.db.query(
            "SELECT s.shopper FROM settlements s WHERE "
            "EXISTS (SELECT 1 FROM cart_changes c JOIN events e ON e.event_id = c.event_id "
            "        WHERE c.shopper = s.shopper AND e.stored_ts > s.settled_ts) "
            "OR EXISTS (SELECT 1 FROM corrections k WHERE k.shopper = s.shopper AND k.ts > s.settled_ts) "
            "ORDER BY s.settled_ts")]

    def _paid_ts(self, shopper: str) -> float | None:
        """When the session was last paid (its settlement or latest follow-up), if it was."""
        row = self.db.one("SELECT MAX(t) FROM (SELECT settled_ts AS t FROM settlements WHERE shopper=? "
                          "UNION ALL SELECT settled_ts FROM followups WHERE shopper=?) p", (shopper, shopper))
        return row[0] if row else None

    def _stored_ts(self, event_id: str) -> float:
        row = self.db.one("SELECT stored_ts FROM events WHERE event_id=?", (event_id,))
        return row[0] if row else float("-inf")

    def settle(self, receipt: Receipt, terminal: str, provider: str, payment_ref: str,
               ts: float | None = None) -> bool:
        """Record a paid checkout; False (changing nothing) when the session was settled already."""
        ts = time.time() if ts is None else ts
        with self.db.transaction() as db:
            added = db.execute(
                "INSERT INTO settlements VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (shopper) DO NOTHING",
                (receipt.shopper, receipt.receipt_id, receipt.total, receipt.currency, terminal, provider,
                 payment_ref, ts, encode(receipt).decode()),
            )
            if not added:
                return False
            self._touch_session(receipt.shopper, ts, closed=receipt.closed_ts)
            db.execute("UPDATE sessions SET status='settled' WHERE shopper=?", (receipt.shopper,))
        self._notify(HubChange("cart", shopper=receipt.shopper, data={"what": "settled",
                                                                      "receipt_id": receipt.receipt_id}))
        return True

    # ------------------------------------------------------------------ live data

    def locations(self) -> list[tuple[str, float, float, float]]:
        """(shopper, x, y, ts) of the latest position of every session not yet closed."""
        return self.db.query(  # type: ignore[return-value]
            "SELECT l.shopper, l.x, l.y, l.ts FROM locations l LEFT JOIN sessions s ON s.shopper = l.shopper "
            "WHERE s.status IS NULL OR s.status = 'open' ORDER BY l.shopper")

    def location(self, shopper: str) -> tuple[float, float, float] | None:
        """(x, y, ts) of a shopper's latest position, if still kept."""
        return self.db.one("SELECT x, y, ts FROM locations WHERE shopper=?", (shopper,))  # type: ignore[return-value]

    def zone_presence(self) -> list[tuple[str, str, float, str]]:
        """(shopper, zone, enter ts, enter event id) for every zone a shopper entered and has not left."""
        rows = self.db.query("SELECT shopper, zone, phase, ts, event_id FROM zone_events "
                             "WHERE phase IN ('enter', 'exit') ORDER BY ts, event_id")
        inside: dict[tuple[str, str], tuple[float, str]] = {}
        for shopper, zone, phase, ts, event_id in rows:
            if phase == "enter":
                inside[(shopper, zone)] = (ts, event_id)
            else:
                inside.pop((shopper, zone), None)
        open_ = {s.shopper for s in self.sessions(("open",))}
        return [(s, z, ts, eid) for (s, z), (ts, eid) in inside.items() if s in open_]

    # ------------------------------------------------------------------ offers

    def record_offer(self, shopper: str, offer: str, visit: str, event_id: str, ts: float, *,
                     max_per_shopper: int, cooldown_s: float, max_total: int) -> bool:
        """Record an offer for ``shopper`` if the caps and the shopper's opt-out allow it; True if recorded.

        ``visit`` identifies the zone visit that triggered it, so one visit gives
        at most one offer of each kind however often the trigger repeats.
        """
        with self.db.transaction() as db:
            if db.one("SELECT 1 FROM opt_outs WHERE shopper=?", (shopper,)):
                return False
            n, last = db.one("SELECT COUNT(*), MAX(ts) FROM offers_sent WHERE shopper=? AND offer=?",
                             (shopper, offer))  # type: ignore[misc]
            if n >= max_per_shopper or (last is not None and ts - last < cooldown_s):
                return False
            total = db.one("SELECT COUNT(*) FROM offers_sent WHERE shopper=?", (shopper,))[0]  # type: ignore[index]
            if total >= max_total:
                return False
            return db.execute("INSERT INTO offers_sent VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                              (shopper, offer, visit, event_id, ts, time.time())) == 1

    def offers_sent(self, shopper: str) -> list[tuple[str, str, float]]:
        """(offer, triggering event id, ts) of every offer sent to a shopper."""
        return self.db.query("SELECT offer, event_id, ts FROM offers_sent WHERE shopper=? ORDER BY ts",  # type: ignore[return-value]
                             (shopper,))

    def set_opt_out(self, shopper: str, opted_out: bool) -> None:
        """Opt a shopper out of offers (or back in)."""
        with self.db.transaction() as db:
            if opted_out:
                db.execute("INSERT INTO opt_outs VALUES (?,?) ON CONFLICT (shopper) DO NOTHING", (shopper, time.time()))
            else:
                db.execute("DELETE FROM opt_outs WHERE shopper=?", (shopper,))

    def opted_out(self, shopper: str) -> bool:
        """True when the shopper opted out of offers."""
        return self.db.one("SELECT 1 FROM opt_outs WHERE shopper=?", (shopper,)) is not None

    # ------------------------------------------------------------------ retention

    def purge(self, positions_s: float, zone_events_s: float, now: float | None = None) -> dict[str, int]:
        """Delete positions and zone events stored longer ago than their retention; receipts stay.

        Returns how many rows went from each table.
        """
        now = time.time() if now is None else now
        pos_cut, zone_cut = now - positions_s, now - zone_events_s
        with self.db.transaction() as db:
            out = {
                "events.shopper_location": db.execute(
                    "DELETE FROM events WHERE type='shopper_location' AND stored_ts < ?", (pos_cut,)),
                "locations": db.execute("DELETE FROM locations WHERE stored_ts < ?", (pos_cut,)),
                "events.zone_event": db.execute(
                    "DELETE FROM events WHERE type='zone_event' AND stored_ts < ?", (zone_cut,)),
                "zone_events": db.execute("DELETE FROM zone_events WHERE stored_ts < ?", (zone_cut,)),
                "offers_sent": db.execute("DELETE FROM offers_sent WHERE stored_ts < ?", (zone_cut,)),
            }
        return out

    def close(self) -> None:
        """Close the database."""
        self.db.close()


def _stored_change(row: tuple) -> StoredChange:
    event_id, shopper, version, ts, change, review, by, decided_ts, note = row
    return StoredChange(event_id, shopper, int(version), ts, CartChange.model_validate_json(change), review,
                        by, decided_ts, note)


def _settlement(row: tuple) -> Settlement:
    shopper, payload, terminal, provider, ref, ts = row
    return Settlement(shopper, decode(payload), terminal, provider, ref, ts)  # type: ignore[arg-type]
