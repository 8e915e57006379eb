"""Who may publish and read what on the store's MQTT broker: Mosquitto ACLs from the topic table.

Every node logs in with its own user name (its node id) and, over ``mqtts://``, its own client
certificate. :func:`mosquitto_acl` turns :data:`~storesense.contracts.TOPICS` into a Mosquitto
``acl_file`` in which each node role may publish only its own messages:

``edge`` (camera, BLE, shelf, entry gate nodes)
    its own ``edge/<node>/...`` topics and its own status; nothing else.
``fusion``
    shopper locations, zone events, cart events and state, receipts; its own status.
``hub``
    offers and light commands, its own status; reads everything of the store.

So a camera's login cannot publish a receipt or a cart event on a cart topic, and what it may
publish on its own topics is refused by the hub's strict decoder unless it is an edge message
from that camera (:func:`storesense.contracts.topic_matches`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..contracts import TOPICS, availability_topic
from ..errors import ConfigError

#: node role -> message types it publishes (everyone also publishes its own node_status)
PRODUCES: dict[str, tuple[str, ...]] = {
    "edge": ("person_observation", "hand_shelf_interaction", "ble_sighting", "weight_change", "check_in"),
    "fusion": ("shopper_location", "zone_event", "cart_event", "cart_state", "receipt", "shelf_event"),
    "hub": ("offer", "light_command"),
}
#: node roles that read the whole store's topics over MQTT
READERS = ("hub",)


def _pattern(store: str, kind: str, node: str) -> str:
    """The MQTT topic filter of ``kind`` messages from ``node``: the template with ``+`` for subjects."""
    template = TOPICS[kind][0]
    return template.format(store=store, source=node, shopper="+", zone="+", node=node, fixture="+", shelf="+")


def mosquitto_acl(store: str, nodes: Mapping[str, str]) -> str:
    """A Mosquitto ``acl_file`` for ``store`` where ``nodes`` maps each login (node id) to its role."""
    lines = [f"# storesense ACL for store {store}: one login per node, each publishes only its own topics"]
    for node, role in sorted(nodes.items()):
        if role not in PRODUCES:
            raise ConfigError(f"node {node}: unknown role {role!r} (one of {', '.join(PRODUCES)})")
        if not node or any(c in node for c in "/+#\n "):
            raise ConfigError(f"node id {node!r} cannot be an MQTT login")
        lines += ["", f"user {node}"]
        topics = [_pattern(store, kind, node) for kind in PRODUCES[role]]
        topics += [_pattern(store, "node_status", node), availability_topic(store, node)]
        if role in READERS:
            lines.append(f"topic read storesense/{store}/#")
        lines += [f"topic write {t}" for t in dict.fromkeys(topics)]
    return "\n".join(lines) + "\n"
