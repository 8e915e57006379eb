"""Headquarters: every store's receipts, cart events, zone events and node health in one PostgreSQL database.

The chain runs on NATS JetStream, not on a replicator of ours:

* each store's nats-server (the store broker, engine ``nats``) has its own
  JetStream domain (the store id) and a stream ``STORE_<id>``
  (:func:`~storesense.transport.local_broker.ensure_store_stream`) that keeps the
  store's MQTT publishes on disk while the link is down;
* the store's server links to the HQ nats-server as a leaf node
  (``transports.mqtt.hq_leaf``); the HQ stream ``STORESENSE_HQ`` *sources* from
  every store stream through ``$JS.<store>.API``, so JetStream resumes each
  source at the last sequence it copied once the link or HQ is back;
* :class:`HqConsumer` (``storesense hq``) reads the HQ stream (interest
  retention: it holds only what HQ has not stored yet) with a durable pull consumer, writes each batch into PostgreSQL in one transaction keyed on
  ``(store_id, event_id)`` (``ON CONFLICT DO NOTHING``) and acknowledges the
  messages only after the commit: a crash or lost ack redelivers, and the key
  drops the second copy. Every store event is stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass

from ..errors import TransportError
from ..transport.local_broker import store_stream_name

log = logging.getLogger(__name__)

HQ_STREAM = "STORESENSE_HQ"
HQ_DURABLE = "storesense-hq"
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass
class HqRow:
    """One store event as HQ stores it."""

    store_id: str
    event_id: str
    subject: str
    type: str | None
    ts: float | None
    payload: str


def row_from_message(subject: str, data: bytes, headers: dict | None) -> HqRow | None:
    """The row for one sourced message, or None (one warning) when its subject is not a store's.

    JSON envelopes are keyed by their ``event_id``; anything else (an
    availability word, a malformed payload) by the store stream's own sequence,
    which JetStream carries in the ``Nats-Stream-Source`` header of a sourced
    message, so a redelivered copy gets the same key.
    """
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != "storesense":
        log.warning("HQ: message on %s is not a storesense store subject: skipped", subject)
        return None
    store = parts[1]
    text = data.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("event_id"), str) and body["event_id"]:
        ts = body.get("ts")
        return HqRow(store, body["event_id"], subject, body.get("type") if isinstance(body.get("type"), str) else None,
                     float(ts) if isinstance(ts, (int, float)) else None, json.dumps(body))
    source = (headers or {}).get("Nats-Stream-Source", "")
    fields = source.split()
    key = f"seq:{fields[1]}" if len(fields) >= 2 and fields[1].isdigit() else None
    if key is None:
        log.warning("HQ: message on %s has no event_id and no source sequence: skipped", subject)
        return None
    return HqRow(store, key, subject, None, None, json.dumps(body if body is not None else text))


class HqDatabase:
    """The HQ table in PostgreSQL: one row per (store_id, event_id)."""

    def __init__(self, url: str, table: str = "hq_events"):
        if not url.startswith(("postgresql://", "postgres://")):
            raise TransportError(f"HQ database {url!r}: must be postgresql://user@host:port/db")
        if not _TABLE.match(table):
            raise TransportError(f"HQ table name {table!r}: lower-case letters, digits and _ only")
        import psycopg

        self.table = table
        try:
            self.conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise TransportError(f"HQ database {url}: {str(exc).strip().splitlines()[0]}") from None
        with self.conn.transaction():
            self.conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                " store_id text NOT NULL, event_id text NOT NULL, subject text NOT NULL, type text,"
                " ts double precision, payload jsonb NOT NULL, stored_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (store_id, event_id))")

    def insert(self, rows: list[HqRow]) -> int:
        """Insert ``rows`` in one transaction; returns how many were new (duplicates are dropped)."""
        if not rows:
            return 0
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {self.table} (store_id, event_id, subject, type, ts, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (store_id, event_id) DO NOTHING",
                [(r.store_id, r.event_id, r.subject, r.type, r.ts, r.payload) for r in rows], returning=False)
            return max(cur.rowcount, 0)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


async def ensure_hq_stream(js, *, max_age_s: float) -> None:
    """Create the HQ stream (no sources yet) when missing.

    Interest retention: a message leaves the HQ stream once the HQ consumer has
    acknowledged it (it is in PostgreSQL by then), so the HQ stream holds only the
    backlog; ``max_age_s`` bounds it when the consumer is gone for good. The
    sources are added by :func:`add_store_sources` after the durable consumer
    exists, so no sourced message can arrive before there is interest in it.
    """
    from nats.js import api
    from nats.js.errors import NotFoundError

    try:
        await js.stream_info(HQ_STREAM)
    except NotFoundError:
        await js.add_stream(api.StreamConfig(name=HQ_STREAM, subjects=[], storage=api.StorageType.FILE,
                                             retention=api.RetentionPolicy.INTEREST, max_age=max_age_s))


async def add_store_sources(js, stores: list[str]) -> list[str]:
    """Source every store stream (over its JetStream domain) into the HQ stream; returns the stores added."""
    from nats.js import api

    info = await js.stream_info(HQ_STREAM)
    have = {s.name for s in (info.config.sources or [])}
    missing = [s for s in stores if store_stream_name(s) not in have]
    if missing:
        config = info.config
        config.sources = list(config.sources or []) + [
            api.StreamSource(name=store_stream_name(s), external=api.ExternalStream(api=f"$JS.{s}.API"))
            for s in missing]
        await js.update_stream(config)
    return missing


class HqConsumer:
    """``storesense hq``: the HQ stream into PostgreSQL, acknowledged after each commit."""

    def __init__(self, nats_url: str, db: HqDatabase, stores: list[str], *, batch: int = 500,
                 max_age_s: float = 30 * 86400.0, durable: str = HQ_DURABLE):
        self.nats_url = nats_url
        self.db = db
        self.stores = stores
        self.batch = batch
        self.max_age_s = max_age_s
        self.durable = durable
        self.stored = 0
        self.duplicates = 0
        self._down = False

    async def _link_error(self, exc: Exception) -> None:
        if not self._down:  # one line per outage, not one per reconnect attempt
            log.warning("HQ: NATS server %s: %s", self.nats_url, exc or type(exc).__name__)

    async def _disconnected(self) -> None:
        if not self._down:
            log.warning("HQ: lost %s; reconnecting every second (the stores keep their events)", self.nats_url)
        self._down = True

    async def _reconnected(self) -> None:
        self._down = False
        log.warning("HQ: reconnected to %s", self.nats_url)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; reconnects to the HQ server by itself."""
        import nats
        from nats.errors import TimeoutError as NatsTimeout

        try:
            nc = await nats.connect(self.nats_url, connect_timeout=10, max_reconnect_attempts=-1,
                                    reconnect_time_wait=1, error_cb=self._link_error,
                                    disconnected_cb=self._disconnected, reconnected_cb=self._reconnected)
        except Exception as exc:  # noqa: BLE001 - one line naming the server
            raise TransportError(f"HQ NATS server {self.nats_url}: {exc}") from None
        try:
            js = nc.jetstream()
            await ensure_hq_stream(js, max_age_s=self.max_age_s)
            sub = await js.pull_subscribe("storesense.>", durable=self.durable, stream=HQ_STREAM)
            added = await add_store_sources(js, self.stores)
            if added:
                log.info("HQ: now sourcing %s", ", ".join(added))
            while not stop.is_set():
                try:  # a fetch that was in flight when the server went away can hang: bound it here too
                    msgs = await asyncio.wait_for(sub.fetch(self.batch, timeout=1.0), 3.0)
                except (NatsTimeout, asyncio.TimeoutError):
                    continue
                except Exception as exc:  # noqa: BLE001 - a broken link: wait and fetch again
                    log.warning("HQ: fetch from %s failed (%r): retrying", self.nats_url, exc)
                    await asyncio.sleep(1.0)
                    continue
                rows = [r for r in (row_from_message(m.subject, m.data, m.headers) for m in msgs) if r]
                new = await asyncio.to_thread(self.db.insert, rows)
                self.stored += new
                self.duplicates += len(rows) - new
                for m in msgs:  # after the commit: a crash before this line redelivers, the key drops copies
                    await m.ack()
        finally:
            await nc.close()
