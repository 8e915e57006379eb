"""``storesense hub``: run the store hub (its parts live in hub/, put together by HubService)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import CONFIG_OPTION, console, load_config
from .store import BROKER_DATA_OPTION, BROKER_LISTEN_OPTION, start_broker_if_needed, wait_for_stop


def hub(
    config: Optional[Path] = CONFIG_OPTION,
    db: str = typer.Option("storesense-hub.db", help="SQLite file, or a postgresql://user@host:port/dbname URL."),
    mqtt: Optional[str] = typer.Option(None, help="Broker URL (default: the config's; with none, the hub starts "
                                                  "the store's own broker)."),
    broker_listen: Optional[str] = BROKER_LISTEN_OPTION,
    broker_data: Optional[Path] = BROKER_DATA_OPTION,
    host: Optional[str] = typer.Option(None, help="HTTP address (default: the config's hub.http_host)."),
    port: Optional[int] = typer.Option(None, help="HTTP port (default: the config's hub.http_port; 0: a free one)."),
    terminals: Path = typer.Option(Path("hub-terminals.yaml"), help="Terminals file: ids and token hashes."),
    client_id: Optional[str] = typer.Option(None, help="MQTT client id (fixed: the persistent session survives restarts)."),
    add_terminal: Optional[str] = typer.Option(None, help="Add a terminal with a new token to the terminals file, "
                                                          "print the token once, and exit."),
) -> None:
    """Run the store hub: MQTT ingest, checkout API, review queue, wayfinding, offers and the live page."""
    from ..hub.auth import TerminalRegistry
    from ..hub.auth import add_terminal as add_terminal_token
    from ..hub.service import HubService

    if add_terminal:
        token = add_terminal_token(terminals, add_terminal)
        console.print(f"terminal {add_terminal!r} added to {terminals}; its token (shown only now):")
        console.print(token, highlight=False, soft_wrap=True)
        return
    cfg = load_config(config)
    registry = TerminalRegistry.load(terminals) if terminals.exists() else TerminalRegistry()
    if not len(registry):
        console.print(f"[yellow]no terminals in {terminals}: checkout and review calls are refused "
                      f"(add one with --add-terminal ID)[/]")
    url, broker = start_broker_if_needed(cfg, mqtt, broker_listen, broker_data)
    service = None
    try:
        service = HubService(cfg, db=db, mqtt_url=url, terminals=registry, client_id=client_id, host=host,
                             port=port).start()
        console.print(f"hub ingesting storesense/{cfg.store.id}/# from {url} into {service.store.db.where}; "
                      f"API and live page at {service.http.url} (OpenAPI: {service.http.url}docs) - Ctrl-C to stop",
                      highlight=False, soft_wrap=True)
        wait_for_stop(service.healthy)
    finally:
        if service is not None:
            service.stop()
        if broker is not None:
            broker.stop()
