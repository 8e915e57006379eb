"""Store-wide floor tracker: one Kalman filter per shopper in floor metres.

Every camera's floor observations (each with its own covariance) update the
tracks. A camera's own track id is bound to the floor track it first matched,
so a shopper handed over between cameras keeps one floor track. New camera
tracks are matched by Mahalanobis gating against the predicted tracks.

The Kalman filter is injected through ``filter_factory`` (norfair style): any
callable returning a filterpy-compatible ``KalmanFilter`` with a 4-D state
``[x, y, vx, vy]`` and a 2-D position measurement.

This is the Foundation version: greedy gating per observation. Global
assignment, BLE updates and out-of-order handling come with the fusion issue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

from ..contracts import PersonObservation

#: chi-square 99 % quantile for 2 degrees of freedom
GATE_CHI2_2DOF = 9.21


def constant_velocity_filter(x: float, y: float, accel_std: float = 1.0) -> KalmanFilter:
    """A constant-velocity Kalman filter in the floor plane started at (x, y)."""
    kf = KalmanFilter(dim_x=4, dim_z=2)
    kf.x = np.array([x, y, 0.0, 0.0])
    kf.H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    kf.P = np.diag([0.25, 0.25, 1.0, 1.0])
    kf.accel_std = accel_std  # type: ignore[attr-defined]
    return kf


def _predict(kf: KalmanFilter, dt: float) -> None:
    if dt <= 0:
        return
    kf.F = np.array([[1.0, 0, dt, 0], [0, 1.0, 0, dt], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    q = getattr(kf, "accel_std", 1.0) ** 2
    kf.Q = Q_discrete_white_noise(dim=2, dt=dt, var=q, block_size=2, order_by_dim=False)
    kf.predict()


@dataclass
class FloorTrack:
    """One shopper's floor track."""

    id: str
    kf: KalmanFilter
    born_ts: float
    last_ts: float
    first_xy: tuple[float, float]
    hits: int = 1
    confirmed: bool = False
    seen_by: dict[str, tuple[int, float]] = field(default_factory=dict)  # camera -> (its track id, last ts)

    @property
    def cameras(self) -> set[str]:
        """Cameras that have observed this track."""
        return set(self.seen_by)

    @property
    def xy(self) -> tuple[float, float]:
        """Current filtered position."""
        return float(self.kf.x[0]), float(self.kf.x[1])

    @property
    def velocity(self) -> tuple[float, float]:
        """Current filtered velocity in m/s."""
        return float(self.kf.x[2]), float(self.kf.x[3])

    @property
    def cov(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Position covariance in m²."""
        P = self.kf.P
        return (float(P[0, 0]), float(P[0, 1])), (float(P[1, 0]), float(P[1, 1]))


class FloorTracker:
    """Tracks shoppers on the floor from per-camera floor observations."""

    def __init__(
        self,
        filter_factory: Callable[[float, float], KalmanFilter] = constant_velocity_filter,
        *,
        gate: float = GATE_CHI2_2DOF,
        confirm_hits: int = 3,
        max_age_s: float = 2.0,
    ):
        self.filter_factory = filter_factory
        self.gate = gate
        self.confirm_hits = confirm_hits
        self.max_age_s = max_age_s
        self.tracks: dict[str, FloorTrack] = {}
        self.bindings: dict[tuple[str, int], str] = {}  # (camera, camera track id) -> floor track id
        self._next = 1

    def track_for(self, camera: str, camera_track: int) -> FloorTrack | None:
        """The floor track a camera's track id is bound to, if it is still alive."""
        tid = self.bindings.get((camera, camera_track))
        return self.tracks.get(tid) if tid else None

    def update(self, obs: PersonObservation) -> FloorTrack | None:
        """Apply one observation; returns the floor track it updated (None without a floor point)."""
        if obs.floor is None:
            return None
        z = np.array([obs.floor.x, obs.floor.y])
        R = np.asarray(obs.floor.cov, dtype=float)
        key = (obs.camera, obs.track_id)
        track = self.track_for(*key)
        if track is None:
            track = self._match(z, R, obs.ts, obs.camera)
            if track is None:
                track = FloorTrack(f"T{self._next}", self.filter_factory(z[0], z[1]), obs.ts, obs.ts,
                                   (float(z[0]), float(z[1])))
                self._next += 1
                self.tracks[track.id] = track
                self.bindings[key] = track.id
                track.seen_by[obs.camera] = (obs.track_id, obs.ts)
                return track
            self.bindings[key] = track.id
        _predict(track.kf, obs.ts - track.last_ts)
        track.kf.update(z, R=R)
        track.last_ts = max(track.last_ts, obs.ts)
        track.hits += 1
        track.seen_by[obs.camera] = (obs.track_id, obs.ts)
        if track.hits >= self.confirm_hits:
            track.confirmed = True
        return track

    def _match(self, z: np.ndarray, R: np.ndarray, ts: float, camera: str) -> FloorTrack | None:
        best, best_d2 = None, self.gate
        for track in self.tracks.values():
            seen = track.seen_by.get(camera)
            if seen is not None and ts - seen[1] < 0.5:
                continue  # this camera is tracking that shopper under another id right now
            dt = max(0.0, ts - track.last_ts)
            F = np.array([[1.0, 0, dt, 0], [0, 1.0, 0, dt], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
            x = F @ track.kf.x
            P = F @ track.kf.P @ F.T + np.eye(4) * 0.5 * dt
            S = P[:2, :2] + R
            d = z - x[:2]
            d2 = float(d @ np.linalg.solve(S, d))
            if d2 < best_d2:
                best, best_d2 = track, d2
        return best

    def prune(self, ts: float) -> list[FloorTrack]:
        """Delete tracks not updated for ``max_age_s``; returns the deleted ones."""
        dead = [t for t in self.tracks.values() if ts - t.last_ts > self.max_age_s]
        for t in dead:
            del self.tracks[t.id]
        if dead:
            gone = {t.id for t in dead}
            self.bindings = {k: v for k, v in self.bindings.items() if v not in gone}
        return dead
