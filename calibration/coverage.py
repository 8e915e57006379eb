"""Which floor cells each camera sees, from the store config alone.

A floor point is seen by a camera when it is in front of the camera and
projects inside the image: with intrinsics and a pose, through the pinhole
model and (when there is lens distortion) inside the undistorted image border,
so far-off points that a distortion polynomial would fold back into the image
are not counted; with only a homography, through the homography with its sign
fixed so that points behind the camera are rejected. Shelves are not treated
as occluders (the config has no shelf heights); cameras without any
calibration are skipped and listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.path import Path as PolygonPath

from ..config import Camera, StoreConfig
from ..errors import StoresenseError
from ..geometry.lens import undistort_normalized


@dataclass
class CoverageMap:
    """Camera counts on a regular grid of floor cells (row = y, column = x)."""

    xs: np.ndarray
    ys: np.ndarray
    cell: float
    height: float
    counts: np.ndarray
    inside: np.ndarray
    walkable: np.ndarray
    seen_by: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def fractions(self) -> dict[str, float]:
        """Share of walkable cells seen by 0, exactly 1, and 2 or more cameras."""
        n = max(int(self.walkable.sum()), 1)
        c = self.counts[self.walkable]
        return {"0": float((c == 0).sum()) / n, "1": float((c == 1).sum()) / n, "2+": float((c >= 2).sum()) / n}


def _border_pixels(width: int, height: int, per_edge: int = 64) -> np.ndarray:
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    w, h = float(width), float(height)  # same bounds as the undistorted branch: [0, w] x [0, h]
    return np.concatenate([np.c_[t * w, np.zeros_like(t)], np.c_[np.full_like(t, w), t * h],
                           np.c_[w - t * w, np.full_like(t, h)], np.c_[np.zeros_like(t), h - t * h]])


def camera_sees(camera: Camera, points: np.ndarray) -> np.ndarray:
    """Boolean mask: which of the N×3 floor points (metres) the camera sees.

    Raises :class:`StoresenseError` for an uncalibrated camera, and for a
    homography-only camera asked about points off the floor plane.
    """
    pts = np.atleast_2d(np.asarray(points, float))
    width, height = camera.resolution
    if camera.intrinsics is not None and (camera.extrinsics is not None or camera.mount is not None):
        R, t = camera.rotation_translation()
        cam = pts @ R.T + t
        front = cam[:, 2] > 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            normalized = cam[:, :2] / cam[:, 2:3]
        dist = np.asarray(camera.intrinsics.dist or [], float)
        if dist.size and np.any(dist):
            border = undistort_normalized(_border_pixels(width, height), camera.intrinsics.matrix(), dist)
            inside = PolygonPath(border).contains_points(np.nan_to_num(normalized, nan=1e9))
        else:
            K = camera.intrinsics.matrix()
            uv = normalized @ K[:2, :2].T + K[:2, 2]
            inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)
        return front & inside
    if camera.homography is not None:
        if np.any(np.abs(pts[:, 2]) > 1e-9):
            raise StoresenseError(f"camera {camera.id}: a homography only maps the floor plane (z = 0)")
        H = np.linalg.inv(np.asarray(camera.homography, float))  # floor -> image, = s K [r1 r2 t]
        if np.linalg.det(H) > 0:  # det K[r1 r2 t] = -det(K) * camera height < 0; fix the sign of s
            H = -H
        h = np.c_[pts[:, :2], np.ones(len(pts))] @ H.T
        front = h[:, 2] > 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = h[:, :2] / h[:, 2:3]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)
        return front & inside
    raise StoresenseError(f"camera {camera.id}: not calibrated (no intrinsics + pose, no homography)")


def floor_coverage(cfg: StoreConfig, cell: float = 0.25, height: float = 0.0) -> CoverageMap:
    """Count, for every floor cell centre at ``height`` metres, the cameras that see it."""
    if cell <= 0:
        raise StoresenseError(f"coverage cell size {cell}: must be positive (metres)")
    outline = np.asarray(cfg.floor.outline, float)
    (x0, y0), (x1, y1) = outline.min(axis=0), outline.max(axis=0)
    xs = np.arange(x0 + cell / 2, x1, cell)
    ys = np.arange(y0 + cell / 2, y1, cell)
    gx, gy = np.meshgrid(xs, ys)
    flat = np.c_[gx.ravel(), gy.ravel()]
    inside = PolygonPath(outline).contains_points(flat).reshape(gx.shape)
    blocked = np.zeros(len(flat), bool)
    for poly in [s.polygon for s in cfg.shelves] + [o.polygon for o in cfg.floor.obstacles]:
        blocked |= PolygonPath(np.asarray(poly, float)).contains_points(flat)
    walkable = inside & ~blocked.reshape(gx.shape)
    counts = np.zeros(gx.shape, int)
    seen_by: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    pts = np.c_[flat, np.full(len(flat), height)]
    for camera in cfg.cameras:
        posed = camera.intrinsics is not None and (camera.extrinsics is not None or camera.mount is not None)
        if not (posed or (camera.homography is not None and height == 0.0)):
            skipped.append(camera.id)  # uncalibrated, or a homography asked about a plane above the floor
            continue
        seen = camera_sees(camera, pts).reshape(gx.shape) & inside
        seen_by[camera.id] = seen
        counts += seen
    return CoverageMap(xs, ys, cell, height, counts, inside, walkable, seen_by, skipped)
