"""Message transports: MQTT (fusion -> hub, node availability) and ZeroMQ (edge -> fusion).

Everything that crosses a process boundary goes through this package, encoded by
:mod:`storesense.contracts` and sent on the topic :func:`~storesense.contracts.topic_for`
gives, with the QoS and retain flag the contract table says.

:mod:`.mqtt`
    :class:`MqttPublisher` and :class:`MqttSubscriber` (paho-mqtt 2.x, MQTT 3.1.1,
    persistent sessions, node availability; ``mqtts://`` with client certificates) and
    :func:`parse_mqtt_url`.
:mod:`.broker`
    :class:`EmbeddedBroker`, an amqtt broker in a background thread for a
    single-machine install and for tests, with its sessions kept across a restart.
:mod:`.zeromq`
    :class:`ZmqPublisher` (edge nodes) and :class:`ZmqSubscriber` (the fusion node), with
    optional CURVE encryption and an allow list of edge nodes' keys (``CurveKeys``).
:mod:`.security`
    The Mosquitto ACL giving each node role only its own topics (``mosquitto_acl``).
:mod:`.recording`
    Recording message streams to JSON lines and replaying them.

No call here waits forever: every wait takes a timeout.
"""

from __future__ import annotations

from .broker import EmbeddedBroker
from .mqtt import MqttPublisher, MqttSubscriber, parse_mqtt_url
from .zeromq import ZmqPublisher, ZmqSubscriber

__all__ = [
    "parse_mqtt_url",
    "EmbeddedBroker",
    "MqttPublisher",
    "MqttSubscriber",
    "ZmqPublisher",
    "ZmqSubscriber",
]
