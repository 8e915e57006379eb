"""Loader for the Kolakowski BLE RSS dataset (Zenodo 5457591, CC BY 4.0).

M. Kolakowski, "Automated Calibration of RSS Fingerprinting Based Systems Using a
Mobile Robot and Machine Learning", Sensors 21, 6270 (2021). Six anchors in a
furnished flat; a tag on a robot at 1.3 m height; RSSI sampled three times a
second. The layout this loader reads::

    anchors.csv                      id,x,y,z                    (anchor ids 1..6)
    layout.csv                       x,y                         (wall polygon, consecutive vertices)
    calibration/calibration_df.csv   ,ts,x,heading,y,rssi_1..rssi_6   (4104 fingerprints, ts in ns)
    tests/test_robot_df.csv          same columns                (robot test track with true positions)
    tests/test_walk_df.csv           ,ts,rssi_1..rssi_6          (a person walking, no positions)
    tests/path_reference.csv         x0,y0,x1,y1                 (the walked reference path)

Anchors become BLE nodes ``anchor-1`` ... ``anchor-6``; the tag is
``kolakowski-tag``. :func:`track_sightings` turns a track into the project's own
``BleSighting`` messages, so the evaluation runs on recorded sightings exactly as
a live system would.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ...contracts import BleSighting, Envelope, Stamper
from ...errors import StoresenseError
from ...geometry.floor import FloorGrid
from ...ips.pathloss import Anchor
from ...ips.radiomap import RadioMap

#: Height of the tag on the robot's pole (dataset description, section III).
TAG_HEIGHT_M = 1.3
TAG_ID = "kolakowski-tag"
#: Gaps longer than this (s) between calibration samples separate the four calibration runs.
RUN_GAP_S = 60.0


def node_id(anchor: int | str) -> str:
    """The storesense node id of dataset anchor ``anchor`` (``1`` -> ``anchor-1``)."""
    return f"anchor-{int(float(anchor))}"


@dataclass
class Track:
    """A recorded track: times (s), RSSI per node (NaN = not heard) and, when known, true positions."""

    name: str
    ts: np.ndarray
    nodes: list[str]
    rssi: np.ndarray
    truth: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def subset(self, index) -> "Track":
        """The samples at ``index``."""
        return Track(self.name, self.ts[index], list(self.nodes), self.rssi[index],
                     None if self.truth is None else self.truth[index])


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise StoresenseError(f"{path}: cannot read: {exc.strerror}") from None
    if not rows:
        raise StoresenseError(f"{path}: empty file")
    return [h.strip() for h in rows[0]], [r for r in rows[1:] if r]


def _columns(path: Path, wanted: list[str]) -> dict[str, np.ndarray]:
    head, rows = _read_csv(path)
    missing = [w for w in wanted if w not in head]
    if missing:
        raise StoresenseError(f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(head)})")
    idx = [head.index(w) for w in wanted]
    out = np.full((len(rows), len(wanted)), np.nan)
    for n, row in enumerate(rows):
        for j, i in enumerate(idx):
            v = row[i].strip() if i < len(row) else ""
            if v:
                try:
                    out[n, j] = float(v)
                except ValueError:
                    raise StoresenseError(f"{path}:{n + 2}: column {wanted[j]}: not a number: {v!r}") from None
    return {w: out[:, j] for j, w in enumerate(wanted)}


class KolakowskiDataset:
    """The dataset folder; every part is read on first use. Raises StoresenseError naming a bad file."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        for part in ("anchors.csv", "layout.csv", "calibration/calibration_df.csv"):
            if not (self.root / part).is_file():
                raise StoresenseError(f"{self.root}: not a Kolakowski BLE dataset folder (no {part})")

    @staticmethod
    def looks_like(root: str | Path) -> bool:
        """True when ``root`` has this dataset's anchors, layout and radio map files."""
        r = Path(root)
        return all((r / p).is_file() for p in ("anchors.csv", "layout.csv", "calibration/calibration_df.csv"))

    @cached_property
    def anchors(self) -> dict[str, Anchor]:
        """Anchor positions (path-loss models at their defaults until calibrated)."""
        cols = _columns(self.root / "anchors.csv", ["id", "x", "y", "z"])
        return {node_id(i): Anchor(node_id(i), float(x), float(y), float(z))
                for i, x, y, z in zip(cols["id"], cols["x"], cols["y"], cols["z"])}

    @property
    def nodes(self) -> list[str]:
        """Node ids in anchor order."""
        return list(self.anchors)

    @cached_property
    def layout(self) -> list[tuple[float, float]]:
        """The wall polygon (the flat's walkable outline; interior walls are notches in it)."""
        cols = _columns(self.root / "layout.csv", ["x", "y"])
        pts = [(float(x), float(y)) for x, y in zip(cols["x"], cols["y"])]
        if len(pts) > 1 and pts[0] == pts[-1]:
            pts = pts[:-1]
        if len(pts) < 3:
            raise StoresenseError(f"{self.root / 'layout.csv'}: the layout needs at least 3 vertices")
        return pts

    def floor_grid(self, resolution: float = 0.1, clearance: float = 0.0) -> FloorGrid:
        """Occupancy grid of the flat (no clearance by default: the robot's tag went within 5 cm of walls)."""
        return FloorGrid.from_outline(self.layout, (), resolution=resolution, clearance=clearance)

    def _track(self, rel: str, name: str, with_truth: bool) -> Track:
        rssi_cols = [f"rssi_{i + 1}" for i in range(len(self.anchors))]
        wanted = ["ts", *(["x", "y"] if with_truth else []), *rssi_cols]
        cols = _columns(self.root / rel, wanted)
        ts = cols["ts"] / 1e9  # nanoseconds -> seconds
        rssi = np.stack([cols[c] for c in rssi_cols], axis=1)
        truth = np.stack([cols["x"], cols["y"]], axis=1) if with_truth else None
        return Track(name, ts, self.nodes, rssi, truth)

    @cached_property
    def calibration(self) -> Track:
        """The 4104 calibration samples as one track (four robot runs; see :meth:`calibration_runs`)."""
        return self._track("calibration/calibration_df.csv", "calibration", True)

    def radio_map(self) -> RadioMap:
        """The calibration samples as a radio map."""
        cal = self.calibration
        return RadioMap(self.nodes, cal.truth, cal.rssi)

    def calibration_runs(self) -> list[np.ndarray]:
        """Index arrays of the four calibration runs (split at gaps longer than a minute)."""
        ts = self.calibration.ts
        cuts = np.r_[0, np.nonzero(np.diff(ts) > RUN_GAP_S)[0] + 1, len(ts)]
        return [np.arange(a, b) for a, b in zip(cuts[:-1], cuts[1:])]

    def robot_track(self) -> Track:
        """The robot test track with true positions."""
        return self._track("tests/test_robot_df.csv", "test_robot", True)

    def walk_track(self) -> Track:
        """The walking-person test (RSSI only; compare against :meth:`walk_reference`)."""
        return self._track("tests/test_walk_df.csv", "test_walk", False)

    def walk_reference(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Segments of the walked reference path."""
        cols = _columns(self.root / "tests/path_reference.csv", ["x0", "y0", "x1", "y1"])
        return [((a, b), (c, d)) for a, b, c, d in zip(cols["x0"], cols["y0"], cols["x1"], cols["y1"])]


def track_sightings(track: Track, *, tag: str = TAG_ID, run_id: str = "kolakowski") -> list[Envelope]:
    """The track as ``BleSighting`` messages, one per node heard per sample, in time order."""
    stampers = {n: Stamper(n, run_id=run_id) for n in track.nodes}
    out: list[Envelope] = []
    for ts, row in zip(track.ts, track.rssi):
        for n, v in zip(track.nodes, row):
            if np.isfinite(v):
                out.append(stampers[n].make(BleSighting, float(ts), node=n, tag=tag, rssi=round(float(v), 2)))
    return out
