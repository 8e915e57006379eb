"""Fingerprinting: weighted k-nearest neighbours on a radio map.

The distance between an observation and a fingerprint is the RMS difference
over the nodes the observation heard; a node the fingerprint lacks counts as a
``missing_penalty_db`` difference. The fix is the inverse-distance-weighted mean
of the ``k`` nearest fingerprints' positions; its covariance is their weighted
spread plus a floor (``min_std_m``), so a fix whose neighbours disagree says so.
"""

from __future__ import annotations

import numpy as np

from .model import Fix, RssiObservation, regularised_cov
from .radiomap import RadioMap
from ..geometry.walkable import Walkable


class KnnFingerprint:
    """Weighted kNN in signal space."""

    name = "fingerprint"

    def __init__(self, radio_map: RadioMap, *, k: int = 10, missing_penalty_db: float = 15.0,
                 min_nodes: int = 3, min_std_m: float = 0.5, walkable: Walkable | None = None):
        if len(radio_map) < k:
            raise ValueError(f"the radio map has {len(radio_map)} fingerprints, fewer than k={k}")
        self.map = radio_map
        self.k = k
        self.missing_penalty_db = missing_penalty_db
        self.min_nodes = min_nodes
        self.min_std_m = min_std_m
        self.walkable = walkable
        self._index = {n: j for j, n in enumerate(radio_map.nodes)}

    def locate(self, obs: RssiObservation) -> Fix | None:
        """A fix from the ``k`` fingerprints nearest in signal space (None with too few nodes heard)."""
        heard = obs.usable(self._index)
        if len(heard) < self.min_nodes:
            return None
        ids = sorted(heard)
        cols = [self._index[i] for i in ids]
        diff = self.map.rssi[:, cols] - np.array([heard[i] for i in ids])
        diff = np.where(np.isnan(diff), self.missing_penalty_db, diff)
        dist = np.sqrt((diff ** 2).mean(axis=1))
        near = np.argpartition(dist, self.k - 1)[: self.k]
        w = 1.0 / (dist[near] + 1e-3)
        w /= w.sum()
        pts = self.map.positions[near]
        xy = w @ pts
        d = pts - xy
        cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0)
        cov = regularised_cov(cov + np.eye(2) * self.min_std_m ** 2)
        if self.walkable is not None:
            xy = self.walkable.snap(xy)
        return Fix(obs.ts, float(xy[0]), float(xy[1]), cov, self.name, tuple(ids), obs.tag,
                   {"signal_distance_db": float(dist[near].min())})
