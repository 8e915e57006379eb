"""What a store needs to run its links securely, written in one go (``storesense security init``).

:func:`init_store_security` writes, under one folder::

    ca.crt, ca.key                 the store's certificate authority (keep ca.key off the LAN)
    broker/                        for the Mosquitto host
        mosquitto.conf             TLS listener, client certificates required, no anonymous logins,
                                   the password file and the ACL below
        server.crt, server.key     the broker's certificate (names given with --host)
        passwd                     one login per node (Mosquitto's PBKDF2-SHA512 hashes)
        acl                        each node role publishes only its own topics (:mod:`.security`)
    nodes/<node>/                  copy to that node's machine, e.g. as /etc/storesense
        ca.crt, <node>.crt, <node>.key, <node>.pass
        mqtt.url                   the node's mqtts:// URL (file paths only, no secret in it)
        zmq/                       ZeroMQ CURVE keys (``transports.zmq.curve_keys``): the fusion node's
                                   own pair and allowed/ with every edge node's public key; an edge
                                   node's own pair and fusion.key

Nodes: the hub (role ``hub``), the fusion node (``fusion``) and, with role ``edge``, every
camera, BLE receiver, shelf node (``weight_sensors[].node``) and entry gate of the store config,
plus any given. The
certificates are made with the ``openssl`` command (EC P-256); the CURVE pairs with pyzmq.
Secret files are written readable by their owner only. Nothing is printed that holds a secret.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from ..config import StoreConfig
from ..errors import ConfigError
from .security import mosquitto_acl

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class StoreSecurity:
    """Where :func:`init_store_security` wrote things."""

    root: Path
    nodes: dict[str, str]  # node -> role
    broker_conf: Path
    port: int

    def node_dir(self, node: str) -> Path:
        """The folder to copy to ``node``'s machine."""
        return self.root / "nodes" / node

    def mqtt_url(self, node: str) -> str:
        """``node``'s mqtts:// URL (certificate, key and password file paths; no secret)."""
        return (self.node_dir(node) / "mqtt.url").read_text().strip()

    def curve_keys(self, node: str) -> Path:
        """``node``'s CURVE key folder (``transports.zmq.curve_keys``)."""
        return self.node_dir(node) / "zmq"


def store_nodes(config: StoreConfig, extra: Mapping[str, str] = ()) -> dict[str, str]:
    """Every node of the store and its role: hub, fusion, then the edge nodes of the config and ``extra``."""
    nodes = {"hub": "hub", "fusion": "fusion"}
    for ids in ([c.id for c in config.cameras], [b.id for b in config.ble_nodes],
                sorted({w.node for w in config.weight_sensors}), [g.id for z in config.zones for g in z.gates]):
        nodes.update({i: "edge" for i in ids})
    nodes.update(dict(extra))
    return nodes


def edge_sources(config: StoreConfig) -> Callable[[str | None], frozenset[str] | None]:
    """For the fusion node's ZeroMQ subscriber: the sources an edge node's CURVE key may send as.

    A camera, BLE receiver or gate sends as itself; a shelf node as itself and its weight sensors.
    A key of a node the config does not name (added with ``security init --node``: a bridge, a
    replayer) may send as any source (None).
    """
    table: dict[str, set[str]] = {}
    for i in [c.id for c in config.cameras] + [b.id for b in config.ble_nodes] + \
             [g.id for z in config.zones for g in z.gates]:
        table.setdefault(i, set()).add(i)
    for w in config.weight_sensors:
        table.setdefault(w.node, {w.node}).add(w.id)
    frozen = {k: frozenset(v) for k, v in table.items()}
    return frozen.get


def mosquitto_password_line(user: str, password: str, *, iterations: int = 101) -> str:
    """One line of a Mosquitto password file (``$7$``: PBKDF2-SHA512, as ``mosquitto_passwd`` writes)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"openssl {args[0]} failed: {exc.stderr.strip().splitlines()[-1] if exc.stderr else exc}") from None


def _private(path: Path) -> None:
    os.chmod(path, 0o600)


def _certificate(d: Path, name: str, ca: Path, days: int, ext: str | None = None) -> None:
    """``name``.crt and ``name``.key in ``d``, signed by the CA in ``ca``."""
    _openssl("req", "-new", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    extra = []
    if ext:
        (d / f"{name}.ext").write_text(ext + "\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca / "ca.crt"), "-CAkey", str(ca / "ca.key"),
             "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), *extra, cwd=d)
    (d / f"{name}.csr").unlink()
    if ext:
        (d / f"{name}.ext").unlink()
    _private(d / f"{name}.key")


def init_store_security(config: StoreConfig, out: str | Path, *, hosts: tuple[str, ...] = ("localhost",),
                        port: int = 8883, days: int = 825, extra_nodes: Mapping[str, str] = (),
                        force: bool = False) -> StoreSecurity:
    """Write the store's CA, certificates, passwords, Mosquitto config, ACL and CURVE keys; see the module.

    ``hosts`` are the names (or IP addresses) nodes reach the broker by; the first is used in the
    nodes' URLs. An existing folder is refused unless ``force`` (new keys lock every node out until
    it gets its new folder).
    """
    if shutil.which("openssl") is None:
        raise ConfigError("security init needs the openssl command (apt install openssl)")
    if not hosts:
        raise ConfigError("give at least one broker host name or address (--host)")
    root = Path(out).resolve()
    if (root / "ca.key").exists() and not force:
        raise ConfigError(f"{root}: already holds a store CA; --force makes new keys for every node")
    nodes = store_nodes(config, extra_nodes)
    acl = mosquitto_acl(config.store.id, nodes)  # checks roles and node ids first
    if root.exists() and force:
        for sub in ("broker", "nodes"):
            shutil.rmtree(root / sub, ignore_errors=True)
    broker, node_root = root / "broker", root / "nodes"
    for d in (root, broker, node_root):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)

    _openssl("req", "-x509", *EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days * 2),
             "-subj", f"/CN={config.store.id} storesense CA", cwd=root)
    _private(root / "ca.key")
    alt = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    _certificate(broker, "server", root, days, ext=f"subjectAltName={alt}")

    passwd = []
    zmq_dir = root / "zmq-all"
    shutil.rmtree(zmq_dir, ignore_errors=True)
    zmq_dir.mkdir()
    for node in nodes:
        zmq.auth.create_certificates(str(zmq_dir), node)
    for node, role in nodes.items():
        d = node_root / node
        d.mkdir()
        shutil.copy(root / "ca.crt", d / "ca.crt")
        _certificate(d, node, root, days)
        password = secrets.token_urlsafe(24)
        (d / f"{node}.pass").write_text(password + "\n")
        _private(d / f"{node}.pass")
        passwd.append(mosquitto_password_line(node, password))
        (d / "mqtt.url").write_text(
            f"mqtts://{node}@{hosts[0]}:{port}?ca={d / 'ca.crt'}&cert={d / f'{node}.crt'}&key={d / f'{node}.key'}"
            f"&password_file={d / f'{node}.pass'}\n")
        if role == "hub":
            continue
        z = d / "zmq"
        z.mkdir()
        for suffix in (".key", ".key_secret"):
            shutil.copy(zmq_dir / f"{node}{suffix}", z / f"{node}{suffix}")
        _private(z / f"{node}.key_secret")
        if role == "fusion":
            (z / "allowed").mkdir()
            for edge, r in nodes.items():
                if r == "edge":
                    shutil.copy(zmq_dir / f"{edge}.key", z / "allowed" / f"{edge}.key")
        else:
            shutil.copy(zmq_dir / "fusion.key", z / "fusion.key")
    shutil.rmtree(zmq_dir)

    (broker / "passwd").write_text("\n".join(passwd) + "\n")
    _private(broker / "passwd")
    (broker / "acl").write_text(acl)
    conf = broker / "mosquitto.conf"
    conf.write_text("\n".join([
        f"# storesense: store {config.store.id} - TLS with client certificates, one login per node, ACL",
        "per_listener_settings false",
        f"listener {port}",
        f"cafile {root / 'ca.crt'}",
        f"certfile {broker / 'server.crt'}",
        f"keyfile {broker / 'server.key'}",
        "require_certificate true",
        "allow_anonymous false",
        f"password_file {broker / 'passwd'}",
        f"acl_file {broker / 'acl'}",
        "",
    ]))
    (root / "ca.srl").unlink(missing_ok=True)
    return StoreSecurity(root, nodes, conf, port)
