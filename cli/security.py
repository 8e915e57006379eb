"""``storesense security init``: the store's CA, certificates, logins, Mosquitto config, ACL and CURVE keys."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import ConfigError
from .common import CONFIG_OPTION, console, load_config

security_app = typer.Typer(no_args_is_help=True, help="Secure the store's links (docs/security.md).")


@security_app.command("init")
def init(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (refused when it already holds a CA)."),
    config: Optional[Path] = CONFIG_OPTION,
    host: List[str] = typer.Option(["localhost"], help="Name or address nodes reach the broker by (repeat for "
                                                       "more; the first goes into the nodes' URLs)."),
    port: int = typer.Option(8883, min=1, max=65535, help="The broker's TLS port."),
    days: int = typer.Option(825, min=1, help="Days the node and broker certificates are valid."),
    node: List[str] = typer.Option([], help="Another node as NAME:ROLE (role edge, fusion or hub)."),
    force: bool = typer.Option(False, help="Make new keys for every node even if the folder holds some."),
) -> None:
    """Write a CA, per-node certificates and passwords, a Mosquitto config with a TLS listener, its
    password file and ACL, and per-node ZeroMQ CURVE key pairs."""
    from ..transport.provision import init_store_security

    extra = {}
    for item in node:
        name, sep, role = item.partition(":")
        if not sep:
            raise ConfigError(f"--node {item!r}: expected NAME:ROLE, e.g. door-scanner:edge")
        extra[name] = role
    cfg = load_config(config)
    sec = init_store_security(cfg, out, hosts=tuple(host), port=port, days=days, extra_nodes=extra, force=force)
    roles = {}
    for n, r in sec.nodes.items():
        roles.setdefault(r, []).append(n)
    console.print(f"wrote the security of store {cfg.store.id} to {sec.root}: "
                  + "; ".join(f"{r}: {', '.join(ns)}" for r, ns in roles.items()), highlight=False, soft_wrap=True)
    console.print(f"broker: mosquitto -c {sec.broker_conf}\n"
                  f"each node: copy {sec.root / 'nodes'}/<node>/ to its machine; transports.mqtt.url = the "
                  f"contents of its mqtt.url, transports.zmq.curve_keys = its zmq/ folder. "
                  f"Keep {sec.root / 'ca.key'} off the store's LAN.", highlight=False, soft_wrap=True)
