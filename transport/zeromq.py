"""ZeroMQ publisher and subscriber (edge -> fusion).

Edge nodes' :class:`ZmqPublisher` connect to the fusion node's bound
:class:`ZmqSubscriber`. Frames are ``[topic, encoded message]``. The publisher
is an XPUB socket so :meth:`ZmqPublisher.wait_for_subscriber` can wait for the
subscription to arrive instead of losing the first messages (ZeroMQ's "slow
joiner"). No call here waits forever: every wait takes a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import zmq

from ..contracts import Decoder, Envelope, encode, topic_for
from ..errors import TransportError

log = logging.getLogger(__name__)

#: ZeroMQ high-water marks: messages queued per peer before ZeroMQ drops them.
ZMQ_HWM = 100_000


def _zmq_socket(kind: int, role: str, endpoint: str, bind: bool, options: dict[int, int],
                subscriptions: list[bytes] = ()) -> tuple[zmq.Socket, str]:
    """A socket of ``kind`` bound to or connected to ``endpoint``; returns it with the real endpoint.

    Binding ``tcp://host:*`` picks a free port, which the returned endpoint names. A failure closes
    the socket and raises :class:`TransportError` naming the endpoint.
    """
    sock = zmq.Context.instance().socket(kind)
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

    def __init__(self, endpoint: str, *, store: str, bind: bool = False):
        self.store = store
        self._subscribed = False
        self.published = 0
        self._sock, self.endpoint = _zmq_socket(zmq.XPUB, "publisher", endpoint, bind,
                                                {zmq.SNDHWM: ZMQ_HWM, zmq.LINGER: 1000})

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

    def __init__(self, endpoint: str, *, bind: bool = True, topics: Iterable[str] = ("",)):
        self._sock, self.endpoint = _zmq_socket(zmq.SUB, "subscriber", endpoint, bind,
                                                {zmq.RCVHWM: ZMQ_HWM, zmq.LINGER: 0},
                                                [t.encode("utf-8") for t in topics])
        self.decoder = Decoder(f"zmq-sub {endpoint}", check_topic=True)

    def recv(self, timeout_s: float = 1.0) -> Envelope | None:
        """The next valid message, or None on timeout or when the next one is malformed or a duplicate."""
        got = self.recv_with_topic(timeout_s)
        return got[1] if got is not None else None

    def recv_with_topic(self, timeout_s: float = 1.0) -> tuple[str, Envelope] | None:
        """Like :meth:`recv` but also returns the topic frame: ``(topic, msg)``."""
        if not self._sock.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            return None
        frames = self._sock.recv_multipart(zmq.NOBLOCK)
        topic = frames[0].decode("utf-8", errors="replace")
        if len(frames) != 2:
            self.decoder.rejected["wrong number of frames"] += 1
            log.warning("%s: skipped message on %s: expected 2 frames [topic, message], got %d",
                        self.decoder.name, topic, len(frames))
            return None
        msg = self.decoder.decode(frames[1], origin=topic)
        return (topic, msg) if msg is not None else None

    def close(self) -> None:
        """Close the socket."""
        if not self._sock.closed:
            self._sock.close(linger=0)

    def __enter__(self) -> ZmqSubscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
