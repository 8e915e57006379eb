"""Running the hub: the HTTP server thread, and everything ``storesense hub`` starts.

:class:`HttpServer` serves a FastAPI app with uvicorn on a background thread
(port 0 picks a free port; :attr:`HttpServer.url` is then the real one).
:class:`HubService` puts the hub together: the durable store, the MQTT ingest,
an MQTT publisher for offers and light guidance, the offer engine, the HTTP API
with the live page, and the retention purge. :func:`start_live_page` serves
the API and page over an existing store (the demo uses it).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..config import StoreConfig
from ..errors import StoresenseError
from .api import HubContext, create_app
from .auth import TerminalRegistry
from .ingest import HubIngest
from .offers import OfferEngine
from .payments import LocalPaymentProvider, PaymentProvider
from .store import HubStore

log = logging.getLogger(__name__)


class HttpServer:
    """uvicorn serving ``app`` on ``host:port`` in a daemon thread."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.host = host
        self.port = port
        self._server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2, ws="none"))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` of the running server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 10.0) -> HttpServer:
        """Start serving; raises :class:`StoresenseError` when the port cannot be bound."""
        self._thread = threading.Thread(target=self._server.run, name=f"hub-http-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise StoresenseError(f"the hub's HTTP server could not listen on {self.host}:{self.port} "
                                      "(port in use, or no such address)")
            time.sleep(0.01)
        if self.port == 0:
            self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the live pages' streams, stop serving and wait for the thread."""
        ctx = getattr(getattr(self._server.config.app, "state", None), "ctx", None)
        if ctx is not None and ctx.feed is not None:
            ctx.feed.detach()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


def start_live_page(config: StoreConfig, store: HubStore, host: str = "127.0.0.1", port: int = 0,
                    terminals: TerminalRegistry | None = None) -> tuple[HttpServer, HubContext]:
    """Serve the hub's API and live page over ``store`` (which something else fills)."""
    ctx = HubContext(config, store, terminals or TerminalRegistry())
    server = HttpServer(create_app(ctx), host, port).start()
    return server, ctx


class HubService:
    """The whole hub: store, ingest, offers, light guidance, HTTP API and live page, retention."""

    def __init__(self, config: StoreConfig, *, db: str | Path, mqtt_url: str, terminals: TerminalRegistry,
                 payments: PaymentProvider | None = None, client_id: str | None = None,
                 host: str | None = None, port: int | None = None):
        self.config = config
        self.mqtt_url = mqtt_url
        self.store = HubStore(db)
        store_id = config.store.id
        self.ingest = HubIngest(mqtt_url, store_id, self.store, client_id=client_id or f"storesense-hub-{store_id}")
        from ..transport import MqttPublisher

        self.publisher = MqttPublisher(mqtt_url, store=store_id, node="hub", kind="hub",
                                       client_id=f"{client_id or 'storesense-hub-' + store_id}-out")
        self.ctx = HubContext(config, self.store, terminals, payments or LocalPaymentProvider(),
                              publish=self.publisher.publish, ingest_status=self.ingest.status)
        self.offers = OfferEngine(config, self.store, self.publisher.publish)
        from .analytics import Rollup
        from .analytics.publish import HourlyPublisher

        self.ingest.rollup = Rollup(config, self.store.db)
        self.analytics_publisher = HourlyPublisher(config, self.store.db, self.publisher.publish)
        self.http = HttpServer(create_app(self.ctx), host or config.hub.http_host,
                               config.hub.http_port if port is None else port)
        self._stop = threading.Event()
        self._purger: threading.Thread | None = None

    def start(self) -> HubService:
        """Connect to the broker, start ingesting, serving and purging."""
        try:
            self.publisher.connect()
            self.offers.attach()
            self.http.start()
            self.ingest.start()
            self.analytics_publisher.start()
        except BaseException:
            self.stop()
            raise
        self._purger = threading.Thread(target=self._purge_loop, name="hub-retention", daemon=True)
        self._purger.start()
        return self

    def healthy(self) -> bool:
        """True while the HTTP server and the ingest's writer run (the broker link may be reconnecting)."""
        http = self.http._thread
        return http is not None and http.is_alive() and self.ingest.running

    def purge_now(self) -> dict[str, int]:
        """Apply the retention limits once."""
        r = self.config.hub.retention
        return self.store.purge(r.positions_s, r.zone_events_s)

    def _purge_loop(self) -> None:
        while not self._stop.wait(self.config.hub.retention.purge_every_s):
            try:
                gone = self.purge_now()
                if any(gone.values()):
                    log.info("retention purge: %s", gone)
            except Exception:  # noqa: BLE001 - try again next time
                log.exception("retention purge failed")

    def stop(self) -> None:
        """Stop everything; messages that arrive meanwhile wait at the broker."""
        self._stop.set()
        self.http.stop()
        self.ingest.stop()
        self.offers.detach()
        self.analytics_publisher.stop()
        self.publisher.close()
        if self._purger is not None:
            self._purger.join(2.0)
        self.store.close()
