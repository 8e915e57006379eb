"""Radio maps and the expected-signal field built from them.

:class:`RadioMap`
    fingerprints: floor positions where a tag was and the RSSI every node heard
    there (NaN where a node heard nothing). Read and written as CSV with columns
    ``x, y, <node id>...``.

:class:`SignalField`
    the expected RSSI of every node on every cell of the floor grid, with a
    per-node spread ``sigma_db``. Built from a radio map by Gaussian-kernel
    regression (bandwidth ``bandwidth_m``), blended with the nodes' path-loss
    models where the map is thin (``prior_weight`` is the weight, in samples, the
    path-loss prediction counts for). Without a map it is the path-loss model
    alone. The particle filter looks up expected RSSI here.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..errors import StoresenseError
from .pathloss import DEFAULT_TAG_HEIGHT_M, Anchor, expected_rssi_matrix
from ..geometry.walkable import Walkable


#: Fingerprints the kernel of :meth:`RadioMap.spacing_bandwidth` should average (6 dB spread -> 2 dB error).
AUTO_BANDWIDTH_SAMPLES = 9


@dataclass
class RadioMap:
    """Fingerprints: ``positions`` (n, 2) in metres, ``rssi`` (n, len(nodes)) in dBm, NaN = not heard."""

    nodes: list[str]
    positions: np.ndarray
    rssi: np.ndarray

    def __post_init__(self):
        self.positions = np.asarray(self.positions, dtype=float).reshape(-1, 2)
        self.rssi = np.asarray(self.rssi, dtype=float).reshape(len(self.positions), len(self.nodes))

    def __len__(self) -> int:
        return len(self.positions)

    def subset(self, index) -> "RadioMap":
        """The fingerprints at ``index`` (a slice, boolean mask or integer array)."""
        return RadioMap(list(self.nodes), self.positions[index], self.rssi[index])

    def spacing_bandwidth(self, *, samples: int = AUTO_BANDWIDTH_SAMPLES, min_m: float = 0.2) -> float:
        """A kernel bandwidth (m) from the map's own point spacing.

        The Gaussian kernel of bandwidth ``h`` over fingerprints of local density
        ρ (points per m²) weighs about ``2π h² ρ`` of them; to average out
        shadowing it should weigh ``samples`` of them (9: a 6 dB spread to a
        2 dB standard error). With ρ estimated at each fingerprint from the
        distance ``r`` to its ``samples``-th nearest neighbour (ρ = k / π r²),
        ``h = r / √2``; the median over the map is taken, and never less than
        ``min_m`` (two cells of the 0.1 m floor grid the field is sampled on).
        A 126-point grid over a 20 × 17 m hall gets about 2.1 m; a robot-surveyed
        map with thousands of points a few centimetres apart gets ``min_m``.
        """
        if len(self) < 2:
            return float(min_m)
        k = min(samples, len(self) - 1)
        d, _ = cKDTree(self.positions).query(self.positions, k=k + 1)
        return float(max(np.median(d[:, -1]) / np.sqrt(2.0), min_m))

    def columns_for(self, nodes: list[str]) -> np.ndarray:
        """RSSI columns reordered to ``nodes`` (all NaN for a node the map lacks)."""
        out = np.full((len(self), len(nodes)), np.nan)
        for j, n in enumerate(nodes):
            if n in self.nodes:
                out[:, j] = self.rssi[:, self.nodes.index(n)]
        return out

    def save_csv(self, path: str | Path) -> None:
        """Write ``x, y, <node>...`` with empty cells for NaN."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["x", "y", *self.nodes])
            for p, r in zip(self.positions, self.rssi):
                w.writerow([f"{p[0]:.3f}", f"{p[1]:.3f}", *("" if np.isnan(v) else f"{v:.2f}" for v in r)])

    @classmethod
    def load_csv(cls, path: str | Path) -> "RadioMap":
        """Read a map written by :meth:`save_csv`; errors name the file and line."""
        path = Path(path)
        try:
            fh = open(path, newline="")
        except OSError as exc:
            raise StoresenseError(f"{path}: cannot open radio map: {exc.strerror}") from None
        with fh:
            rows = list(csv.reader(fh))
        if not rows or [h.strip() for h in rows[0][:2]] != ["x", "y"] or len(rows[0]) < 3:
            raise StoresenseError(f"{path}:1: expected a header 'x,y,<node id>...'")
        nodes = [h.strip() for h in rows[0][2:]]
        pos, rssi = [], []
        for n, row in enumerate(rows[1:], 2):
            if not row:
                continue
            if len(row) != len(nodes) + 2:
                raise StoresenseError(f"{path}:{n}: expected {len(nodes) + 2} columns, got {len(row)}")
            try:
                vals = [float(v) if v.strip() else np.nan for v in row]
            except ValueError:
                raise StoresenseError(f"{path}:{n}: not a number in {row!r}") from None
            pos.append(vals[:2])
            rssi.append(vals[2:])
        if not pos:
            raise StoresenseError(f"{path}: the radio map has no rows")
        return cls(nodes, np.array(pos), np.array(rssi))


class SignalField:
    """Expected RSSI of each node on each grid cell, and each node's spread (dB)."""

    def __init__(self, walkable: Walkable, nodes: list[str], mean: np.ndarray, sigma_db: np.ndarray,
                 support: np.ndarray | None = None):
        self.walkable = walkable
        self.nodes = list(nodes)
        self.mean = np.asarray(mean, dtype=float)  # (rows, cols, n_nodes)
        self.sigma_db = np.asarray(sigma_db, dtype=float)
        self.support = support  # kernel weight (samples) behind each cell's value, or None

    def expected(self, points: np.ndarray) -> np.ndarray:
        """Expected RSSI (n_points, n_nodes) at floor points (nearest cell)."""
        r, c, _ = self.walkable.cells(points)
        return self.mean[r, c]

    @classmethod
    def from_path_loss(cls, walkable: Walkable, anchors: dict[str, Anchor], *, sigma_db: float = 6.0,
                       tag_height: float = DEFAULT_TAG_HEIGHT_M) -> "SignalField":
        """The field the path-loss models predict (no radio map)."""
        nodes = sorted(anchors)
        centres = _cell_centres(walkable)
        mean = expected_rssi_matrix([anchors[n] for n in nodes], centres.reshape(-1, 2), tag_height)
        return cls(walkable, nodes, mean.reshape(*centres.shape[:2], len(nodes)), np.full(len(nodes), sigma_db))

    @classmethod
    def from_radio_map(cls, walkable: Walkable, radio_map: RadioMap, anchors: dict[str, Anchor], *,
                       bandwidth_m: float = 0.4, prior_weight: float = 0.5,
                       tag_height: float = DEFAULT_TAG_HEIGHT_M) -> "SignalField":
        """Kernel-smoothed radio map, blended with the path-loss prediction where the map is thin.

        ``sigma_db`` per node is the robust spread (1.4826 × MAD) of the map's
        own samples around the field.
        """
        nodes = [n for n in sorted(anchors) if n in radio_map.nodes]
        if not nodes:
            raise StoresenseError("the radio map has no column for any configured BLE node")
        centres = _cell_centres(walkable)
        flat = centres.reshape(-1, 2)
        prior = expected_rssi_matrix([anchors[n] for n in nodes], flat, tag_height)
        rssi = radio_map.columns_for(nodes)
        dist = cKDTree(flat).sparse_distance_matrix(cKDTree(radio_map.positions), 3.0 * bandwidth_m,
                                                    output_type="coo_matrix")
        kernel = sp.csr_matrix((np.exp(-0.5 * (dist.data / bandwidth_m) ** 2), (dist.row, dist.col)),
                               shape=(len(flat), len(radio_map)))
        heard = ~np.isnan(rssi)
        weight = kernel @ heard.astype(float)
        total = kernel @ np.where(heard, rssi, 0.0)
        mean = (total + prior_weight * prior) / (weight + prior_weight)
        shape = (*centres.shape[:2], len(nodes))
        field = cls(walkable, nodes, mean.reshape(shape), np.ones(len(nodes)), weight.reshape(shape))
        resid = rssi - field.expected(radio_map.positions)
        med = np.nanmedian(resid, axis=0)
        field.sigma_db = np.maximum(1.4826 * np.nanmedian(np.abs(resid - med), axis=0), 1.0)
        return field


def _cell_centres(walkable: Walkable) -> np.ndarray:
    """(rows, cols, 2) array of grid cell centres."""
    xs = walkable.origin[0] + (np.arange(walkable.cols) + 0.5) * walkable.resolution
    ys = walkable.origin[1] + (np.arange(walkable.rows) + 0.5) * walkable.resolution
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], axis=-1)
