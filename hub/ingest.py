"""The hub's MQTT ingest: a persistent QoS 1 subscription into the durable store.

The subscription uses a fixed client id with a persistent session, so messages
published while the hub restarts wait at the broker. Each message is written to
the :class:`~storesense.hub.store.HubStore` inside the client's callback, before
the client acknowledges it, so an acknowledged message is always stored.
Malformed payloads are counted by the subscriber's decoder and skipped.
"""

from __future__ import annotations

import logging
import time

from ..contracts import Envelope
from ..transport import MqttSubscriber
from .store import HubStore

log = logging.getLogger(__name__)


class HubIngest:
    """Subscribes to ``storesense/<store>/#`` and stores every message."""

    def __init__(self, url: str, store_id: str, db: HubStore, *, client_id: str | None = None):
        self.db = db
        self.stored = 0
        self.duplicates = 0
        self.subscriber = MqttSubscriber(
            url, store=store_id, client_id=client_id or f"storesense-hub-{store_id}",
            on_message=self._on_message, on_availability=self._on_availability,
        )

    def _on_message(self, msg: Envelope, topic: str) -> None:
        if self.db.ingest(msg, topic):
            self.stored += 1
        else:
            self.duplicates += 1

    def _on_availability(self, node: str, state: str) -> None:
        self.db.set_availability(node, state, time.time())

    def start(self, timeout: float = 10.0) -> "HubIngest":
        """Connect and subscribe; raises TransportError when the broker is unreachable."""
        self.subscriber.connect(timeout)
        return self

    def stop(self) -> None:
        """Disconnect (the persistent session keeps later messages at the broker)."""
        self.subscriber.close()
