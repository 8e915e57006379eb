"""What the simulated BLE receiver nodes hear: each shopper's phone advertising.

:func:`render_ble` gives every advertisement of every phone (``ble_hz``
per second, each phone's interval jittered, plus BLE's random advDelay) an
RSSI at every receiver node:

``rssi = P1m - 10 n log10(d) + device - shadow(x, y) - body - shelves - crowd + fading``

- ``P1m``, ``n``: the node's configured ``rssi_at_1m`` and ``path_loss_exponent``;
  ``d`` the 3-D distance from the phone (1.1 m high in a hand, 0.8 m in a pocket);
- ``device``: a per-phone offset, normal with ``ble_device_sigma_db``;
- ``shadow``: log-normal shadowing, a spatially correlated Gaussian field per
  node (std ``ble_shadow_db``, correlation length ``ble_shadow_corr_m``);
- ``body``: the shopper's own body, up to ``ble_body_db`` when the node is behind
  them (scaled by how far behind), plus 3 dB for a phone in a pocket;
- ``shelves``: ``ble_shelf_db`` per shelf prism the line phone-node passes
  through (half that for a counter);
- ``crowd``: 3 dB per other shopper standing within 0.3 m of that line (at most 3);
- ``fading``: multipath fast fading per packet (channel hopping decorrelates
  packets), Rician with K = 6 dB on a clear line and Rayleigh behind a shelf.

A packet is heard when its RSSI reaches the -96 dBm sensitivity and it is not
lost (probability ``ble_loss``, rising near the sensitivity). RSSI is
reported in whole dBm, as receivers do.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ...config import StoreConfig
from ...contracts import BleSighting
from .geometry import Prism, count_blocking

SENSITIVITY_DBM = -96.0
PHONE_HEIGHT_M = {"hand": 1.1, "pocket": 0.8}
POCKET_LOSS_DB = 3.0
CROWD_LOSS_DB = 3.0
RICIAN_K_LOS = 10 ** (6 / 10)


@dataclass
class RadioOutput:
    """BLE sighting records and counters."""

    records: list[tuple] = field(default_factory=list)  # (ts, source, cls, fields)
    stats: Counter = field(default_factory=Counter)


class ShadowField:
    """A spatially correlated Gaussian shadowing field (dB) over the store floor, one per node."""

    def __init__(self, config: StoreConfig, sigma_db: float, corr_m: float, rng: np.random.Generator,
                 resolution: float = 0.25):
        outline = np.asarray(config.floor.outline, float)
        self.origin = outline.min(axis=0) - 1.0
        size = outline.max(axis=0) + 1.0 - self.origin
        self.resolution = resolution
        shape = (int(np.ceil(size[1] / resolution)) + 1, int(np.ceil(size[0] / resolution)) + 1)
        white = rng.standard_normal(shape)
        smooth = ndimage.gaussian_filter(white, sigma=max(corr_m / 2 / resolution, 0.5), mode="wrap")
        std = float(smooth.std())
        self.grid = smooth / std * sigma_db if std > 0 and sigma_db > 0 else np.zeros(shape)

    def at(self, xy: np.ndarray) -> np.ndarray:
        """Shadowing in dB at floor points (N, 2), bilinear."""
        rc = np.stack([(xy[:, 1] - self.origin[1]) / self.resolution, (xy[:, 0] - self.origin[0]) / self.resolution])
        return ndimage.map_coordinates(self.grid, rc, order=1, mode="nearest")


def render_ble(config: StoreConfig, shoppers: list, level, prisms: list[Prism], rng: np.random.Generator
               ) -> RadioOutput:
    """BLE sightings of every shopper's phone at every node."""
    out = RadioOutput()
    nodes = config.ble_nodes
    if not nodes or not shoppers:
        return out
    fields = [ShadowField(config, level.ble_shadow_db, level.ble_shadow_corr_m, rng) for _ in nodes]
    # every advertisement: (time, shopper index)
    ads_t, ads_s = [], []
    for j, s in enumerate(shoppers):
        interval = 1.0 / level.ble_hz * float(rng.uniform(0.9, 1.1))
        t = s.enter_ts + float(rng.uniform(0, interval)) + np.arange(int((s.exit_ts - s.enter_ts) / interval) + 1) * interval
        t = t + rng.uniform(0, 0.01, len(t))  # advDelay
        t = t[t <= s.exit_ts]
        ads_t.append(t)
        ads_s.append(np.full(len(t), j))
    t = np.concatenate(ads_t)
    sj = np.concatenate(ads_s)
    order = np.argsort(t, kind="stable")
    t, sj = t[order], sj[order]
    A = len(t)
    # where everyone is at each advertisement (NaN when not in the store)
    allpos = np.stack([s.positions(t) for s in shoppers], axis=1)  # (A, S, 2)
    me = allpos[np.arange(A), sj]
    heading = np.empty(A)
    for j, s in enumerate(shoppers):
        m = sj == j
        heading[m] = s.heading_at(t[m])
    phone_z = np.array([PHONE_HEIGHT_M[s.phone] for s in shoppers])[sj]
    pocket = np.array([s.phone == "pocket" for s in shoppers])[sj]
    device = rng.normal(0, level.ble_device_sigma_db, len(shoppers))[sj]
    phone = np.c_[me, phone_z]
    fwd = np.stack([np.cos(heading), np.sin(heading)], axis=1)
    out.stats["advertisements"] = A
    for k, node in enumerate(nodes):
        npos = np.asarray(node.position, float)
        d3 = np.maximum(np.linalg.norm(phone - npos, axis=1), 0.1)
        path = node.rssi_at_1m - 10 * node.path_loss_exponent * np.log10(d3)
        to_node = npos[:2] - me
        to_node /= np.maximum(np.linalg.norm(to_node, axis=1), 1e-6)[:, None]
        behind = np.clip(-(fwd * to_node).sum(axis=1), 0, 1)
        body = level.ble_body_db * behind + POCKET_LOSS_DB * pocket
        node3 = np.broadcast_to(npos, phone.shape)
        n_shelf = count_blocking(phone, node3, prisms, "shelf")
        n_obst = count_blocking(phone, node3, prisms, "obstacle")
        walls = level.ble_shelf_db * n_shelf + 0.5 * level.ble_shelf_db * n_obst
        crowd = CROWD_LOSS_DB * np.minimum(_people_on_line(me, npos[:2], allpos, sj), 3)
        K = np.where(n_shelf > 0, 0.0, RICIAN_K_LOS)
        h = np.sqrt(K / (K + 1)) + np.sqrt(1 / (K + 1) / 2) * (rng.standard_normal(A) + 1j * rng.standard_normal(A))
        fading = 10 * np.log10(np.maximum(np.abs(h) ** 2, 1e-6))
        rssi = path + device - fields[k].at(me) - body - walls - crowd + fading
        rssi = np.round(np.clip(rssi, -130, 20))
        p_loss = level.ble_loss + (1 - level.ble_loss) / (1 + np.exp((rssi - SENSITIVITY_DBM - 3) / 1.5))
        heard = (rssi >= SENSITIVITY_DBM) & (rng.random(A) >= p_loss)
        latency = rng.uniform(0.002, 0.03, A)
        out.stats["sightings"] += int(heard.sum())
        out.stats["lost"] += int((~heard).sum())
        for i in np.flatnonzero(heard):
            out.records.append((round(float(t[i] + latency[i]), 3), node.id, BleSighting,
                                dict(node=node.id, tag=shoppers[sj[i]].tag, rssi=float(rssi[i]))))
    return out


def _people_on_line(me: np.ndarray, node_xy: np.ndarray, allpos: np.ndarray, sj: np.ndarray) -> np.ndarray:
    """How many other shoppers stand within 0.3 m of the segment phone-node, per advertisement."""
    seg = node_xy - me  # (A, 2)
    L2 = np.maximum((seg**2).sum(axis=1), 1e-9)
    rel = allpos - me[:, None, :]  # (A, S, 2)
    u = (rel * seg[:, None, :]).sum(axis=2) / L2[:, None]
    closest = me[:, None, :] + np.clip(u, 0, 1)[..., None] * seg[:, None, :]
    dist = np.linalg.norm(allpos - closest, axis=2)
    on = (dist < 0.3) & (u > 0.02) & (u < 0.98)
    on[np.arange(len(sj)), sj] = False
    on &= ~np.isnan(allpos[..., 0])
    return on.sum(axis=1)
