"""Message transports: MQTT (fusion -> hub, node availability) and ZeroMQ (edge -> fusion).

Everything that crosses a process boundary goes through this module, encoded by
:mod:`storesense.contracts` and sent on the topic :func:`~storesense.contracts.topic_for`
gives, with the QoS and retain flag the contract table says.

MQTT
    :class:`MqttPublisher` and :class:`MqttSubscriber` wrap paho-mqtt 2.x clients
    (MQTT 3.1.1, persistent sessions). The publisher announces the node's
    availability (``online``/``offline``, retained; ``offline`` is also its last
    will) and lets paho queue QoS 1 messages while the broker is unreachable;
    :meth:`MqttPublisher.flush` waits for their PUBACKs. The subscriber decodes
    with a :class:`~storesense.contracts.Decoder` (malformed payloads are counted
    and logged with their topic, duplicates dropped) and runs the user's callback
    *before* paho acknowledges the message, so a message the callback has stored
    is never lost.

    :class:`EmbeddedBroker` runs an amqtt broker in a background thread for a
    single-machine install and for tests. It keeps its session store across
    :meth:`~EmbeddedBroker.stop` / :meth:`~EmbeddedBroker.start`, like mosquitto
    with ``persistence true``, and corrects amqtt 0.12 where it would lose
    messages (see :class:`EmbeddedBroker`).

ZeroMQ
    Edge nodes :class:`ZmqPublisher` connect to the fusion node's bound
    :class:`ZmqSubscriber`. Frames are ``[topic, encoded message]``. The
    publisher is an XPUB socket so :meth:`ZmqPublisher.wait_for_subscriber` can
    wait for the subscription to arrive instead of losing the first messages
    (ZeroMQ's "slow joiner").

No call here waits forever: every wait takes a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
import zmq
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ..contracts import Decoder, Envelope, availability_topic, encode, qos_for, retained, topic_for
from ..errors import TransportError

log = logging.getLogger(__name__)

__all__ = [
    "parse_mqtt_url",
    "EmbeddedBroker",
    "MqttPublisher",
    "MqttSubscriber",
    "ZmqPublisher",
    "ZmqSubscriber",
]

DEFAULT_MQTT_PORT = 1883
#: paho's reconnect back-off after a lost connection: from 0.2 s doubling up to 5 s.
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0
#: ZeroMQ high-water marks: messages queued per peer before ZeroMQ drops them.
ZMQ_HWM = 100_000

# --------------------------------------------------------------------------- URLs


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """Split ``mqtt://[user:pass@]host[:port]`` (or ``tcp://...``) into host, port, user, password.

    The port defaults to 1883. Raises :class:`TransportError` naming the URL when it
    is not of that form.
    """

    def bad(why: str) -> TransportError:
        return TransportError(f"invalid MQTT URL {_redact(url)!r}: {why} (expected mqtt://[user:pass@]host[:port])")

    if not isinstance(url, str) or not url.strip():
        raise TransportError(f"invalid MQTT URL {url!r}: expected mqtt://[user:pass@]host[:port]")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme not in ("mqtt", "tcp"):
        raise bad(f"unsupported scheme {parts.scheme or '(none)'!r}")
    if not parts.hostname:
        raise bad("no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("unexpected path or query")
    if port == 0:
        raise bad("port 0")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.hostname, port or DEFAULT_MQTT_PORT, user or None, password


def _redact(url: object) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    text = str(url)
    try:
        parts = urlsplit(text)
        if parts.password is not None:
            return text.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        pass
    return text


# --------------------------------------------------------------------------- embedded broker


@cache
def _amqtt_broker_classes():
    """Build the amqtt subclasses lazily, so importing this module does not import amqtt."""
    from amqtt.broker import Broker, RetainedApplicationMessage
    from amqtt.mqtt.constants import QOS_1
    from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
    from amqtt.session import OUTGOING

    class LosslessHandler(BrokerProtocolHandler):
        """amqtt's broker handler, keeping unacknowledged outgoing QoS 1 messages.

        amqtt 0.12 removes an outgoing QoS 1 message from ``session.inflight_out``
        when its PUBACK wait is cancelled (the connection dropped) or times out
        (5 s), so the message is lost although MQTT 3.1.1 [MQTT-4.4.0-1] requires
        it to be re-sent when the persistent session reconnects. Here it stays in
        ``inflight_out`` until its PUBACK arrives; amqtt re-sends everything in
        ``inflight_out`` (DUP set) when the session reconnects.
        """

        async def _handle_qos1_message_flow(self, app_message):
            if app_message.direction != OUTGOING or app_message.qos != QOS_1 or self.session is None:
                return await super()._handle_qos1_message_flow(app_message)
            session = self.session
            packet_id = app_message.packet_id
            session.inflight_out[packet_id] = app_message
            if self._reader_stopped.is_set() or self.writer is None or getattr(self.writer, "is_closed", False):
                return None  # the connection is already gone: keep it for the next one
            current = self._puback_waiters.get(packet_id)
            if current is not None and not current.done():
                # amqtt's reconnect retry can pick up a message that the broadcast loop is
                # already delivering on this connection; a second flow would orphan its waiter
                return None
            packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
            waiter = asyncio.get_running_loop().create_future()
            self._puback_waiters[packet_id] = waiter
            try:
                await self._send_packet(packet)
                app_message.publish_packet = packet
                app_message.puback_packet = await asyncio.wait_for(waiter, timeout=30)
                session.inflight_out.pop(packet_id, None)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the task itself is being cancelled (broker shutdown)
                # the connection dropped: keep the message for the session's next connection
            except Exception as exc:  # noqa: BLE001 - timeout or a broken connection
                log.debug("QoS 1 message %s to %s kept for redelivery: %r", packet_id, session.client_id, exc)
            finally:
                if self._puback_waiters.get(packet_id) is waiter:
                    del self._puback_waiters[packet_id]
            return None

        async def handle_puback(self, puback):
            packet_id = puback.variable_header.packet_id if puback.variable_header else None
            waiter = self._puback_waiters.get(packet_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(puback)
            elif self.session is not None:
                # a late PUBACK (after a timeout): the message is delivered after all
                self.session.inflight_out.pop(packet_id, None)

    class PersistentBroker(Broker):
        """amqtt's Broker that restores a saved session store before it listens."""

        def __init__(self, config, restore: _SessionStore | None):
            super().__init__(config)
            self._restore = restore

        async def _initialize_client_session(self, reader, writer, remote_address, remote_port):
            handler, session = await super()._initialize_client_session(reader, writer, remote_address, remote_port)
            # the handler amqtt built is fresh and unattached: use ours instead
            return LosslessHandler(self.plugins_manager), session

        async def _publish_retained_messages_for_subscription(self, subscription, session):
            # amqtt calls this on every connect for *every* filter anyone subscribed to,
            # so a client would get retained messages it never subscribed to; only
            # serve the filters this session really holds.
            subscribers = self._subscriptions.get(subscription[0], [])
            if any(s.client_id == session.client_id for s, _ in subscribers):
                await super()._publish_retained_messages_for_subscription(subscription, session)

        async def _start_listeners(self):
            if self._restore is not None:
                await self._restore_store(self._restore)
                self._restore = None
            await super()._start_listeners()

        async def _restore_store(self, store: _SessionStore) -> None:
            for topic, (data, qos) in store.retained.items():
                self._retained_messages[topic] = RetainedApplicationMessage(None, topic, data, qos)
            for client_id, saved in store.sessions.items():
                handler, session = self.create_offline_session(client_id)
                session.clean_session = False
                self._sessions[client_id] = (session, handler)
                for topic_filter, qos in saved.subscriptions:
                    await self.add_subscription((topic_filter, qos), session)
                for topic, data, qos in saved.queued:
                    session.retained_messages.put_nowait(RetainedApplicationMessage(None, topic, data, qos))
            for topic, data, qos, retain in store.pending:
                await self._broadcast_message(None, topic, data, qos)
                if retain:
                    await self.retain_message(None, topic, data, qos)
            log.debug(
                "embedded broker restored %d session(s), %d retained, %d pending message(s)",
                len(store.sessions), len(store.retained), len(store.pending),
            )

    return PersistentBroker


try:  # the plugin must be importable by dotted path, so it lives at module level
    from amqtt.plugins.base import BaseAuthPlugin as _BaseAuthPlugin
except ImportError:  # pragma: no cover - amqtt is a declared dependency
    _BaseAuthPlugin = object  # type: ignore[assignment,misc]


class _OpenAccessAuthPlugin(_BaseAuthPlugin):  # type: ignore[misc,valid-type]
    """amqtt auth plugin: accept every client without marking its session anonymous.

    amqtt's own AnonymousAuthPlugin flags every session as anonymous when anonymous
    access is allowed, and amqtt then neither keeps a disconnected session nor
    queues QoS 1 messages for it, which defeats ``clean_session=False``.
    """

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session) -> bool:  # noqa: D102 - amqtt hook
        return True


@dataclass
class _SavedSession:
    subscriptions: list[tuple[str, int]] = field(default_factory=list)
    queued: list[tuple[str, bytes, int]] = field(default_factory=list)


@dataclass
class _SessionStore:
    """What a broker keeps across a restart, as plain data (no asyncio objects)."""

    sessions: dict[str, _SavedSession] = field(default_factory=dict)
    retained: dict[str, tuple[bytes, int | None]] = field(default_factory=dict)
    pending: list[tuple[str, bytes, int | None, bool]] = field(default_factory=list)


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker (amqtt) on loopback, in a background thread.

    ``start()`` binds (port 0 picks a free port; the real one is then in
    :attr:`port`), ``stop()`` shuts it down, and it is a context manager.
    Anonymous clients are accepted.

    Persistent sessions work: a client connecting with ``clean_session=False``
    keeps its subscriptions, and QoS 1 messages for it are queued while it is
    away. The session store (persistent sessions with their subscriptions and
    queued or unacknowledged messages, retained messages, messages received but
    not yet routed) survives ``stop()`` then ``start()`` of the same instance,
    which is how a broker restart is simulated; a new instance starts empty.
    ``stop()`` drops the connections without publishing the clients' wills.

    amqtt 0.12 is corrected where it would lose or misroute messages:

    * with anonymous access allowed it marks every session anonymous and then
      keeps no persistent session; here clients are accepted without that flag;
    * it forgets an outgoing QoS 1 message whose PUBACK wait ends with the
      connection (or after 5 s); here it stays in flight until acknowledged and
      is re-sent when the session reconnects;
    * its reconnect retry could start a second delivery of a message already in
      flight, orphaning the first one's PUBACK wait; that is skipped;
    * on connect it sends a client the retained messages of every filter any
      client subscribed to; here only those of its own subscriptions.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker = None
        self._store: _SessionStore | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT`` of this broker."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._broker is not None

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        """Bind and start serving; raises :class:`TransportError` if it cannot. Idempotent."""
        with self._lock:
            if self._broker is not None:
                return self
            _quiet_amqtt_logs()
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=_run_loop, args=(loop,), name="storesense-mqtt-broker", daemon=True)
            thread.start()
            future = asyncio.run_coroutine_threadsafe(self._start_async(), loop)
            try:
                self._broker = future.result(timeout)
            except BaseException as exc:
                future.cancel()
                _stop_loop(loop, thread, timeout=5.0)
                where = f"{self.host}:{self.port}"
                if isinstance(exc, TimeoutError):
                    raise TransportError(f"embedded MQTT broker on {where} did not start within {timeout:g} s") from None
                cause = exc.__cause__ or exc
                raise TransportError(f"cannot start embedded MQTT broker on {where}: {cause}") from exc
            self._loop, self._thread = loop, thread
            log.debug("embedded MQTT broker listening on %s", self.url)
            return self

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect every client and shut down, keeping the session store for a later ``start()``."""
        with self._lock:
            if self._broker is None:
                return
            loop, thread = self._loop, self._thread
            future = asyncio.run_coroutine_threadsafe(self._stop_async(), loop)
            try:
                future.result(timeout)
            except BaseException as exc:  # noqa: BLE001 - still tear the loop down
                future.cancel()
                log.warning("embedded MQTT broker on port %s did not stop cleanly: %r", self.port, exc)
            finally:
                self._broker = None
                self._loop = self._thread = None
                _stop_loop(loop, thread, timeout=5.0)

    def restart(self) -> None:
        """``stop()`` then ``start()`` on the same port, keeping persistent sessions."""
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- on the broker's loop

    async def _start_async(self):
        broker_cls = _amqtt_broker_classes()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {f"{__name__}._OpenAccessAuthPlugin": {}},
        }
        broker = broker_cls(config, self._store)
        await broker.start()
        if self.port == 0:
            server = broker._servers["default"].instance
            self.port = server.sockets[0].getsockname()[1]
        return broker

    async def _stop_async(self) -> None:
        broker = self._broker
        # 1. stop accepting connections
        for server in broker._servers.values():
            if server.instance is not None:
                server.instance.close()
        # 2. drop every connection, as a broker going down does; a broker stopping is
        #    not its clients dying, so their wills are not published
        for session, handler in list(broker._sessions.values()):
            session.will_flag = False
            adapter = getattr(handler, "writer", None)
            writer = getattr(adapter, "_writer", None)
            if writer is not None:
                adapter.is_closed = True  # amqtt's own flag: later writes are dropped quietly
                writer.transport.abort()
        # 3. let disconnections and routing of already-acknowledged messages settle
        deadline = time.monotonic() + 5.0
        settled = 0
        while settled < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            quiet = (
                broker._broadcast_queue.empty()
                and all(task.done() for task in broker._tasks_queue)
                and not any(s.transitions.state == "connected" for s, _ in broker._sessions.values())
            )
            settled = settled + 1 if quiet else 0
        if settled < 2:
            log.warning(
                "embedded MQTT broker: clients still busy after 5 s (connected: %s, unrouted: %d, tasks: %d)",
                [cid for cid, (s, _) in broker._sessions.items() if s.transitions.state == "connected"],
                broker._broadcast_queue.qsize(), sum(not t.done() for t in broker._tasks_queue),
            )
        # 4. save what a persistent broker keeps, then shut down
        self._store = _save_store(broker)
        await broker.shutdown()


def _save_store(broker) -> _SessionStore:
    """Copy an amqtt broker's durable state into plain data."""
    store = _SessionStore()
    for topic, msg in broker._retained_messages.items():
        if msg.data:
            store.retained[topic] = (bytes(msg.data), msg.qos)
    for client_id, (session, _handler) in list(broker._sessions.items()):
        queue = session.delivered_message_queue  # acknowledged to the publisher, not yet routed
        while not queue.empty():
            msg = queue.get_nowait()
            store.pending.append((msg.topic, bytes(msg.data), None, bool(msg.retain)))
        if session.clean_session is not False or session.is_anonymous or not client_id:
            continue
        saved = _SavedSession()
        for topic_filter, subscribers in broker._subscriptions.items():
            saved.subscriptions += [(topic_filter, qos) for s, qos in subscribers if s.client_id == client_id]
        for msg in session.inflight_out.values():  # sent, never acknowledged
            if msg.qos:
                saved.queued.append((msg.topic, bytes(msg.data), msg.qos))
        while not session.retained_messages.empty():  # queued while it was away
            msg = session.retained_messages.get_nowait()
            saved.queued.append((msg.topic, bytes(msg.data), msg.qos))
        store.sessions[client_id] = saved
    queue = broker._broadcast_queue
    while not queue.empty():
        item = queue.get_nowait()
        if item.get("topic") and item.get("data") is not None:
            store.pending.append((item["topic"], bytes(item["data"]), item.get("qos"), False))
    return store


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Thread body: run ``loop`` until stopped, then cancel what is left and close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float) -> None:
    """Stop ``loop`` from another thread and wait up to ``timeout`` s for its thread."""
    try:
        loop.call_soon_threadsafe(loop.stop)
    except RuntimeError:  # already closed
        pass
    thread.join(timeout)
    if thread.is_alive():
        log.warning("embedded MQTT broker thread did not finish within %g s", timeout)


def _quiet_amqtt_logs() -> None:
    """amqtt (and its state machine library) log every connection at INFO."""
    for name in ("amqtt", "transitions"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


# --------------------------------------------------------------------------- MQTT clients


class _PahoNoiseFilter(logging.Filter):
    """Drop paho 2.2's spurious ERROR "Client is not connected" logged by a normal disconnect."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger(f"{__name__}.paho")
_paho_log.addFilter(_PahoNoiseFilter())


class _MqttClient:
    """Shared connect/close logic of the paho clients."""

    def __init__(self, url: str, client_id: str, clean_session: bool, keepalive: int):
        self.url = url
        self.host, self.port, user, password = parse_mqtt_url(url)
        self.client_id = client_id
        self.keepalive = keepalive
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        if user is not None:
            client.username_pw_set(user, password)
        client.max_queued_messages_set(0)  # unlimited: nothing is refused while the broker is away
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)  # type: ignore[arg-type]
        client.suppress_exceptions = True  # a failing callback must not kill the network thread
        client.enable_logger(_paho_log)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._connack = threading.Event()
        self._refused: str | None = None
        self._started = False
        self._closed = False
        self.connected = False
        self.connects = 0

    def connect(self, timeout: float = 10.0):
        """Connect, start the network thread and wait for the broker's CONNACK.

        Keeps trying until ``timeout`` (the broker may still be starting); raises
        :class:`TransportError` naming the URL if it cannot connect. After this,
        a lost connection is re-established automatically.
        """
        if self._closed:
            raise TransportError(f"MQTT client {self.client_id} is closed")
        if self._started:
            return self
        deadline = time.monotonic() + timeout
        self._client.connect_timeout = max(0.5, min(timeout, 5.0))
        while True:
            try:
                self._client.connect(self.host, self.port, keepalive=self.keepalive)
                break
            except (OSError, ValueError) as exc:
                if time.monotonic() + 0.2 >= deadline:
                    raise TransportError(f"cannot reach MQTT broker at {_redact(self.url)}: {exc}") from None
                time.sleep(0.2)
        self._client.loop_start()
        self._started = True
        if not self._connack.wait(max(0.0, deadline - time.monotonic())) or self._refused:
            reason = f"refused: {self._refused}" if self._refused else f"no CONNACK within {timeout:g} s"
            self._stop()
            raise TransportError(f"cannot reach MQTT broker at {_redact(self.url)}: {reason}")
        self._after_connect(deadline)
        return self

    def _after_connect(self, deadline: float) -> None:
        """Hook for subclasses: more waiting once CONNACK arrived."""

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            log.warning("%s: MQTT broker %s refused the connection: %s", self.client_id, _redact(self.url), reason_code)
        else:
            self._refused = None
            self.connected = True
            self.connects += 1
            log.debug("%s: connected to %s (session present: %s)", self.client_id, _redact(self.url),
                      flags.session_present)
            try:
                self._connected()
            except Exception:  # noqa: BLE001 - never break the network thread
                log.exception("%s: error after (re)connect", self.client_id)
        self._connack.set()

    def _connected(self) -> None:
        """Hook for subclasses: run on the network thread after every successful (re)connect."""

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self.connected
        self.connected = False
        if was and not self._closed:
            log.info("%s: lost connection to %s (%s); reconnecting", self.client_id, _redact(self.url), reason_code)

    def _stop(self) -> None:
        try:
            self._client.disconnect()
        finally:
            if self._started:
                self._client.loop_stop()
                self._started = False
            self.connected = False


class MqttPublisher(_MqttClient):
    """Publishes storesense messages for one node over MQTT.

    Uses a persistent session (``clean_session=False``). The node's availability
    topic gets ``online`` (retained) on every (re)connect and ``offline``
    (retained) on :meth:`close` or, as the last will, when the connection dies.
    QoS 1 messages published while the broker is unreachable are queued by paho
    and sent when it reconnects; :meth:`flush` waits for their PUBACKs.

    Counters: ``published`` (messages given to :meth:`publish`), ``acked``
    (QoS 1 messages the broker has acknowledged), :attr:`pending` (QoS 1 not yet
    acknowledged) and ``connects`` (successful connections, reconnects included).
    """

    def __init__(
        self,
        url: str,
        *,
        store: str,
        node: str,
        kind: str,
        client_id: str | None = None,
        keepalive: int = 30,
    ):
        super().__init__(url, client_id or f"storesense-{store}-{node}", clean_session=False, keepalive=keepalive)
        self.store = store
        self.node = node
        self.kind = kind
        self.availability_topic = availability_topic(store, node)
        self._client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        self._client.on_publish = self._on_publish
        self._cond = threading.Condition()
        self._unacked: dict[int, tuple[int, bool]] = {}  # mid -> (qos, counted)
        self._early: set[int] = set()  # mids whose on_publish came before publish() returned
        self.published = 0
        self.acked = 0

    def _connected(self) -> None:
        self._send(self.availability_topic, b"online", 1, True, counted=False)

    def publish(self, msg: Envelope) -> None:
        """Publish ``msg`` on its topic with its QoS and retain flag (queued while disconnected)."""
        if self._closed:
            raise TransportError(f"MQTT publisher {self.client_id} is closed")
        self._send(topic_for(self.store, msg), encode(msg), qos_for(msg), retained(msg), counted=True)

    def _send(self, topic: str, payload: bytes, qos: int, retain: bool, *, counted: bool) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise TransportError(f"MQTT publisher {self.client_id}: outgoing queue full, {topic} not queued")
        with self._cond:
            if counted:
                self.published += 1
            if qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._early.discard(info.mid)  # not connected: paho drops QoS 0
            elif info.mid in self._early:
                self._early.discard(info.mid)
                if qos and counted:
                    self.acked += 1
                self._cond.notify_all()
            else:
                self._unacked[info.mid] = (qos, counted)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # Called by paho when a QoS 1 PUBACK arrives (QoS 0: when the packet is written).
        with self._cond:
            entry = self._unacked.pop(mid, None)
            if entry is None:
                self._early.add(mid)
                return
            if entry[0] and entry[1]:
                self.acked += 1
            self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every QoS 1 message published so far is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            waiting = {mid for mid, (qos, _) in self._unacked.items() if qos > 0}
            while True:
                waiting = {mid for mid in waiting if mid in self._unacked}
                if not waiting:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def close(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), flush for up to ``timeout`` s, disconnect, stop the loop."""
        if self._closed:
            return
        if self._started:
            if self.connected:
                self._send(self.availability_topic, b"offline", 1, True, counted=False)
            if not self.flush(timeout):
                log.warning("%s: closing with %d unacknowledged message(s)", self.client_id, self.pending)
        self._closed = True
        self._stop()

    @property
    def pending(self) -> int:
        """QoS 1 messages published but not yet acknowledged."""
        with self._cond:
            return sum(1 for qos, _ in self._unacked.values() if qos > 0)

    def __enter__(self) -> MqttPublisher:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()


class MqttSubscriber(_MqttClient):
    """Receives storesense messages over MQTT and hands valid ones to a callback.

    Subscribes with QoS 1 to ``topics`` (default ``storesense/<store>/#``) and
    re-subscribes after every reconnect. Payloads are decoded by :attr:`decoder`
    (a :class:`~storesense.contracts.Decoder`): malformed ones are counted and
    logged with their topic, duplicates (same ``event_id``) dropped. Valid
    messages go to ``on_message(msg, topic)``; availability topics
    (``.../nodes/<node>/availability``, plain ``online``/``offline``) go to
    ``on_availability(node, state)`` instead. Empty payloads (a cleared retained
    message) are ignored.

    The callback runs on paho's network thread *before* paho sends the PUBACK,
    so with a persistent session (``clean_session=False``, the default) a message
    is redelivered if the subscriber dies before its callback returned. An
    exception from a callback is logged and counted in ``callback_errors``; the
    message then counts as handled.
    """

    def __init__(
        self,
        url: str,
        *,
        store: str,
        client_id: str,
        on_message: Callable[[Envelope, str], None],
        topics: Iterable[str] | None = None,
        on_availability: Callable[[str, str], None] | None = None,
        clean_session: bool = False,
        keepalive: int = 30,
    ):
        super().__init__(url, client_id, clean_session=clean_session, keepalive=keepalive)
        self.store = store
        if topics is None:
            self.topics = [f"storesense/{store}/#"]
        else:
            self.topics = list(dict.fromkeys(topics))
            if on_availability is not None:
                wanted = availability_topic(store, "+")
                if wanted not in self.topics:
                    self.topics.append(wanted)
        if not self.topics:
            raise TransportError(f"MQTT subscriber {client_id}: no topics to subscribe to")
        self.on_message = on_message
        self.on_availability = on_availability
        self.decoder = Decoder(client_id)
        self.callback_errors = 0
        self._suback = threading.Event()
        self._sub_refused: str | None = None
        self._client.on_message = self._on_mqtt_message
        self._client.on_subscribe = self._on_subscribe

    def _connected(self) -> None:
        self._client.subscribe([(t, 1) for t in self.topics])

    def _after_connect(self, deadline: float) -> None:
        if not self._suback.wait(max(0.0, deadline - time.monotonic())) or self._sub_refused:
            why = self._sub_refused or "no SUBACK in time"
            self._stop()
            raise TransportError(f"MQTT broker at {_redact(self.url)} did not accept subscription to {self.topics}: {why}")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        self._sub_refused = ", ".join(refused) or None
        if refused:
            log.error("%s: broker refused subscription to %s: %s", self.client_id, self.topics, self._sub_refused)
        self._suback.set()

    def _on_mqtt_message(self, client, userdata, message) -> None:
        # Runs on paho's network thread; paho sends the PUBACK after this returns.
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.decoder.rejected["topic not UTF-8"] += 1
            log.warning("%s: skipped message on a topic that is not UTF-8", self.client_id)
            return
        try:
            payload = message.payload
            if not payload:
                log.debug("%s: ignored empty payload on %s", self.client_id, topic)
                return
            node = _availability_node(topic)
            if node is not None:
                self._handle_availability(node, payload, topic)
                return
            msg = self.decoder.decode(payload, origin=topic)
            if msg is None:
                return
            self.on_message(msg, topic)
        except Exception:  # noqa: BLE001 - a user callback must not break the network thread
            self.callback_errors += 1
            log.exception("%s: message handler failed on %s", self.client_id, topic)

    def _handle_availability(self, node: str, payload: bytes, topic: str) -> None:
        state = payload.decode("utf-8", errors="replace").strip()
        if state not in ("online", "offline"):
            self.decoder.rejected["invalid availability"] += 1
            log.warning("%s: skipped message on %s: availability must be online or offline, got %r",
                        self.client_id, topic, state[:40])
            return
        if self.on_availability is not None:
            self.on_availability(node, state)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        if self._closed:
            return
        self._closed = True
        self._stop()

    def __enter__(self) -> MqttSubscriber:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()


def _availability_node(topic: str) -> str | None:
    """The node id if ``topic`` is an availability topic, else None."""
    parts = topic.split("/")
    if len(parts) == 5 and topic == availability_topic(parts[1], parts[3]):
        return parts[3]
    return None


# --------------------------------------------------------------------------- ZeroMQ


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
        self.decoder = Decoder(f"zmq-sub {endpoint}")

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
