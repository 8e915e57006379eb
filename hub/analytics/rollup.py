"""Hourly analytics rollups, accumulated at the hub as messages are stored.

The hub keeps only each shopper's latest position (``locations``) and purges positions
and zone events after the retention limit, so the analytics cannot be computed later
from what is stored: :class:`Rollup` folds every newly stored message into them as it
arrives (the ingest calls :meth:`Rollup.observe` with each committed batch).

Two kinds of tables:

- **working tables** (``analytics_session*``), one row set per session in progress: the
  session's last position (time per floor cell is accumulated sample-and-hold from one
  position to the next, at most ``max_gap_s`` apart), its floor cells, zones (enter time,
  dwell so far) and shelf interactions (picks and put-backs per plate and SKU). They hold
  the pseudonymous session id and are deleted when the session is folded into the rollup;
  ``analytics_closed`` remembers folded session ids for a day so that a late position does
  not start a second visit.
- **rollup tables** (``analytics_hours``, ``analytics_dwell``, ``analytics_cells``,
  ``analytics_zones``, ``analytics_shelves``): anonymous sums keyed by the hour the visit
  began, never a session id. Each visit counts whole in the hour it began (its time in a
  cell, its zones, its basket), so the ``visitors`` columns add up over hours to distinct
  visitor counts. They are never purged by the retention of personal data.

A visit is folded when its receipt arrives (the fusion closes every session with one), or
counted as *unclosed* when nothing was heard of it for ``idle_close_s``; a session the fusion
ended without a receipt (a duplicate it voided) is dropped after :data:`VOID_AFTER_S`. The clock
is the newest message timestamp seen, so a replayed day rolls up the same as a live one; a session
must also have been quiet for :data:`WALL_GUARD_S` of wall time (positions can overtake events).

Queue time (what the hub can know): the time a visit spent in the store's ``checkout`` zones,
or, in a store without any, in its ``exit`` zone before the session closed (in a walk-out store
that is the time from stepping into the exit zone to the gate letting the shopper out).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from ...config import AnalyticsSettings, StoreConfig
from ...contracts import CartEvent, Envelope, Receipt, ShopperLocation, ZoneEvent
from ...geometry.polygons import point_in_polygon
from ..db import Database

log = logging.getLogger(__name__)

#: seconds after a session's ``end`` without a receipt before it is dropped as voided
VOID_AFTER_S = 120.0
#: wall-clock seconds a session must also have been quiet before :meth:`Rollup.sweep` folds it: MQTT
#: delivers QoS 0 positions ahead of queued QoS 1 events, so the message clock can run ahead of a
#: receipt still on its way
WALL_GUARD_S = 60.0
#: seconds a folded session id is remembered (late messages of it are ignored)
CLOSED_MEMORY_S = 86400.0
#: width of the fine dwell histogram's bins, as a ratio (bin i covers [R**i, R**(i+1)) seconds)
DWELL_BIN_RATIO = 1.02

SCHEMA = """
CREATE TABLE IF NOT EXISTS analytics_sessions (
    shopper TEXT PRIMARY KEY, opened_ts DOUBLE PRECISION NOT NULL, last_ts DOUBLE PRECISION NOT NULL,
    ended_ts DOUBLE PRECISION, x DOUBLE PRECISION, y DOUBLE PRECISION, loc_ts DOUBLE PRECISION);
CREATE TABLE IF NOT EXISTS analytics_session_cells (
    shopper TEXT NOT NULL, cx BIGINT NOT NULL, cy BIGINT NOT NULL, seconds DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (shopper, cx, cy));
CREATE TABLE IF NOT EXISTS analytics_session_zones (
    shopper TEXT NOT NULL, zone TEXT NOT NULL, enter_ts DOUBLE PRECISION, dwell_s DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (shopper, zone));
CREATE TABLE IF NOT EXISTS analytics_session_shelves (
    shopper TEXT NOT NULL, shelf TEXT NOT NULL, plate TEXT NOT NULL, sku TEXT NOT NULL, picks BIGINT NOT NULL,
    putbacks BIGINT NOT NULL, PRIMARY KEY (shopper, shelf, plate, sku));
CREATE TABLE IF NOT EXISTS analytics_closed (shopper TEXT PRIMARY KEY, closed_ts DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS analytics_hours (
    hour_ts BIGINT PRIMARY KEY, visits BIGINT NOT NULL, unclosed BIGINT NOT NULL, dwell_sum_s DOUBLE PRECISION NOT NULL,
    buyers BIGINT NOT NULL, items BIGINT NOT NULL, basket_value DOUBLE PRECISION NOT NULL,
    queue_visits BIGINT NOT NULL, queue_sum_s DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS analytics_dwell (
    hour_ts BIGINT NOT NULL, bin BIGINT NOT NULL, visits BIGINT NOT NULL, PRIMARY KEY (hour_ts, bin));
CREATE TABLE IF NOT EXISTS analytics_cells (
    hour_ts BIGINT NOT NULL, cx BIGINT NOT NULL, cy BIGINT NOT NULL, seconds DOUBLE PRECISION NOT NULL,
    visitors BIGINT NOT NULL, PRIMARY KEY (hour_ts, cx, cy));
CREATE TABLE IF NOT EXISTS analytics_zones (
    hour_ts BIGINT NOT NULL, zone TEXT NOT NULL, visitors BIGINT NOT NULL, dwell_sum_s DOUBLE PRECISION NOT NULL,
    buyers BIGINT NOT NULL, PRIMARY KEY (hour_ts, zone));
CREATE TABLE IF NOT EXISTS analytics_shelves (
    hour_ts BIGINT NOT NULL, shelf TEXT NOT NULL, plate TEXT NOT NULL, visitors BIGINT NOT NULL,
    picks BIGINT NOT NULL, putbacks BIGINT NOT NULL, buyers BIGINT NOT NULL, PRIMARY KEY (hour_ts, shelf, plate))
"""

#: rollup tables: anonymous, kept when personal data is purged
ROLLUP_TABLES = ("analytics_hours", "analytics_dwell", "analytics_cells", "analytics_zones", "analytics_shelves")


def create_schema(db: Database) -> None:
    """Create the analytics tables (working and rollup) if they do not exist."""
    db.script(SCHEMA)


def hour_of(ts: float) -> int:
    """Start (Unix seconds) of the UTC hour holding ``ts``."""
    return int(math.floor(ts / 3600.0)) * 3600


def dwell_bin(seconds: float) -> int:
    """Index of the fine dwell histogram bin holding ``seconds``."""
    return int(math.floor(math.log(max(seconds, 1.0)) / math.log(DWELL_BIN_RATIO)))


def dwell_bin_edges(index: int) -> tuple[float, float]:
    """The seconds [from, to) a fine dwell bin covers (bin 0 also holds visits under a second)."""
    lo = DWELL_BIN_RATIO ** index
    return (0.0 if index == 0 else lo), DWELL_BIN_RATIO ** (index + 1)


@dataclass
class _Session:
    """The working state of one session in progress (mirrors ``analytics_sessions``)."""

    shopper: str
    opened_ts: float
    last_ts: float
    ended_ts: float | None = None
    x: float | None = None
    y: float | None = None
    loc_ts: float | None = None
    cells: dict[tuple[int, int], float] = field(default_factory=dict)  # changed this batch
    heard_wall: float = field(default_factory=time.time)  # wall clock of its latest message (not stored)


class Rollup:
    """Folds stored hub messages into the anonymous hourly rollup tables.

    Call :meth:`observe` with each batch of newly stored messages (in one transaction of its
    own); :meth:`sweep` (called by ``observe``) folds idle sessions and drops voided ones.
    """

    def __init__(self, config: StoreConfig, db: Database, settings: AnalyticsSettings | None = None,
                 wall_guard_s: float = WALL_GUARD_S):
        self.config = config
        self.wall_guard_s = wall_guard_s  # 0 for an in-order replay (datasets.sim.day.feed_hub)
        self.db = db
        self.settings = settings or config.hub.analytics
        self.cell_m = self.settings.cell_m
        self.clock = -math.inf  # newest message timestamp seen
        self.zone_kind = {z.id: z.kind for z in config.zones}
        queue_kinds = ("checkout",) if any(z.kind == "checkout" for z in config.zones) else ("exit",)
        self.queue_zones = {z.id for z in config.zones if z.kind in queue_kinds}
        self.zone_shelves = zone_shelves(config)
        self.sku_shelves: dict[str, tuple[str, str]] = {}
        for s in config.shelves:
            for p in s.plates:
                for sku in (p.sku, *getattr(p, "also", ())):
                    self.sku_shelves.setdefault(sku, (s.id, p.id))
        self.failures = 0
        create_schema(db)
        self._sessions: dict[str, _Session] = {}
        self._closed: dict[str, float] = {}
        self._load()

    def _load(self) -> None:
        rows = self.db.query("SELECT shopper, opened_ts, last_ts, ended_ts, x, y, loc_ts FROM analytics_sessions")
        self._sessions = {r[0]: _Session(*r) for r in rows}
        self._closed = dict(self.db.query("SELECT shopper, closed_ts FROM analytics_closed"))
        row = self.db.one("SELECT MAX(last_ts) FROM analytics_sessions")
        if row and row[0] is not None:
            self.clock = max(self.clock, float(row[0]))

    # ------------------------------------------------------------------ input

    def observe(self, msgs: list[Envelope]) -> None:
        """Fold newly stored messages into the working and rollup tables, in one transaction.

        On a database error nothing of the batch is kept and the error is raised (the in-memory
        state is reloaded from the database).
        """
        if not msgs:
            return
        try:
            with self.db.transaction():
                touched: set[str] = set()
                for msg in msgs:
                    self._one(msg, touched)
                for shopper in touched:
                    self._save(shopper)
                self.sweep()
        except Exception:
            self._load()
            raise

    def observe_safely(self, msgs: list[Envelope]) -> None:
        """:meth:`observe`, logging (never raising) a failure: analytics must not stop ingest."""
        try:
            self.observe(msgs)
        except Exception:  # noqa: BLE001 - the messages are stored; only their analytics are lost
            self.failures += 1
            log.exception("analytics: could not fold %d stored message(s) into the rollup", len(msgs))

    def _session(self, shopper: str, ts: float) -> _Session | None:
        if shopper in self._closed:
            return None  # a late message of a visit already counted
        s = self._sessions.get(shopper)
        if s is None:
            s = self._sessions[shopper] = _Session(shopper, ts, ts)
        s.opened_ts = min(s.opened_ts, ts)
        s.last_ts = max(s.last_ts, ts)
        s.heard_wall = time.time()
        return s

    def _one(self, msg: Envelope, touched: set[str]) -> None:
        if not isinstance(msg, (ShopperLocation, ZoneEvent, CartEvent, Receipt)):
            return
        self.clock = max(self.clock, msg.ts if not isinstance(msg, Receipt) else msg.closed_ts)
        if isinstance(msg, Receipt):
            s = self._session(msg.shopper, msg.opened_ts)
            if s is not None:
                self._fold(s, msg.closed_ts, msg)
                touched.discard(msg.shopper)
            return
        s = self._session(msg.shopper, msg.ts)
        if s is None:
            return
        touched.add(msg.shopper)
        db = self.db
        if isinstance(msg, ShopperLocation):
            if s.loc_ts is not None and msg.ts <= s.loc_ts:
                return  # out of order (positions travel at QoS 0): the newer one already counted
            if s.loc_ts is not None and msg.ts - s.loc_ts <= self.settings.max_gap_s:
                key = self.cell(s.x, s.y)  # type: ignore[arg-type]
                s.cells[key] = s.cells.get(key, 0.0) + (msg.ts - s.loc_ts)
            s.x, s.y, s.loc_ts = msg.x, msg.y, msg.ts
        elif isinstance(msg, ZoneEvent):
            if msg.phase == "enter":
                db.execute("INSERT INTO analytics_session_zones VALUES (?,?,?,0) ON CONFLICT (shopper, zone) "
                           "DO UPDATE SET enter_ts=excluded.enter_ts", (msg.shopper, msg.zone, msg.ts))
            elif msg.phase == "exit":
                # the exit's own dwell_s is the fusion's measure of this stay
                db.execute("INSERT INTO analytics_session_zones VALUES (?,?,NULL,?) ON CONFLICT (shopper, zone) "
                           "DO UPDATE SET enter_ts=NULL, dwell_s=analytics_session_zones.dwell_s + excluded.dwell_s",
                           (msg.shopper, msg.zone, msg.dwell_s))
        elif isinstance(msg, CartEvent):
            if msg.phase == "end":
                s.ended_ts = msg.ts
            elif msg.change is not None and msg.change.quantity:
                c = msg.change
                shelf, plate = c.shelf, c.plate
                if shelf is None:
                    shelf, plate = self.sku_shelves.get(c.sku, ("?", "?"))
                picks, puts = (c.quantity, 0) if c.quantity > 0 else (0, -c.quantity)
                db.execute("INSERT INTO analytics_session_shelves VALUES (?,?,?,?,?,?) "
                           "ON CONFLICT (shopper, shelf, plate, sku) DO UPDATE SET "
                           "picks=analytics_session_shelves.picks + excluded.picks, "
                           "putbacks=analytics_session_shelves.putbacks + excluded.putbacks",
                           (msg.shopper, shelf, plate or "", c.sku, picks, puts))

    def cell(self, x: float, y: float) -> tuple[int, int]:
        """The heatmap cell (column, row) of a floor point."""
        return int(math.floor(x / self.cell_m)), int(math.floor(y / self.cell_m))

    def _save(self, shopper: str) -> None:
        s = self._sessions.get(shopper)
        if s is None:
            return
        db = self.db
        db.execute("INSERT INTO analytics_sessions VALUES (?,?,?,?,?,?,?) ON CONFLICT (shopper) DO UPDATE SET "
                   "opened_ts=excluded.opened_ts, last_ts=excluded.last_ts, ended_ts=excluded.ended_ts, "
                   "x=excluded.x, y=excluded.y, loc_ts=excluded.loc_ts",
                   (s.shopper, s.opened_ts, s.last_ts, s.ended_ts, s.x, s.y, s.loc_ts))
        for (cx, cy), sec in s.cells.items():
            db.execute("INSERT INTO analytics_session_cells VALUES (?,?,?,?) ON CONFLICT (shopper, cx, cy) "
                       "DO UPDATE SET seconds=analytics_session_cells.seconds + excluded.seconds",
                       (shopper, cx, cy, sec))
        s.cells.clear()

    # ------------------------------------------------------------------ folding

    def sweep(self) -> int:
        """Fold sessions idle for ``idle_close_s`` (as unclosed visits) and drop voided ones; how many went."""
        gone = 0
        wall = time.time()
        for s in list(self._sessions.values()):
            if wall - s.heard_wall < self.wall_guard_s:
                continue
            if s.ended_ts is not None and self.clock - s.ended_ts > VOID_AFTER_S:
                self._fold(s, s.ended_ts, None, count=False)
                gone += 1
            elif s.ended_ts is None and self.clock - s.last_ts > self.settings.idle_close_s:
                self._fold(s, s.last_ts, None)
                gone += 1
        old = [k for k, ts in self._closed.items() if ts < self.clock - CLOSED_MEMORY_S]
        if old:
            self.db.execute("DELETE FROM analytics_closed WHERE closed_ts < ?", (self.clock - CLOSED_MEMORY_S,))
            for k in old:
                del self._closed[k]
        return gone

    def _fold(self, s: _Session, closed_ts: float, receipt: Receipt | None, count: bool = True) -> None:
        """Add one finished visit to the rollup (unless ``count`` is False) and delete its working rows."""
        db, shopper = self.db, s.shopper
        if count and s.loc_ts is not None and 0 < closed_ts - s.loc_ts <= self.settings.max_gap_s:
            key = self.cell(s.x, s.y)  # type: ignore[arg-type]
            s.cells[key] = s.cells.get(key, 0.0) + (closed_ts - s.loc_ts)
            s.loc_ts = closed_ts
        self._save(shopper)
        if count:
            opened = min(s.opened_ts, receipt.opened_ts) if receipt is not None else s.opened_ts
            hour = hour_of(opened)
            dwell = max(0.0, closed_ts - opened)
            zones = {z: (enter, d) for z, enter, d in db.query(
                "SELECT zone, enter_ts, dwell_s FROM analytics_session_zones WHERE shopper=?", (shopper,))}
            zone_dwell = {z: d + (max(0.0, closed_ts - enter) if enter is not None else 0.0)
                          for z, (enter, d) in zones.items()}
            shelves = db.query("SELECT shelf, plate, sku, picks, putbacks FROM analytics_session_shelves "
                               "WHERE shopper=?", (shopper,))
            bought_skus = {l.sku for l in receipt.lines} if receipt is not None else set()
            bought_plates = {(shelf, plate) for shelf, plate, sku, picks, _ in shelves
                             if picks > 0 and sku in bought_skus}
            for sku in bought_skus - {sku for *_, sku, picks, _ in shelves if picks > 0}:
                if sku in self.sku_shelves:  # bought, but no pick of it was heard: the planogram's plate
                    bought_plates.add(self.sku_shelves[sku])
            bought_shelves = {shelf for shelf, _ in bought_plates}
            items = sum(l.quantity for l in receipt.lines) if receipt is not None else 0
            value = receipt.total if receipt is not None else 0.0
            queue = [d for z, d in zone_dwell.items() if z in self.queue_zones]
            db.execute(
                "INSERT INTO analytics_hours VALUES (?,1,?,?,?,?,?,?,?) ON CONFLICT (hour_ts) DO UPDATE SET "
                "visits=analytics_hours.visits+1, unclosed=analytics_hours.unclosed+excluded.unclosed, "
                "dwell_sum_s=analytics_hours.dwell_sum_s+excluded.dwell_sum_s, "
                "buyers=analytics_hours.buyers+excluded.buyers, items=analytics_hours.items+excluded.items, "
                "basket_value=analytics_hours.basket_value+excluded.basket_value, "
                "queue_visits=analytics_hours.queue_visits+excluded.queue_visits, "
                "queue_sum_s=analytics_hours.queue_sum_s+excluded.queue_sum_s",
                (hour, 0 if receipt is not None else 1, dwell, 1 if items > 0 else 0, items, value,
                 1 if queue else 0, sum(queue)))
            db.execute("INSERT INTO analytics_dwell VALUES (?,?,1) ON CONFLICT (hour_ts, bin) DO UPDATE SET "
                       "visits=analytics_dwell.visits+1", (hour, dwell_bin(dwell)))
            for cx, cy, sec in db.query("SELECT cx, cy, seconds FROM analytics_session_cells WHERE shopper=?",
                                        (shopper,)):
                db.execute("INSERT INTO analytics_cells VALUES (?,?,?,?,1) ON CONFLICT (hour_ts, cx, cy) DO UPDATE "
                           "SET seconds=analytics_cells.seconds+excluded.seconds, "
                           "visitors=analytics_cells.visitors+1", (hour, cx, cy, sec))
            for zone, d in zone_dwell.items():
                bought = 1 if bought_shelves & self.zone_shelves.get(zone, set()) else 0
                db.execute("INSERT INTO analytics_zones VALUES (?,?,1,?,?) ON CONFLICT (hour_ts, zone) DO UPDATE "
                           "SET visitors=analytics_zones.visitors+1, "
                           "dwell_sum_s=analytics_zones.dwell_sum_s+excluded.dwell_sum_s, "
                           "buyers=analytics_zones.buyers+excluded.buyers", (hour, zone, d, bought))
            per_plate: dict[tuple[str, str], list[int]] = {}
            for shelf, plate, _, picks, puts in shelves:
                acc = per_plate.setdefault((shelf, plate), [0, 0])
                acc[0] += int(picks)
                acc[1] += int(puts)
            for (shelf, plate), (picks, puts) in per_plate.items():
                db.execute("INSERT INTO analytics_shelves VALUES (?,?,?,1,?,?,?) ON CONFLICT (hour_ts, shelf, plate) "
                           "DO UPDATE SET visitors=analytics_shelves.visitors+1, "
                           "picks=analytics_shelves.picks+excluded.picks, "
                           "putbacks=analytics_shelves.putbacks+excluded.putbacks, "
                           "buyers=analytics_shelves.buyers+excluded.buyers",
                           (hour, shelf, plate, picks, puts, 1 if (shelf, plate) in bought_plates else 0))
        for table in ("analytics_session_cells", "analytics_session_zones", "analytics_session_shelves",
                      "analytics_sessions"):
            db.execute(f"DELETE FROM {table} WHERE shopper=?", (shopper,))
        db.execute("INSERT INTO analytics_closed VALUES (?,?) ON CONFLICT (shopper) DO NOTHING", (shopper, closed_ts))
        self._sessions.pop(shopper, None)
        self._closed[shopper] = closed_ts

    def open_sessions(self) -> int:
        """Sessions in progress (not yet in the rollup)."""
        return len(self._sessions)


def zone_shelves(config: StoreConfig) -> dict[str, set[str]]:
    """Zone id -> ids of the shelves shopped from inside it (the shelf's access point lies in the zone)."""
    out: dict[str, set[str]] = {}
    for z in config.zones:
        out[z.id] = {s.id for s in config.shelves
                     if point_in_polygon(s.access_point[0], s.access_point[1], z.polygon)}
    return out
