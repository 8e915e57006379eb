"""Geometry for the store simulator: shelf prisms, line-of-sight and camera projection.

Shelves are prisms standing on the floor (their footprint polygon from the
store config, :data:`SHELF_HEIGHT_M` high); other obstacles (counters,
pillars) are :data:`OBSTACLE_HEIGHT_M` high. :func:`blocked` tells, for many
3-D segments at once, whether each passes through any prism: the camera
occlusion test (camera centre -> body point) and the BLE attenuation test
(phone -> receiver) both use it. :func:`project` maps floor-frame 3-D points
to pixels through a camera's pinhole model *with* its OpenCV distortion
coefficients, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...config import Camera, StoreConfig
from ...errors import StoresenseError

#: height of every shelf unit, metres (the config has footprints only)
SHELF_HEIGHT_M = 1.8
#: height of non-shelf obstacles (counters), metres
OBSTACLE_HEIGHT_M = 1.0


@dataclass(frozen=True)
class Prism:
    """A vertical prism on the floor: a footprint polygon from z = 0 to ``top``."""

    id: str
    kind: str  # "shelf" or "obstacle"
    polygon: np.ndarray  # (n, 2)
    top: float

    @property
    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Edge start points and end points, each (n, 2)."""
        return self.polygon, np.roll(self.polygon, -1, axis=0)


def store_prisms(config: StoreConfig, shelf_height_m: float = SHELF_HEIGHT_M) -> list[Prism]:
    """Every shelf (``shelf_height_m`` high) and obstacle of the store as a prism."""
    out = [Prism(s.id, "shelf", np.asarray(s.polygon, float), shelf_height_m) for s in config.shelves]
    out += [Prism(o.id, "obstacle", np.asarray(o.polygon, float), OBSTACLE_HEIGHT_M) for o in config.floor.obstacles]
    return out


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon for many points (N, 2) at once -> (N,) bool."""
    x, y = points[..., 0], points[..., 1]
    inside = np.zeros(x.shape, dtype=bool)
    a, b = polygon, np.roll(polygon, -1, axis=0)
    for (x1, y1), (x2, y2) in zip(a, b):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xi = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xi)
    return inside


def _segments_cross(p0: np.ndarray, p1: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether 2-D segments p0-p1 (N, 2) properly cross the segment a-b (2,) -> (N,) bool."""

    def orient(o, u, v):
        return (u[..., 0] - o[..., 0]) * (v[..., 1] - o[..., 1]) - (u[..., 1] - o[..., 1]) * (v[..., 0] - o[..., 0])

    d1 = orient(p0, p1, a)
    d2 = orient(p0, p1, b)
    d3 = orient(a, b, p0)
    d4 = orient(a, b, p1)
    return (d1 * d2 < 0) & (d3 * d4 < 0)


def blocked_by(a: np.ndarray, b: np.ndarray, prism: Prism) -> np.ndarray:
    """Whether each 3-D segment a[i]-b[i] (N, 3) passes through ``prism`` -> (N,) bool.

    The part of the segment with 0 <= z <= top is clipped out first; it hits the
    prism when either clipped end lies inside the footprint or the clipped
    part crosses an edge of the footprint (exact for any simple polygon).
    """
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    d = b - a
    s_lo = np.zeros(len(a))
    s_hi = np.ones(len(a))
    dz = d[:, 2]
    flat = np.abs(dz) < 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = (0.0 - a[:, 2]) / dz
        s1 = (prism.top - a[:, 2]) / dz
    lo = np.where(flat, np.where((a[:, 2] >= 0) & (a[:, 2] <= prism.top), 0.0, 2.0), np.minimum(s0, s1))
    hi = np.where(flat, np.where((a[:, 2] >= 0) & (a[:, 2] <= prism.top), 1.0, -1.0), np.maximum(s0, s1))
    s_lo = np.maximum(s_lo, lo)
    s_hi = np.minimum(s_hi, hi)
    live = s_lo < s_hi
    hit = np.zeros(len(a), dtype=bool)
    if not live.any():
        return hit
    # cheap bounding-box rejection before the exact test
    p0 = a[live, :2] + s_lo[live, None] * d[live, :2]
    p1 = a[live, :2] + s_hi[live, None] * d[live, :2]
    lo_xy, hi_xy = prism.polygon.min(axis=0), prism.polygon.max(axis=0)
    near = ~((np.maximum(p0, p1) < lo_xy).any(axis=1) | (np.minimum(p0, p1) > hi_xy).any(axis=1))
    idx = np.flatnonzero(live)[near]
    if len(idx) == 0:
        return hit
    q0, q1 = p0[near], p1[near]
    h = points_in_polygon(q0, prism.polygon) | points_in_polygon(q1, prism.polygon)
    for ea, eb in zip(*prism.edges):
        h |= _segments_cross(q0, q1, ea, eb)
    hit[idx] = h
    return hit


def blocked(a: np.ndarray, b: np.ndarray, prisms: list[Prism], kinds: tuple[str, ...] = ("shelf", "obstacle")
            ) -> np.ndarray:
    """Whether each 3-D segment a[i]-b[i] passes through any prism of ``kinds`` -> (N,) bool."""
    out = np.zeros(len(a), dtype=bool)
    for p in prisms:
        if p.kind in kinds:
            out |= blocked_by(a, b, p)
    return out


def count_blocking(a: np.ndarray, b: np.ndarray, prisms: list[Prism], kind: str) -> np.ndarray:
    """How many prisms of ``kind`` each 3-D segment a[i]-b[i] passes through -> (N,) int."""
    out = np.zeros(len(a), dtype=int)
    for p in prisms:
        if p.kind == kind:
            out += blocked_by(a, b, p)
    return out


@dataclass(frozen=True)
class PinholeView:
    """A calibrated camera as plain arrays: pose, intrinsics, distortion, image size."""

    id: str
    R: np.ndarray
    t: np.ndarray
    K: np.ndarray
    dist: np.ndarray
    width: int
    height: int

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in floor metres (3,)."""
        return -self.R.T @ self.t

    @property
    def focal(self) -> float:
        """Mean focal length in pixels."""
        return float((self.K[0, 0] + self.K[1, 1]) / 2)

    @classmethod
    def of(cls, cam: Camera) -> PinholeView:
        """The view of a config camera; raises if it lacks intrinsics and a pose."""
        if cam.intrinsics is None or (cam.extrinsics is None and cam.mount is None):
            raise StoresenseError(
                f"camera {cam.id}: the simulator needs intrinsics and a pose (extrinsics or mount), "
                "a homography alone cannot project a person's head"
            )
        R, t = cam.rotation_translation()
        dist = np.zeros(5)
        given = np.asarray(cam.intrinsics.dist, float)[:5]
        dist[: len(given)] = given
        return cls(cam.id, R, t, cam.intrinsics.matrix(), dist, int(cam.resolution[0]), int(cam.resolution[1]))

    def project(self, points: np.ndarray) -> np.ndarray:
        """Floor-frame points (..., 3) to distorted pixels (..., 2); NaN behind the camera."""
        pts = np.asarray(points, float)
        shape = pts.shape[:-1]
        p = pts.reshape(-1, 3) @ self.R.T + self.t
        z = p[:, 2]
        front = z > 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            x = p[:, 0] / z
            y = p[:, 1] / z
        k1, k2, p1, p2, k3 = self.dist
        if np.any(self.dist):
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
            xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            x, y = xd, yd
        u = self.K[0, 0] * x + self.K[0, 1] * y + self.K[0, 2]
        v = self.K[1, 1] * y + self.K[1, 2]
        out = np.stack([u, v], axis=-1)
        out[~front] = np.nan
        return out.reshape(*shape, 2)
