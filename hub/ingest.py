"""The hub's MQTT ingest: a persistent QoS 1 subscription into the durable store, committed in batches.

The subscription uses a fixed client id with a persistent session, so messages
published while the hub restarts wait at the broker. Deliveries go into a queue
on paho's network thread; one writer thread takes whatever has arrived (up to
:data:`MAX_BATCH` messages), stores it in one transaction
(:meth:`~storesense.hub.store.HubStore.ingest_many`) and only then acknowledges
those messages (paho's manual acknowledgement: the PUBACK of a message leaves
after the commit that holds it, and after the commits of everything received
before it). A hub killed at any moment has either stored a message or will get
it again from the broker; redelivered messages are dropped by event id (in
memory by the subscriber's decoder, durably by the store).

When the database fails the writer retries the batch with a growing pause and
acknowledges nothing meanwhile; if it still fails when the hub is stopped, the
messages stay unacknowledged and the broker redelivers them to the next run.
A poison message (one the database refuses while it takes other writes) goes to
the ``dead_letters`` table with the reason after a few tries and is acknowledged,
so one message never stops ingest.
Malformed payloads are counted by the subscriber's decoder and skipped (and
acknowledged in turn, so the broker does not send them again).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from ..contracts import Decoder, Envelope, encode
from ..transport import MqttSubscriber
from .store import HubStore

log = logging.getLogger(__name__)

#: pauses between attempts to store a batch while the database fails (seconds)
RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)

#: most messages committed in one transaction
MAX_BATCH = 500

#: failed attempts at a batch before its messages are tried one by one and poison is dead-lettered
TRIES_BEFORE_SPLIT = 3

#: where messages go that cannot be stored (a value the database refuses): kept with the reason
DEAD_LETTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    event_id TEXT PRIMARY KEY, topic TEXT NOT NULL, reason TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL,
    payload TEXT NOT NULL);
"""

_Delivery = tuple[Envelope | None, str, Callable[[], None]]


class HubIngest:
    """Subscribes to ``storesense/<store>/#`` and stores every message, committing in batches."""

    def __init__(self, url: str, store_id: str, db: HubStore, *, client_id: str | None = None,
                 max_batch: int = MAX_BATCH):
        self.db = db
        self.max_batch = max_batch
        self.stored = 0
        self.duplicates = 0
        self.store_failures = 0
        self.commits = 0
        self.dead_letters = 0
        self.last_store_error: str | None = None
        self.last_store_error_ts: float | None = None
        self._arrivals: deque[float] = deque()  # monotonic arrival times of deliveries not yet acknowledged
        self._dead_letter_table = False
        #: folds each committed batch's new messages into the analytics rollup (hub.analytics.Rollup), when set
        self.rollup = None
        self._stopping = threading.Event()
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self.subscriber = MqttSubscriber(
            url, store=store_id, client_id=client_id or f"storesense-hub-{store_id}",
            on_message=lambda msg, topic: None, on_availability=self._on_availability,
            on_delivery=self._on_delivery,
        )

    @property
    def malformed(self) -> int:
        """Messages skipped as malformed or unknown."""
        return self.subscriber.decoder.rejected_total

    def _on_delivery(self, msg: Envelope | None, topic: str, ack: Callable[[], None]) -> None:
        self._arrivals.append(time.monotonic())
        self._queue.put((msg, topic, ack))

    def status(self) -> dict:
        """Ingest health for ``/api/health``: backlog, lag (age of the oldest message received and not yet
        stored), counters and the last error the database gave (with its age)."""
        arrivals = self._arrivals
        now = time.monotonic()
        oldest = arrivals[0] if arrivals else None
        error_age = time.time() - self.last_store_error_ts if self.last_store_error_ts is not None else None
        return {"running": self.running, "backlog": len(arrivals),
                "lag_s": round(now - oldest, 3) if oldest is not None else 0.0,
                "stored": self.stored, "duplicates": self.duplicates, "malformed": self.malformed,
                "dead_letters": self.dead_letters, "store_failures": self.store_failures,
                "last_store_error": self.last_store_error,
                "last_store_error_age_s": round(error_age, 1) if error_age is not None else None}

    def _on_availability(self, node: str, state: str) -> None:
        self.db.set_availability(node, state, time.time())

    # ------------------------------------------------------------------ writer thread

    def _take_batch(self, timeout: float) -> list[_Delivery] | None:
        """Everything queued now (at least one, waiting up to ``timeout``), or None at the end."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # end after this batch
                break
            batch.append(item)
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._take_batch(0.5)
            if batch is None:
                return
            if batch and not self._commit(batch):
                return

    def _commit(self, batch: list[_Delivery]) -> bool:
        """Store ``batch`` in one transaction, then acknowledge it; False when stopped before it could.

        After :data:`TRIES_BEFORE_SPLIT` failed attempts the messages are stored one by one: one
        that still fails while the database takes a write (its dead letter) is poison and is
        dead-lettered and acknowledged, so ingest moves on; while the database takes nothing,
        nothing is acknowledged and the batch is retried.
        """
        items = [(msg, topic) for msg, topic, _ in batch if msg is not None]
        attempt = 0
        while True:
            try:
                added = self.db.ingest_many(items) if items else []
                break
            except Exception as exc:  # noqa: BLE001 - database trouble or a poison message: acknowledge nothing
                self.store_failures += 1
                self.last_store_error = f"{type(exc).__name__}: {exc}"[:300]
                self.last_store_error_ts = time.time()
                if self._stopping.is_set():
                    log.error("hub stopping while %d message(s) cannot be stored (%s): leaving them "
                              "unacknowledged for the broker to redeliver", len(items), exc)
                    return False
                attempt += 1
                if attempt >= TRIES_BEFORE_SPLIT:
                    singles = self._one_by_one(items)
                    if singles is not None:
                        added = singles
                        break
                pause = RETRY_PAUSES[min(attempt - 1, len(RETRY_PAUSES) - 1)]
                log.warning("cannot store %d message(s) (%s); retrying in %.2f s", len(items), exc, pause)
                self._stopping.wait(pause)
        self.commits += 1
        if self.rollup is not None:  # before the acknowledgement; a failure there is logged, never stops ingest
            self.rollup.observe_safely([m for (m, _), a in zip(items, added) if a])
        new = sum(added)
        self.stored += new
        self.duplicates += len(added) - new
        for _, _, ack in batch:
            ack()
        for _ in batch:  # deliveries are taken in arrival order: these were the oldest
            if self._arrivals:
                self._arrivals.popleft()
        return True

    def _one_by_one(self, items: list[tuple[Envelope, str]]) -> list[bool] | None:
        """Store each message alone, dead-lettering those that fail; None when the database takes no write."""
        added = []
        for msg, topic in items:
            try:
                added.extend(self.db.ingest_many([(msg, topic)]))
                continue
            except Exception as exc:  # noqa: BLE001 - this message, or the database?
                reason = f"{type(exc).__name__}: {exc}"[:300]
            try:
                self._dead_letter(msg, topic, reason)
            except Exception as exc:  # noqa: BLE001 - the database takes nothing: not this message's fault
                log.warning("cannot store message %s nor its dead letter (%s): the database fails", msg.event_id, exc)
                return None
            added.append(False)
        return added

    def _dead_letter(self, msg: Envelope, topic: str, reason: str) -> None:
        """Keep a message that cannot be stored in the ``dead_letters`` table with the reason, and say so once."""
        db = self.db.db
        if not self._dead_letter_table:
            db.script(DEAD_LETTER_SCHEMA)
            self._dead_letter_table = True
        with db.transaction():
            db.execute("INSERT INTO dead_letters VALUES (?,?,?,?,?) ON CONFLICT (event_id) DO NOTHING",
                       (msg.event_id, topic, reason, time.time(), encode(msg).decode("utf-8", "replace")))
        self.dead_letters += 1
        log.error("dead-lettered message %s on %s after %d failed attempts: %s", msg.event_id, topic,
                  TRIES_BEFORE_SPLIT, reason)

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 10.0) -> HubIngest:
        """Start the writer, connect and subscribe; raises TransportError when the broker is unreachable."""
        self._stopping.clear()
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_loop, name="hub-ingest-writer", daemon=True)
            self._writer.start()
        try:
            self.subscriber.connect(timeout)
        except BaseException:
            self._end_writer(2.0)
            raise
        return self

    @property
    def running(self) -> bool:
        """True while the writer thread runs."""
        return self._writer is not None and self._writer.is_alive()

    def _end_writer(self, timeout: float) -> None:
        self._queue.put(None)
        if self._writer is not None:
            self._writer.join(timeout)
            self._writer = None

    def stop(self, timeout: float = 10.0) -> None:
        """Store and acknowledge what has arrived, then disconnect (later messages wait at the broker)."""
        self._stopping.set()
        self._end_writer(timeout)
        self.subscriber.close()
        left = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[0] is not None:
                left.append(item[0])
        if left:
            # not stored, not acknowledged: the broker sends them again, and a restarted
            # ingest must not drop them as already seen
            log.info("%d message(s) left unstored for the broker to redeliver", len(left))
            self.subscriber.decoder = _fresh_decoder(self.subscriber.decoder)
        self._arrivals.clear()  # what was not stored comes again from the broker, with new arrival times


def _fresh_decoder(old: Decoder) -> Decoder:
    """A decoder with ``old``'s counters but no memory of seen event ids."""
    new = Decoder(old.name, dedupe=old.dedupe, memory=old.memory, check_topic=old.check_topic,
                  log_every_s=old.log_every_s)
    new.accepted, new.rejected, new.duplicates = old.accepted, old.rejected, old.duplicates
    return new
