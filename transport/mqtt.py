"""MQTT clients (fusion -> hub, node availability), on paho-mqtt 2.x.

:class:`MqttPublisher` and :class:`MqttSubscriber` speak MQTT 3.1.1 with
persistent sessions. The publisher announces the node's availability
(``online``/``offline``, retained; ``offline`` is also its last will) and lets
paho queue QoS 1 messages while the broker is unreachable; :meth:`MqttPublisher.flush`
waits for their PUBACKs. The subscriber decodes with a
:class:`~storesense.contracts.Decoder` (malformed payloads are counted and logged
with their topic, duplicates dropped) and runs the user's callback *before* paho
acknowledges the message, so a message the callback has stored is never lost.

:func:`parse_mqtt_url` reads the broker URLs they take. No call here waits
forever: every wait takes a timeout.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from ..contracts import Decoder, Envelope, availability_topic, encode, qos_for, retained, topic_for
from ..errors import TransportError

log = logging.getLogger(__name__)

DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883
#: paho's reconnect back-off after a lost connection: from 0.2 s doubling up to 5 s.
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 5.0

# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and how to reach a broker, from :func:`parse_mqtt_endpoint`.

    ``tls`` is set by ``mqtts://``; ``ca``, ``cert`` and ``key`` are file paths (PEM) of the CA that
    signed the broker's certificate and of this node's own client certificate and key. The password
    is never part of the object's text (``repr`` hides it).
    """

    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


#: query parameters an MQTT URL may carry (all file paths)
URL_OPTIONS = ("ca", "cert", "key", "password_file")
#: environment variable with the MQTT password when neither the URL nor a password file gives one
PASSWORD_ENV = "STORESENSE_MQTT_PASSWORD"

_URL_FORM = "mqtt[s]://[user[:pass]@]host[:port][?ca=FILE&cert=FILE&key=FILE&password_file=FILE]"


def parse_mqtt_endpoint(url: str) -> MqttEndpoint:
    """Read ``mqtt://`` / ``tcp://`` (port 1883) or ``mqtts://`` / ``ssl://`` (TLS, port 8883) URLs.

    ``?ca=`` ``&cert=`` ``&key=`` name the TLS files, ``&password_file=`` a file holding the
    password (first line); with neither a password in the URL nor a file, a user's password comes
    from the environment variable :data:`PASSWORD_ENV`. Raises :class:`TransportError` naming the
    URL (password hidden) when it is not of that form or a named file cannot be read.
    """

    def bad(why: str) -> TransportError:
        return TransportError(f"invalid MQTT URL {_redact(url)!r}: {why} (expected {_URL_FORM})")

    if not isinstance(url, str) or not url.strip():
        raise TransportError(f"invalid MQTT URL {url!r}: expected {_URL_FORM}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        raise bad(f"unsupported scheme {parts.scheme or '(none)'!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise bad("no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise bad("unexpected path")
    if port == 0:
        raise bad("port 0")
    try:
        query = parse_qs(parts.query, keep_blank_values=False, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("unreadable query") from None
    unknown = sorted(set(query) - set(URL_OPTIONS))
    if unknown:
        raise bad(f"unknown option {unknown[0]!r} (known: {', '.join(URL_OPTIONS)})")
    options = {k: v[-1] for k, v in query.items()}
    if not tls and any(k in options for k in ("ca", "cert", "key")):
        raise bad("ca, cert and key need mqtts://")
    if ("cert" in options) != ("key" in options):
        raise bad("cert and key go together")
    for name in ("ca", "cert", "key"):
        if name in options and not Path(options[name]).is_file():
            raise bad(f"{name} file {options[name]} does not exist")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and "password_file" in options:
        try:
            password = Path(options["password_file"]).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            raise bad(f"cannot read password_file {options['password_file']}: {exc}") from None
    if password is None and user:
        password = os.environ.get(PASSWORD_ENV) or None
    return MqttEndpoint(parts.hostname, port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT), user or None,
                        password, tls, options.get("ca"), options.get("cert"), options.get("key"))


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """Host, port, user and password of an MQTT URL (see :func:`parse_mqtt_endpoint`)."""
    ep = parse_mqtt_endpoint(url)
    return ep.host, ep.port, ep.user, ep.password


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
        self.endpoint = parse_mqtt_endpoint(url)
        self.host, self.port, user, password = (self.endpoint.host, self.endpoint.port, self.endpoint.user,
                                                self.endpoint.password)
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
        if self.endpoint.tls:
            try:  # the broker's certificate is checked against the CA and its host name
                client.tls_set(ca_certs=self.endpoint.ca, certfile=self.endpoint.cert, keyfile=self.endpoint.key,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise TransportError(f"MQTT URL {_redact(url)}: cannot load TLS files: {exc}") from None
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

    Manual acknowledgement: given ``on_delivery(msg, topic, ack)`` (instead of
    ``on_message``), every delivery goes there (``msg`` is None for one the
    subscriber handled itself: malformed, duplicate, availability, empty), and
    its PUBACK is sent only when the receiver calls ``ack()``, typically after
    the commit that holds it (paho's ``manual_ack``). An ``ack()`` from before a
    reconnect is not sent on the new connection: the broker redelivers that
    message instead.
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
        on_delivery: Callable[[Envelope | None, str, Callable[[], None]], None] | None = None,
    ):
        super().__init__(url, client_id, clean_session=clean_session, keepalive=keepalive)
        self.on_delivery = on_delivery
        self._client.manual_ack_set(on_delivery is not None)
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
        self.decoder = Decoder(client_id, check_topic=True)
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
        # Runs on paho's network thread; paho sends the PUBACK after this returns,
        # or, with on_delivery, when the receiver calls the ack it is handed.
        msg, topic = self._decode_message(message)
        try:
            if self.on_delivery is not None:
                self.on_delivery(msg, topic, self._ack_for(message))
            elif msg is not None:
                self.on_message(msg, topic)
        except Exception:  # noqa: BLE001 - a user callback must not break the network thread
            self.callback_errors += 1
            log.exception("%s: message handler failed on %s", self.client_id, topic)

    def _ack_for(self, message) -> Callable[[], None]:
        """The acknowledgement of one delivery, sent only on the connection it came on."""
        mid, qos, connection, client = message.mid, message.qos, self.connects, self._client

        def ack() -> None:
            if qos and self.connects == connection and self.connected:
                client.ack(mid, qos)

        return ack

    def _decode_message(self, message) -> tuple[Envelope | None, str]:
        """The message to hand on (None: skipped or handled here) and its topic."""
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.decoder.rejected["topic not UTF-8"] += 1
            log.warning("%s: skipped message on a topic that is not UTF-8", self.client_id)
            return None, ""
        try:
            payload = message.payload
            if not payload:
                log.debug("%s: ignored empty payload on %s", self.client_id, topic)
                return None, topic
            node = _availability_node(topic)
            if node is not None:
                self._handle_availability(node, payload, topic)
                return None, topic
            return self.decoder.decode(payload, origin=topic), topic
        except Exception:  # noqa: BLE001 - a user callback must not break the network thread
            self.callback_errors += 1
            log.exception("%s: message handler failed on %s", self.client_id, topic)
            return None, topic

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
