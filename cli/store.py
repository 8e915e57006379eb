"""``storesense store up``: the store's broker, fusion node and hub in one process, for a small shop or a trial.

The broker is the one :func:`~storesense.transport.local_broker.start_store_broker`
picks (nats-server, mosquitto, amqtt), unless ``--mqtt`` or the config names one;
the fusion node listens on the config's ZeroMQ endpoint for the camera, BLE and
shelf nodes; the hub stores everything and serves the API and the live page.
Ctrl-C or SIGTERM stops them in reverse order: fusion flushes what it holds,
the hub stores what the broker delivered, the broker saves its sessions.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from .common import CONFIG_OPTION, console, load_config

store_app = typer.Typer(no_args_is_help=True, help="Run a whole store on one machine.")

BROKER_LISTEN_OPTION = typer.Option(None, "--broker-listen", help="host:port for the store's own broker "
                                                                  "(default: the config's transports.mqtt.listen).")
BROKER_DATA_OPTION = typer.Option(None, "--broker-data", help="Folder for the store's own broker "
                                                              "(default: the config's transports.mqtt.data_dir).")


def start_broker_if_needed(cfg, mqtt: Optional[str], listen: Optional[str], data: Optional[Path]):
    """The broker URL to use and the broker started for it (None when an external one is named)."""
    from ..transport.local_broker import start_store_broker

    url = mqtt or cfg.transports.mqtt.url
    if url:
        return url, None
    broker = start_store_broker(cfg.transports.mqtt, listen=listen, data_dir=data,
                                server_name=f"storesense-{cfg.store.id}", store_id=cfg.store.id,
                                secure=bool(cfg.transports.zmq.curve_keys))
    if broker.engine == "existing":
        console.print(f"no broker configured: using the MQTT broker already listening on {broker.url}",
                      highlight=False, soft_wrap=True)
        return broker.url, None
    console.print(f"no broker configured: started the store's own {broker.engine} broker on {broker.url}"
                  + (f" (data in {broker.data_dir})" if getattr(broker, "data_dir", None) else ""),
                  highlight=False, soft_wrap=True)
    return broker.url, broker


def sd_notify(state: str) -> bool:
    """Tell systemd ``state`` (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``) when run as a notify unit."""
    import os
    import socket

    where = os.environ.get("NOTIFY_SOCKET")
    if not where:
        return False
    if where.startswith("@"):
        where = "\0" + where[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), where)
        return True
    except OSError:
        return False


def wait_for_stop(healthy=lambda: True) -> None:
    """Block until Ctrl-C or SIGTERM, telling systemd's watchdog every few seconds while ``healthy()``.

    A part that died (``healthy()`` false) stops the pings, so a unit with
    ``WatchdogSec`` is restarted by systemd.
    """
    import os

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    every = max(0.5, int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6) if os.environ.get("WATCHDOG_USEC") else 5.0
    sd_notify("READY=1")
    try:
        while not stop.wait(every):
            if healthy():
                sd_notify("WATCHDOG=1")
    except KeyboardInterrupt:
        pass
    finally:
        sd_notify("STOPPING=1")
        signal.signal(signal.SIGTERM, previous)


@store_app.command("up")
def up(
    config: Optional[Path] = CONFIG_OPTION,
    db: str = typer.Option("storesense-hub.db", help="SQLite file, or a postgresql://user@host:port/dbname URL."),
    mqtt: Optional[str] = typer.Option(None, help="External broker URL (default: the config's, else start one)."),
    broker_listen: Optional[str] = BROKER_LISTEN_OPTION,
    broker_data: Optional[Path] = BROKER_DATA_OPTION,
    host: Optional[str] = typer.Option(None, help="HTTP address (default: the config's hub.http_host)."),
    port: Optional[int] = typer.Option(None, help="HTTP port (default: the config's hub.http_port; 0: a free one)."),
    terminals: Path = typer.Option(Path("hub-terminals.yaml"), help="Terminals file: ids and token hashes."),
    run_id: Optional[str] = typer.Option(None, help="Fixed fusion run id (a deterministic replay); default: a fresh "
                                                    "random one at each start, or the fusion journal's."),
) -> None:
    """Run broker, fusion node and hub together until Ctrl-C or SIGTERM."""
    from ..fusion.service import FusionService
    from ..hub.auth import TerminalRegistry
    from ..hub.service import HubService
    from ..transport.provision import edge_sources
    from ..transport.zeromq import CurveKeys

    cfg = load_config(config)
    registry = TerminalRegistry.load(terminals) if terminals.exists() else TerminalRegistry()
    url, broker = start_broker_if_needed(cfg, mqtt, broker_listen, broker_data)
    hub = fusion = None
    try:
        hub = HubService(cfg, db=db, mqtt_url=url, terminals=registry, host=host, port=port).start()
        fusion = FusionService(cfg, run_id=run_id, mqtt_url=url, journal=cfg.fusion.journal,
                               journal_fsync_s=cfg.fusion.journal_fsync_s,
                               journal_rotate_entries=cfg.fusion.journal_rotate_entries).start()
        curve = CurveKeys.fusion(cfg.transports.zmq.curve_keys) if cfg.transports.zmq.curve_keys else None
        endpoint = fusion.listen(cfg.transports.zmq.observations, curve=curve, sources=edge_sources(cfg))
        fusion.freeze_startup_state()
        fusion.serve_in_thread(poll_s=1.0)
        console.print(f"store {cfg.store.id} up: edge nodes publish to {endpoint}; broker {url}; hub API and live "
                      f"page at {hub.http.url} (database {hub.store.db.where}) - Ctrl-C to stop",
                      highlight=False, soft_wrap=True)
        wait_for_stop(lambda: fusion.error is None and fusion._thread is not None and fusion._thread.is_alive()
                      and hub.healthy())
        console.print("stopping: fusion, hub, broker", highlight=False)
    finally:
        if fusion is not None:
            fusion.stop(5.0)
            fusion.close()
        if hub is not None:
            hub.stop()
        if broker is not None:
            broker.stop()
    if fusion is not None:
        console.print("stopped; fusion " + " ".join(f"{k}={v}" for k, v in sorted(fusion.counters.items())),
                      highlight=False, soft_wrap=True)
