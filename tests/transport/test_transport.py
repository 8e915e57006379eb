"""Transport tests against real brokers and sockets over loopback TCP."""

from __future__ import annotations

import logging
import socket
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from storesense.contracts import (
    CartState,
    HandShelfInteraction,
    Stamper,
    WeightChange,
    availability_topic,
    encode,
    topic_for,
)
from storesense.errors import TransportError
from storesense.transport import (
    EmbeddedBroker,
    MqttPublisher,
    MqttSubscriber,
    ZmqPublisher,
    ZmqSubscriber,
    parse_mqtt_url,
)

STORE = "teststore"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` s pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class Inbox:
    """Thread-safe collector for subscriber callbacks."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []  # (msg, topic)
        self.availability = []  # (node, state)

    def on_message(self, msg, topic):
        with self.lock:
            self.messages.append((msg, topic))

    def on_availability(self, node, state):
        with self.lock:
            self.availability.append((node, state))

    def by_id(self):
        with self.lock:
            return {m.event_id: (m, t) for m, t in self.messages}

    def ids(self):
        with self.lock:
            return [m.event_id for m, _ in self.messages]

    def states(self, node):
        with self.lock:
            return [s for n, s in self.availability if n == node]


@pytest.fixture
def clients():
    """Closes every MQTT client a test opened, even when it fails."""
    opened = []
    yield opened
    for client in reversed(opened):
        client.close()


def subscriber(clients, url, client_id, inbox, **kw):
    sub = MqttSubscriber(url, store=STORE, client_id=client_id, on_message=inbox.on_message,
                         on_availability=inbox.on_availability, **kw)
    clients.append(sub)
    return sub.connect(timeout=5)


def publisher(clients, url, node="cam1", **kw):
    pub = MqttPublisher(url, store=STORE, node=node, kind="camera", **kw)
    clients.append(pub)
    return pub.connect(timeout=5)


def raw_publish(url, items):
    """Publish raw (topic, payload) pairs at QoS 1 with a bare paho client."""
    host, port, _, _ = parse_mqtt_url(url)
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="raw-publisher")
    client.connect(host, port)
    client.loop_start()
    try:
        for topic, payload in items:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=5)
    finally:
        client.disconnect()
        client.loop_stop()


def weight_changes(n, source="shelf-a"):
    stamper = Stamper(source, run_id="restart-test")
    return [
        stamper.make(WeightChange, 1000.0 + i, sensor="ws-a1", shelf="shelf-a", plate="a1",
                     delta_g=-410.0, total_g=2000.0 - i, started_ts=999.5 + i)
        for i in range(n)
    ]


# --------------------------------------------------------------------------- MQTT


def test_every_message_type_round_trips_over_mqtt(broker, clients, all_message_samples):
    inbox = Inbox()
    subscriber(clients, broker.url, "roundtrip-sub", inbox)
    pub = publisher(clients, broker.url)
    for msg in all_message_samples:
        pub.publish(msg)
    assert pub.flush(timeout=5)
    assert pub.published == len(all_message_samples)
    assert wait_until(lambda: len(inbox.messages) >= len(all_message_samples))

    received = inbox.by_id()
    for msg in all_message_samples:
        got, topic = received[msg.event_id]
        assert got == msg
        assert type(got) is type(msg)
        assert topic == topic_for(STORE, msg)
    assert wait_until(lambda: "online" in inbox.states("cam1"))

    # the retained cart state reaches a subscriber that connects afterwards
    late = Inbox()
    subscriber(clients, broker.url, "late-sub", late, clean_session=True)
    cart_state = next(m for m in all_message_samples if isinstance(m, CartState))
    assert wait_until(lambda: cart_state.event_id in late.by_id())
    got, topic = late.by_id()[cart_state.event_id]
    assert got == cart_state
    assert topic == topic_for(STORE, cart_state)
    assert wait_until(lambda: late.states("cam1")[-1:] == ["online"])


def test_malformed_mqtt_payloads_are_counted_logged_and_skipped(broker, clients, caplog):
    caplog.set_level(logging.WARNING)
    inbox = Inbox()
    sub = subscriber(clients, broker.url, "malformed-sub", inbox)
    good = weight_changes(1)[0]
    bad_field = encode(good).replace(b'"plate":"a1"', b'"plate":42')
    bad = [
        (f"storesense/{STORE}/edge/cam1/person", b"\x00\xffnot json at all"),
        (f"storesense/{STORE}/edge/cam1/interaction", b'{"v": 1, "type": "teleport", "event_id": "x"}'),
        (f"storesense/{STORE}/edge/shelf-a/weight", bad_field),
    ]
    raw_publish(broker.url, bad)
    pub = publisher(clients, broker.url, node="shelf-a")
    pub.publish(good)

    assert wait_until(lambda: good.event_id in inbox.by_id() and sub.decoder.rejected_total == 3)
    assert inbox.ids() == [good.event_id]
    assert sub.decoder.rejected_total == 3
    assert sub.decoder.rejected["not UTF-8 text"] == 1
    assert sub.decoder.rejected["unknown message type 'teleport'"] == 1
    assert sub.decoder.rejected["invalid weight_change"] == 1
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    for topic, _ in bad:
        assert f"skipped message on {topic}" in logged
    assert "plate" in logged


def test_subscriber_receives_only_its_topics(broker, clients, all_message_samples):
    everything = Inbox()
    subscriber(clients, broker.url, "wildcard-sub", everything)  # someone else holds storesense/<store>/#
    pub = publisher(clients, broker.url, node="fusion")
    cart_state = next(m for m in all_message_samples if isinstance(m, CartState))
    receipt = next(m for m in all_message_samples if m.type == "receipt")
    pub.publish(cart_state)  # retained
    assert pub.flush(timeout=5)
    receipts = Inbox()
    subscriber(clients, broker.url, "receipts-sub", receipts, topics=[f"storesense/{STORE}/receipts/#"],
               clean_session=True)
    pub.publish(receipt)
    assert pub.flush(timeout=5)
    assert wait_until(lambda: receipt.event_id in receipts.by_id() and receipt.event_id in everything.by_id())
    time.sleep(0.1)
    assert receipts.ids() == [receipt.event_id]  # not the retained cart state of another filter


def test_duplicate_event_reaches_callback_once(broker, clients):
    inbox = Inbox()
    sub = subscriber(clients, broker.url, "dup-sub", inbox)
    pub = publisher(clients, broker.url, node="shelf-a")
    first, second = weight_changes(2)
    pub.publish(first)
    pub.publish(first)  # the same event again, e.g. a redelivery
    pub.publish(second)
    assert pub.flush(timeout=5)
    assert wait_until(lambda: second.event_id in inbox.by_id() and sub.decoder.duplicates == 1)
    assert inbox.ids() == [first.event_id, second.event_id]


def test_callback_exception_is_logged_and_counted(broker, clients, caplog):
    caplog.set_level(logging.ERROR)
    seen = []

    def fragile(msg, topic):
        seen.append(msg.event_id)
        if len(seen) == 1:
            raise RuntimeError("disk full")

    sub = MqttSubscriber(broker.url, store=STORE, client_id="fragile-sub", on_message=fragile)
    clients.append(sub)
    sub.connect(timeout=5)
    pub = publisher(clients, broker.url, node="shelf-a")
    a, b = weight_changes(2)
    pub.publish(a)
    pub.publish(b)
    assert wait_until(lambda: len(seen) == 2)
    assert sub.callback_errors == 1
    assert "disk full" in caplog.text and topic_for(STORE, a) in caplog.text


def _kill_without_disconnect(pub: MqttPublisher) -> None:
    """Simulate a crashed node: stop paho's thread and close its socket, no DISCONNECT sent."""
    client = pub._client
    client.loop_stop()
    sock = client.socket()
    if sock is not None:
        sock.close()
    pub._started = False  # nothing left for close() to stop
    pub._closed = True


def test_last_will_publishes_offline_when_connection_dies(broker, clients):
    inbox = Inbox()
    subscriber(clients, broker.url, "will-sub", inbox)
    pub = publisher(clients, broker.url, node="cam9", client_id="will-pub")
    assert wait_until(lambda: inbox.states("cam9")[-1:] == ["online"])
    _kill_without_disconnect(pub)
    assert wait_until(lambda: inbox.states("cam9")[-1:] == ["offline"])


def test_close_publishes_offline(broker, clients):
    inbox = Inbox()
    subscriber(clients, broker.url, "close-sub", inbox)
    pub = publisher(clients, broker.url, node="cam8")
    assert wait_until(lambda: inbox.states("cam8")[-1:] == ["online"])
    pub.close()
    assert wait_until(lambda: inbox.states("cam8")[-1:] == ["offline"])


def test_broker_restart_mid_stream_loses_no_qos1_message(broker, clients):
    inbox = Inbox()

    def store(msg, topic):  # a consumer that takes a moment per message keeps more of them in flight
        time.sleep(0.001)
        inbox.on_message(msg, topic)

    sub = MqttSubscriber(broker.url, store=STORE, client_id="restart-sub", on_message=store)
    clients.append(sub)
    sub.connect(timeout=5)
    pub = publisher(clients, broker.url, node="shelf-a", client_id="restart-pub")
    messages = weight_changes(300)
    assert all(m.type == "weight_change" for m in messages)  # QoS 1 per the contract table

    def stream():
        for msg in messages:
            pub.publish(msg)
            time.sleep(0.002)

    streamer = threading.Thread(target=stream)
    streamer.start()
    assert wait_until(lambda: pub.published >= 100, timeout=5)
    broker.restart()
    streamer.join(timeout=10)
    assert pub.published == 300

    assert pub.flush(timeout=20), f"{pub.pending} message(s) never acknowledged"
    assert pub.acked == 300
    sent = [m.event_id for m in messages]
    assert wait_until(lambda: set(inbox.ids()) >= set(sent), timeout=20), (
        f"missing {len(set(sent) - set(inbox.ids()))} of 300 after the restart"
    )
    time.sleep(0.2)  # let any redelivered duplicates arrive
    assert sorted(inbox.ids()) == sorted(sent)  # exactly once at the callback
    assert sub.connects >= 2 and pub.connects >= 2  # the restart really cut both connections
    assert sub.decoder.rejected_total == 0


def test_parse_mqtt_url():
    assert parse_mqtt_url("mqtt://127.0.0.1:1884") == ("127.0.0.1", 1884, None, None)
    assert parse_mqtt_url("mqtt://broker.local") == ("broker.local", 1883, None, None)
    assert parse_mqtt_url("tcp://hub:2000") == ("hub", 2000, None, None)
    assert parse_mqtt_url("mqtt://ann:s%40cret@hub:1883") == ("hub", 1883, "ann", "s@cret")
    for bad in ["", "http://hub:1883", "hub:1883", "mqtt://", "mqtt://hub:99999", "mqtt://hub:abc",
                "mqtt://hub:1883/some/path"]:
        with pytest.raises(TransportError) as err:
            parse_mqtt_url(bad)
        assert "invalid MQTT URL" in str(err.value)
        assert bad in str(err.value)
    with pytest.raises(TransportError) as err:
        parse_mqtt_url("mqtt://ann:topsecret@hub:x")
    assert "topsecret" not in str(err.value)


@pytest.mark.parametrize("kind", ["publisher", "subscriber"])
def test_connect_to_closed_port_raises_transport_error(kind):
    url = f"mqtt://127.0.0.1:{free_port()}"
    if kind == "publisher":
        client = MqttPublisher(url, store=STORE, node="cam1", kind="camera")
    else:
        client = MqttSubscriber(url, store=STORE, client_id="nobody", on_message=lambda m, t: None)
    started = time.monotonic()
    with pytest.raises(TransportError) as err:
        client.connect(timeout=2)
    assert time.monotonic() - started < 4
    assert f"cannot reach MQTT broker at {url}" in str(err.value)
    assert "refused" in str(err.value).lower()
    client.close()


def test_embedded_broker_port_in_use_raises(embedded_broker):
    other = EmbeddedBroker("127.0.0.1", embedded_broker.port)
    with pytest.raises(TransportError, match=str(embedded_broker.port)):
        other.start(timeout=5)
    assert not other.running


def test_embedded_broker_keeps_retained_messages_across_restart(embedded_broker, clients, all_message_samples):
    pub = publisher(clients, embedded_broker.url)
    cart_state = next(m for m in all_message_samples if isinstance(m, CartState))
    pub.publish(cart_state)
    assert pub.flush(timeout=5)
    embedded_broker.restart()
    late = Inbox()
    subscriber(clients, embedded_broker.url, "after-restart", late, clean_session=True)
    assert wait_until(lambda: cart_state.event_id in late.by_id())


# --------------------------------------------------------------------------- ZeroMQ


@pytest.fixture
def zmq_pair():
    """A bound subscriber on a free loopback port and a publisher connected to it, subscription arrived."""
    sub = ZmqSubscriber(f"tcp://127.0.0.1:{free_port()}")
    pub = ZmqPublisher(sub.endpoint, store=STORE)
    # A bound SUB attaches a newly connected peer (and sends it its subscriptions) only when
    # its owner calls into it, as the fusion node's receive loop does; do that while waiting.
    deadline = time.monotonic() + 5
    while not pub.wait_for_subscriber(timeout=0.02):
        assert sub.recv(timeout_s=0) is None
        assert time.monotonic() < deadline, "the subscription never reached the publisher"
    yield pub, sub
    pub.close(linger_ms=0)
    sub.close()


def test_every_message_type_round_trips_over_zmq(zmq_pair, all_message_samples):
    pub, sub = zmq_pair
    for msg in all_message_samples:
        pub.publish(msg)
    for msg in all_message_samples:
        got = sub.recv_with_topic(timeout_s=2)
        assert got is not None, f"{msg.type} did not arrive"
        topic, received = got
        assert received == msg and type(received) is type(msg)
        assert topic == topic_for(STORE, msg)
    assert sub.recv(timeout_s=0.05) is None  # nothing else, and no hang


def test_malformed_zmq_message_is_counted_and_logged(zmq_pair, caplog):
    caplog.set_level(logging.WARNING)
    pub, sub = zmq_pair
    pub._sock.send_multipart([b"storesense/teststore/edge/cam1/person", b"{broken"])
    pub._sock.send_multipart([b"storesense/teststore/edge/cam1/odd"])  # one frame only
    good = Stamper("cam1").make(HandShelfInteraction, 5.0, camera="cam1", track_id=1, shelf="shelf-a",
                                face="f", phase="enter", hand="left", dwell_s=0.0, keypoint_score=0.7)
    pub.publish(good)
    assert sub.recv(timeout_s=2) is None
    assert sub.recv(timeout_s=2) is None
    assert sub.recv(timeout_s=2) == good
    assert sub.decoder.rejected_total == 2
    assert "skipped message on storesense/teststore/edge/cam1/person" in caplog.text
    assert "storesense/teststore/edge/cam1/odd" in caplog.text


def test_zmq_wait_for_subscriber_times_out_without_one():
    pub = ZmqPublisher(f"tcp://127.0.0.1:{free_port()}", store=STORE)
    try:
        started = time.monotonic()
        assert pub.wait_for_subscriber(timeout=0.2) is False
        assert time.monotonic() - started < 1.0
    finally:
        pub.close(linger_ms=0)


def test_availability_topic_is_not_a_malformed_message(broker, clients):
    inbox = Inbox()
    sub = subscriber(clients, broker.url, "avail-sub", inbox)
    raw_publish(broker.url, [(availability_topic(STORE, "ble-door"), b"online"),
                             (availability_topic(STORE, "ble-door"), b"sideways")])
    assert wait_until(lambda: sub.decoder.rejected_total == 1)
    assert inbox.states("ble-door") == ["online"]
    assert inbox.messages == []
