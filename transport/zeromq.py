"""ZeroMQ publisher and subscriber (edge -> fusion).

Edge nodes' :class:`ZmqPublisher` connect to the fusion node's bound
:class:`ZmqSubscriber`. Frames are ``[topic, encoded message]``. The publisher
is an XPUB socket so :meth:`ZmqPublisher.wait_for_subscriber` can wait for the
subscription to arrive instead of losing the first messages (ZeroMQ's "slow
joiner"). No call here waits forever: every wait takes a timeout.

With :class:`CurveKeys` the link is encrypted and authenticated (ZeroMQ CURVE): the fusion node's
subscriber accepts only the listed edge nodes' public keys (pyzmq's authenticator); an unlisted or
missing key gets no connection, so nothing it sends arrives, and it is logged once per key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ..contracts import Decoder, Envelope, encode, topic_for
from ..errors import TransportError

log = logging.getLogger(__name__)

#: ZeroMQ high-water marks: messages queued per peer before ZeroMQ drops them.
ZMQ_HWM = 100_000


@dataclass(frozen=True)
class CurveKeys:
    """A node's CURVE key pair (Z85 text, as ``zmq.curve_keypair()`` and ``zmq.auth`` key files hold them).

    For the fusion node (the server) ``allowed`` lists the public keys of the edge nodes it accepts;
    for an edge node (a client) ``server_key`` is the fusion node's public key.
    """

    public: bytes
    secret: bytes = field(repr=False)
    server_key: bytes | None = None
    allowed: frozenset[bytes] = frozenset()
    #: allowed public key -> the node it belongs to (its key file's name), for binding sources to keys
    names: dict[bytes, str] = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, secret_file: str | Path, *, server_key_file: str | Path | None = None,
             allowed_dir: str | Path | None = None) -> CurveKeys:
        """Keys from ``zmq.auth`` certificate files: this node's ``*.key_secret``, the server's public
        ``*.key`` (clients) or a folder of accepted clients' public ``*.key`` files (the server)."""
        try:
            public, secret = zmq.auth.load_certificate(str(secret_file))
            if secret is None:
                raise ValueError("no secret key in it")
            server = zmq.auth.load_certificate(str(server_key_file))[0] if server_key_file else None
            names = {zmq.auth.load_certificate(str(f))[0]: f.stem
                     for f in sorted(Path(allowed_dir).glob("*.key"))} if allowed_dir else {}
            allowed = frozenset(names)
        except (OSError, ValueError) as exc:
            raise TransportError(f"cannot load CURVE keys ({secret_file}): {exc}") from None
        return cls(public, secret, server, allowed, names)

    @classmethod
    def fusion(cls, keys_dir: str | Path) -> CurveKeys:
        """The fusion node's keys in a store's key folder (``storesense security init``): its own
        ``fusion.key_secret``, accepting the public keys in ``allowed/``."""
        d = Path(keys_dir)
        if not (d / "allowed").is_dir():
            raise TransportError(f"cannot load CURVE keys ({d}): no allowed/ folder of edge nodes' public keys")
        return cls.load(d / "fusion.key_secret", allowed_dir=d / "allowed")

    @classmethod
    def for_edge(cls, keys_dir: str | Path | None, node: str) -> CurveKeys | None:
        """:meth:`edge` when the store config names a key folder (``transports.zmq.curve_keys``), else None."""
        return cls.edge(keys_dir, node) if keys_dir else None

    @classmethod
    def edge(cls, keys_dir: str | Path, node: str) -> CurveKeys:
        """An edge node's keys in a store's key folder: ``<node>.key_secret`` and the fusion node's ``fusion.key``."""
        d = Path(keys_dir)
        return cls.load(d / f"{node}.key_secret", server_key_file=d / "fusion.key")


class _AllowList:
    """pyzmq authenticator callback: accepts listed client keys, logs each refused key once."""

    def __init__(self, name: str, allowed: frozenset[bytes]):
        self.name = name
        self.allowed = allowed
        self.refused: dict[bytes, int] = {}

    def callback(self, domain: str, key: bytes) -> bool:
        """True for a listed key; a refused key is counted and logged the first time."""
        if key in self.allowed:
            return True
        if key not in self.refused:
            log.warning("%s: refused a ZeroMQ peer with an unlisted CURVE key %s", self.name, key.decode("ascii", "replace"))
        self.refused[key] = self.refused.get(key, 0) + 1
        return False


def _curve_options(curve: CurveKeys | None, server: bool) -> dict[int, bytes | int]:
    """Socket options for CURVE: the server's own keys, or a client's keys and the server's key."""
    if curve is None:
        return {}
    if server:
        return {zmq.CURVE_SERVER: 1, zmq.CURVE_PUBLICKEY: curve.public, zmq.CURVE_SECRETKEY: curve.secret}
    if curve.server_key is None:
        raise TransportError("a ZeroMQ CURVE client needs the server's public key")
    return {zmq.CURVE_PUBLICKEY: curve.public, zmq.CURVE_SECRETKEY: curve.secret, zmq.CURVE_SERVERKEY: curve.server_key}


def _zmq_socket(kind: int, role: str, endpoint: str, bind: bool, options: dict[int, int | bytes],
                subscriptions: list[bytes] = (), context: zmq.Context | None = None) -> tuple[zmq.Socket, str]:
    """A socket of ``kind`` bound to or connected to ``endpoint``; returns it with the real endpoint.

    Binding ``tcp://host:*`` picks a free port, which the returned endpoint names. A failure closes
    the socket and raises :class:`TransportError` naming the endpoint.
    """
    sock = (context or zmq.Context.instance()).socket(kind)
    try:
        for option, value in options.items():
            sock.setsockopt(option, value)
        for topic in subscriptions:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        if bind:
            sock.bind(endpoint)
            endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            sock.connect(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise TransportError(f"cannot {'bind' if bind else 'connect'} ZeroMQ {role} to {endpoint}: {exc}") from None
    return sock, endpoint


class ZmqPublisher:
    """Publishes storesense messages as ``[topic, json]`` frames on a ZeroMQ XPUB socket.

    Edge nodes connect (``bind=False``, the default) to the endpoint the fusion
    node's :class:`ZmqSubscriber` binds. Call :meth:`wait_for_subscriber` before
    the first message: until the subscription has arrived, ZeroMQ drops what is
    published. (A bound SUB socket sends its subscriptions to a newly connected
    publisher only once its owner calls into it, e.g. ``recv()``, so this returns
    when the fusion node's receive loop runs; libzmq issue #2267.) Not
    thread-safe: use one publisher per thread.
    """

    def __init__(self, endpoint: str, *, store: str, bind: bool = False, curve: CurveKeys | None = None):
        self.store = store
        self._subscribed = False
        self.published = 0
        self._sock, self.endpoint = _zmq_socket(zmq.XPUB, "publisher", endpoint, bind,
                                                {zmq.SNDHWM: ZMQ_HWM, zmq.LINGER: 1000,
                                                 **_curve_options(curve, server=False)})

    def wait_for_subscriber(self, timeout: float = 5.0) -> bool:
        """Block until a subscriber's subscription has arrived (True) or ``timeout`` s pass (False)."""
        deadline = time.monotonic() + timeout
        while not self._subscribed:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                return self._subscribed
            while self._sock.poll(0, zmq.POLLIN):
                frame = self._sock.recv()
                if frame[:1] == b"\x01":
                    self._subscribed = True
        return True

    def publish(self, msg: Envelope) -> None:
        """Send ``msg`` as ``[topic, encode(msg)]`` (dropped by ZeroMQ if no one subscribes)."""
        self._sock.send_multipart([topic_for(self.store, msg).encode("utf-8"), encode(msg)])
        self.published += 1

    def close(self, linger_ms: int = 1000) -> None:
        """Close the socket, waiting at most ``linger_ms`` for queued messages to go out."""
        if not self._sock.closed:
            self._sock.close(linger=linger_ms)

    def __enter__(self) -> ZmqPublisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ZmqSubscriber:
    """Receives storesense messages from ZeroMQ publishers on a SUB socket.

    The fusion node binds (``bind=True``, the default) and every edge node
    connects. ``tcp://127.0.0.1:*`` binds a free port; :attr:`endpoint` is then
    the real one. Messages are decoded by :attr:`decoder`: malformed ones are
    counted and logged with their topic, duplicates dropped. Call :meth:`recv`
    in a loop: a newly connected publisher is attached (and receives the
    subscriptions) only while the socket is used. Not thread-safe.
    """

    def __init__(self, endpoint: str, *, bind: bool = True, topics: Iterable[str] = ("",),
                 curve: CurveKeys | None = None,
                 sources: Callable[[str | None], Collection[str] | None] | None = None):
        self._auth: ThreadAuthenticator | None = None
        self._context: zmq.Context | None = None
        self.allow_list: _AllowList | None = None
        if curve is not None:
            # one authenticator per context (it owns the context's ZAP endpoint): a context of its own
            self._context = zmq.Context()
            self.allow_list = _AllowList(f"zmq-sub {endpoint}", curve.allowed)
            self._auth = ThreadAuthenticator(self._context)
            self._auth.start()
            self._auth.configure_curve_callback("*", credentials_provider=self.allow_list)
        try:
            self._sock, self.endpoint = _zmq_socket(zmq.SUB, "subscriber", endpoint, bind,
                                                    {zmq.RCVHWM: ZMQ_HWM, zmq.LINGER: 0,
                                                     **_curve_options(curve, server=True)},
                                                    [t.encode("utf-8") for t in topics], self._context)
        except BaseException:
            self._close_auth()
            raise
        self.decoder = Decoder(f"zmq-sub {endpoint}", check_topic=True)
        self.timed_out = False  # whether the last recv() returned None because nothing came (not a bad message)
        # with CURVE: the node a peer's key belongs to -> the sources it may send as (None: any)
        self._sources = sources if curve is not None else None
        self._names = {k.decode("ascii"): n for k, n in curve.names.items()} if curve is not None else {}
        if self.allow_list is not None:
            self.allow_list.name = f"zmq-sub {self.endpoint}"

    def _close_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def recv(self, timeout_s: float = 1.0) -> Envelope | None:
        """The next valid message, or None on timeout or when the next one is malformed or a duplicate."""
        got = self.recv_with_topic(timeout_s)
        return got[1] if got is not None else None

    def recv_with_topic(self, timeout_s: float = 1.0) -> tuple[str, Envelope] | None:
        """Like :meth:`recv` but also returns the topic frame: ``(topic, msg)``."""
        self.timed_out = not self._sock.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN)
        if self.timed_out:
            return None
        bound = self._sources is not None
        raw = self._sock.recv_multipart(zmq.NOBLOCK, copy=not bound)
        frames = [f.bytes for f in raw] if bound else raw
        topic = frames[0].decode("utf-8", errors="replace")
        if len(frames) != 2:
            self.decoder.rejected["wrong number of frames"] += 1
            log.warning("%s: skipped message on %s: expected 2 frames [topic, message], got %d",
                        self.decoder.name, topic, len(frames))
            return None
        msg = self.decoder.decode(frames[1], origin=topic)
        if msg is not None and bound and not self._source_allowed(raw[1], msg, topic):
            return None
        return (topic, msg) if msg is not None else None

    def _source_allowed(self, frame: zmq.Frame, msg: Envelope, topic: str) -> bool:
        """Whether the CURVE key that sent ``frame`` belongs to a node that may send as ``msg.source``."""
        try:
            node = self._names.get(frame.get("User-Id"))
        except zmq.ZMQError:
            node = None
        allowed = self._sources(node)  # type: ignore[misc]
        if allowed is None or msg.source in allowed:  # type: ignore[attr-defined]
            return True
        # refused: counted and logged like any bad message, and its event id not remembered as seen
        self.decoder._seen.pop(msg.event_id, None)  # type: ignore[attr-defined]
        self.decoder.accepted -= 1
        self.decoder._reject(f"source not allowed for the sender's key: {node!r} sent as "
                             f"{msg.source!r}", topic)  # type: ignore[attr-defined]
        return False

    def close(self) -> None:
        """Close the socket (and stop its CURVE authenticator)."""
        if not self._sock.closed:
            self._sock.close(linger=0)
        self._close_auth()

    def __enter__(self) -> ZmqSubscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
