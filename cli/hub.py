"""``storesense hub``: run the store hub (its parts live in hub/, put together by HubService)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoresenseError
from .common import CONFIG_OPTION, console, load_config


def hub(
    config: Optional[Path] = CONFIG_OPTION,
    db: str = typer.Option("storesense-hub.db", help="SQLite file, or a postgresql://user@host:port/dbname URL."),
    mqtt: Optional[str] = typer.Option(None, help="Broker URL (default: the config's)."),
    host: Optional[str] = typer.Option(None, help="HTTP address (default: the config's hub.http_host)."),
    port: Optional[int] = typer.Option(None, help="HTTP port (default: the config's hub.http_port; 0: a free one)."),
    terminals: Path = typer.Option(Path("hub-terminals.yaml"), help="Terminals file: ids and token hashes."),
    client_id: Optional[str] = typer.Option(None, help="MQTT client id (fixed: the persistent session survives restarts)."),
    add_terminal: Optional[str] = typer.Option(None, help="Add a terminal with a new token to the terminals file, "
                                                          "print the token once, and exit."),
) -> None:
    """Run the store hub: MQTT ingest, checkout API, review queue, wayfinding, offers and the live page."""
    import signal

    from ..hub.auth import TerminalRegistry
    from ..hub.auth import add_terminal as add_terminal_token
    from ..hub.service import HubService

    if add_terminal:
        token = add_terminal_token(terminals, add_terminal)
        console.print(f"terminal {add_terminal!r} added to {terminals}; its token (shown only now):")
        console.print(token, highlight=False, soft_wrap=True)
        return
    cfg = load_config(config)
    url = mqtt or cfg.transports.mqtt.url
    if not url:
        raise StoresenseError("no broker: give --mqtt URL or set transports.mqtt.url in the config")
    registry = TerminalRegistry.load(terminals) if terminals.exists() else TerminalRegistry()
    if not len(registry):
        console.print(f"[yellow]no terminals in {terminals}: checkout and review calls are refused "
                      f"(add one with --add-terminal ID)[/]")
    service = HubService(cfg, db=db, mqtt_url=url, terminals=registry, client_id=client_id, host=host, port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    console.print(f"hub ingesting storesense/{cfg.store.id}/# from {url} into {service.store.db.where}; "
                  f"API and live page at {service.http.url} (OpenAPI: {service.http.url}docs) - Ctrl-C to stop",
                  highlight=False, soft_wrap=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()
