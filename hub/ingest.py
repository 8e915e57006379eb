"""The hub's MQTT ingest: a persistent QoS 1 subscription into the durable store.

The subscription uses a fixed client id with a persistent session, so messages
published while the hub restarts wait at the broker. Each message is written to
the :class:`~storesense.hub.store.HubStore` inside the client's callback, and
paho sends the PUBACK only after that callback returns (paho-mqtt 2.x,
``Client._handle_publish``: ``_handle_on_message`` then ``_send_puback``), so an
acknowledged message is always stored: a hub killed at any moment has either
stored a message or will get it again from the broker. Redelivered messages
are dropped by event id (in memory by the subscriber's decoder, durably by the
store).

When the database fails the callback retries with a growing pause instead of
returning, so the message is not acknowledged; if it still fails when the hub
is stopped, the message is left unacknowledged by dropping the connection
before the callback returns, and the broker redelivers it. Malformed payloads
are counted by the subscriber's decoder and skipped.
"""

from __future__ import annotations

import logging
import threading
import time

from ..contracts import Envelope
from ..transport import MqttSubscriber
from .store import HubStore

log = logging.getLogger(__name__)

#: pauses between attempts to store a message while the database fails (seconds)
RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)


class HubIngest:
    """Subscribes to ``storesense/<store>/#`` and stores every message."""

    def __init__(self, url: str, store_id: str, db: HubStore, *, client_id: str | None = None):
        self.db = db
        self.stored = 0
        self.duplicates = 0
        self.store_failures = 0
        self._stopping = threading.Event()
        self.subscriber = MqttSubscriber(
            url, store=store_id, client_id=client_id or f"storesense-hub-{store_id}",
            on_message=self._on_message, on_availability=self._on_availability,
        )

    @property
    def malformed(self) -> int:
        """Messages skipped as malformed or unknown."""
        return self.subscriber.decoder.rejected_total

    def _on_message(self, msg: Envelope, topic: str) -> None:
        attempt = 0
        while True:
            try:
                added = self.db.ingest(msg, topic)
                break
            except Exception as exc:  # noqa: BLE001 - database trouble: do not let paho acknowledge
                self.store_failures += 1
                if self._stopping.is_set():
                    log.error("hub stopping while %s on %s cannot be stored (%s): leaving it unacknowledged",
                              msg.event_id, topic, exc)
                    self._drop_connection()
                    raise
                pause = RETRY_PAUSES[min(attempt, len(RETRY_PAUSES) - 1)]
                log.warning("cannot store %s from %s (%s); retrying in %.2f s", msg.event_id, topic, exc, pause)
                attempt += 1
                self._stopping.wait(pause)
        if added:
            self.stored += 1
        else:
            self.duplicates += 1

    def _drop_connection(self) -> None:
        """Close the socket under paho so the PUBACK of the message being handled cannot go out."""
        sock = self.subscriber._client.socket()  # noqa: SLF001 - the one way to withhold paho's automatic ack
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _on_availability(self, node: str, state: str) -> None:
        self.db.set_availability(node, state, time.time())

    def start(self, timeout: float = 10.0) -> HubIngest:
        """Connect and subscribe; raises TransportError when the broker is unreachable."""
        self._stopping.clear()
        self.subscriber.connect(timeout)
        return self

    def stop(self) -> None:
        """Disconnect (the persistent session keeps later messages at the broker)."""
        self._stopping.set()
        self.subscriber.close()
