"""The hourly retained MQTT message of the store's analytics (``store_analytics``).

:class:`HourlyPublisher` publishes, once every ``hub.analytics.publish_every_s`` (an hour by
default, on the hour), the k-anonymous aggregates of the store's current day so far on
``storesense/<store>/analytics/hourly``, retained, so a dashboard or building-management system
that subscribes later gets the latest at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from ...config import StoreConfig
from ...contracts import Envelope, Stamper, StoreAnalytics
from ..db import Database
from .report import build_report

log = logging.getLogger(__name__)


def day_start(ts: float, timezone: str) -> float:
    """Unix seconds of the start of the store-local day holding ``ts``."""
    tz = ZoneInfo(timezone)
    day = dt.datetime.fromtimestamp(ts, tz).date()
    return dt.datetime.combine(day, dt.time(), tz).timestamp()


def analytics_message(config: StoreConfig, db: Database, now: float, stamper: Stamper) -> StoreAnalytics:
    """The ``store_analytics`` message for the store-local day holding ``now``, up to ``now``."""
    start = day_start(now, config.store.timezone)
    rep = build_report(config, db, start, now)
    return stamper.make(StoreAnalytics, now, period_start=start, period_end=now, k=rep.k, summary=rep.summary,
                        hourly=tuple(rep.tables["hourly"]), zones=tuple(rep.tables["zones"]),
                        notes=tuple(rep.notes))  # type: ignore[return-value]


class HourlyPublisher:
    """Publishes :func:`analytics_message` every ``publish_every_s`` on a daemon thread."""

    def __init__(self, config: StoreConfig, db: Database, publish: Callable[[Envelope], None],
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.db = db
        self.publish = publish
        self.clock = clock
        self.every_s = config.hub.analytics.publish_every_s
        self.stamper = Stamper("hub-analytics")
        self.published = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish_now(self) -> StoreAnalytics:
        """Build and publish the message now; returns it."""
        msg = analytics_message(self.config, self.db, self.clock(), self.stamper)
        self.publish(msg)
        self.published += 1
        return msg

    def _loop(self) -> None:
        while True:
            now = self.clock()
            wait = self.every_s - (now % self.every_s)  # on the hour (or whatever the period divides)
            if self._stop.wait(max(wait, 0.05)):
                return
            try:
                self.publish_now()
            except Exception:  # noqa: BLE001 - try again next period
                log.exception("analytics: could not publish the hourly message")

    def start(self) -> HourlyPublisher:
        """Start publishing periodically."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="hub-analytics-publish", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop publishing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
