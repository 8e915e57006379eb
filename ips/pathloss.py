"""The log-distance path-loss model of one BLE receiver.

``rssi(d) = rssi_at_1m - 10 * exponent * log10(d)`` with ``d`` the 3-D distance in
metres between the receiver's antenna and the tag (the tag is assumed at
``tag_height`` above the floor). :mod:`storesense.calibration.ble` fits the two
parameters per receiver; :class:`~storesense.config.BleNode` stores them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import StoreConfig

#: Distances are clipped to at least this (m) so log10 stays finite next to an antenna.
MIN_DISTANCE_M = 0.1
#: Height of a phone in a hand or a tag on a lanyard, metres.
DEFAULT_TAG_HEIGHT_M = 1.2


@dataclass(frozen=True)
class Anchor:
    """A receiver node: antenna position (x, y, z in metres) and its path-loss model."""

    id: str
    x: float
    y: float
    z: float
    rssi_at_1m: float = -59.0
    exponent: float = 2.0

    @property
    def xyz(self) -> np.ndarray:
        """Antenna position as a length-3 array."""
        return np.array([self.x, self.y, self.z])

    def distance(self, points: np.ndarray, tag_height: float = DEFAULT_TAG_HEIGHT_M) -> np.ndarray:
        """3-D distance (m) from floor points ``(..., 2)`` at ``tag_height`` to the antenna."""
        p = np.asarray(points, dtype=float)
        d2 = (p[..., 0] - self.x) ** 2 + (p[..., 1] - self.y) ** 2 + (tag_height - self.z) ** 2
        return np.maximum(np.sqrt(d2), MIN_DISTANCE_M)

    def expected_rssi(self, distance_m: np.ndarray | float) -> np.ndarray:
        """Expected RSSI (dBm) at a 3-D distance."""
        d = np.maximum(np.asarray(distance_m, dtype=float), MIN_DISTANCE_M)
        return self.rssi_at_1m - 10.0 * self.exponent * np.log10(d)

    def range_from_rssi(self, rssi: np.ndarray | float) -> np.ndarray:
        """The 3-D distance (m) at which the model expects ``rssi``."""
        return 10.0 ** ((self.rssi_at_1m - np.asarray(rssi, dtype=float)) / (10.0 * self.exponent))

    def with_model(self, rssi_at_1m: float, exponent: float) -> "Anchor":
        """A copy with another path-loss model."""
        return Anchor(self.id, self.x, self.y, self.z, float(rssi_at_1m), float(exponent))


def anchors_from_config(config: StoreConfig) -> dict[str, Anchor]:
    """The store's BLE nodes as anchors, keyed by node id."""
    return {
        n.id: Anchor(n.id, *map(float, n.position), rssi_at_1m=n.rssi_at_1m, exponent=n.path_loss_exponent)
        for n in config.ble_nodes
    }


def expected_rssi_matrix(anchors: list[Anchor], points: np.ndarray,
                         tag_height: float = DEFAULT_TAG_HEIGHT_M) -> np.ndarray:
    """Expected RSSI of every anchor at every point: shape ``(len(points), len(anchors))``."""
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    return np.stack([a.expected_rssi(a.distance(p, tag_height)) for a in anchors], axis=1)
