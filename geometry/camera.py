"""The pinhole camera model on the floor frame: poses, projection, viewing rays, floor homographies.

Plain functions on matrices (K 3×3, R 3×3, t 3-vector with X_cam = R X_floor + t),
so the store config (``config.Camera``), calibration and the simulators share
one model. Floor frame: x right, y up the floor plan, z up, metres.
"""

from __future__ import annotations

import numpy as np

from .lens import undistort_normalized


def pose_from_rvec_tvec(rvec, tvec) -> tuple[np.ndarray, np.ndarray]:
    """R and t from an OpenCV Rodrigues vector and translation."""
    import cv2

    R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=float))
    return R, np.asarray(tvec, dtype=float)


def pose_from_mount(position, look_at) -> tuple[np.ndarray, np.ndarray]:
    """R and t of a camera at ``position`` looking at ``look_at``, image x level with the floor."""
    c = np.asarray(position, dtype=float)
    z = np.asarray(look_at, dtype=float) - c
    z /= np.linalg.norm(z)
    up = np.array([0.0, 0.0, 1.0])
    x = np.cross(z, up) if abs(z @ up) < 0.999 else np.array([1.0, 0.0, 0.0]) - z[0] * z  # keep x ⟂ z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in floor coordinates
    return R, -R @ c


def project_floor_points(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """N×3 floor points -> N×2 ideal pixels (no distortion); points behind the camera -> NaN."""
    cam = points @ R.T + t
    out = np.full((len(points), 2), np.nan)
    ok = cam[:, 2] > 1e-6
    uv = cam[ok] @ K.T
    out[ok] = uv[:, :2] / uv[:, 2:3]
    return out


def floor_to_image_by_homography(points: np.ndarray, image_to_floor: np.ndarray) -> np.ndarray:
    """N×3 floor points with z = 0 -> N×2 pixels through the inverse of an image-to-floor homography."""
    H = np.linalg.inv(image_to_floor)
    h = np.c_[points[:, :2], np.ones(len(points))] @ H.T
    return h[:, :2] / h[:, 2:3]


def pixel_ray(uv, K: np.ndarray, dist, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre and unit viewing direction (floor frame) of distorted pixel ``uv``."""
    x, y = undistort_normalized(np.array([uv], dtype=float), K, dist)[0]
    d = R.T @ np.array([x, y, 1.0])
    return -R.T @ t, d / np.linalg.norm(d)


def image_to_floor_homography(K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The 3×3 homography mapping undistorted pixels to floor metres (z = 0), normalised to H[2,2] = 1."""
    floor_to_image = K @ np.c_[R[:, 0], R[:, 1], t]
    H = np.linalg.inv(floor_to_image)
    return H / H[2, 2]
