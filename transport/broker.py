"""An embedded MQTT broker (amqtt) for a single-machine install and for tests.

:class:`EmbeddedBroker` runs an amqtt broker in a background thread. It keeps its
session store across :meth:`~EmbeddedBroker.stop` / :meth:`~EmbeddedBroker.start`,
like mosquitto with ``persistence true``, and corrects amqtt 0.12 where it would
lose messages (see :class:`EmbeddedBroker`). amqtt is imported only when a broker
starts. No call here waits forever: every wait takes a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import cache

from ..errors import TransportError

log = logging.getLogger(__name__)


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
    """One persistent session as plain data: its subscriptions and queued messages."""

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
