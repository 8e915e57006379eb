"""storesense.hub: the store hub.

MQTT ingest into a durable store (SQLite or PostgreSQL, idempotent on event id), the checkout
terminal API, the review queue, wayfinding with light guidance, zone offers, retention and the
live store page. Start with :class:`storesense.hub.service.HubService` (what ``storesense hub``
runs) and docs/hub.md.
"""
