"""Undoing lens distortion for points, accurately.

``cv2.undistortPoints`` inverts the distortion model iteratively; its default of
a few iterations leaves pixel-sized errors near the image corners of a
wide-angle lens, so every caller here asks for a converged answer.
"""

from __future__ import annotations

import cv2
import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config imports this module (through geometry.camera)
    from ..config import Intrinsics

CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)


def _criteria_overload():
    """``undistortPoints`` with termination criteria, on every OpenCV the project allows.

    OpenCV 4.9 takes criteria only through ``undistortPointsIter``; later 4.x
    releases also accept them in ``undistortPoints``, and OpenCV 5 removed
    ``undistortPointsIter``. Probed once: the same algorithm either way.
    """
    probe = (np.zeros((1, 1, 2)), np.eye(3), np.zeros(5), None, np.eye(3), np.eye(3), CRITERIA)
    try:
        cv2.undistortPoints(*probe)
        return lambda pts, K, d, eye: cv2.undistortPoints(pts, K, d, None, eye, eye, CRITERIA)
    except cv2.error:
        return lambda pts, K, d, eye: cv2.undistortPointsIter(pts, K, d, eye, eye, CRITERIA)


_undistort = _criteria_overload()
_EYE = np.eye(3)  # rectification and new camera matrix: none (OpenCV only reads them)


def undistort_normalized(pixels: np.ndarray, K: np.ndarray, dist) -> np.ndarray:
    """N×2 distorted pixels -> N×2 ideal normalized coordinates (x/z, y/z)."""
    pts = np.asarray(pixels, np.float64).reshape(-1, 1, 2)
    d = np.asarray(dist if dist is not None else [], np.float64)
    return _undistort(pts, np.asarray(K, np.float64), d, _EYE).reshape(-1, 2)


def undistort_pixels(pixels: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """N×2 distorted pixels -> N×2 undistorted pixels of the same camera matrix."""
    pts = np.asarray(pixels, float).reshape(-1, 2)
    if not intrinsics.dist or not np.any(intrinsics.dist):
        return pts
    K = intrinsics.matrix()
    return undistort_normalized(pts, K, intrinsics.dist) @ K[:2, :2].T + K[:2, 2]
