"""Image-to-floor homography when the intrinsics are not known.

``cv2.findHomography`` with RANSAC (threshold in pixels: the fit maps floor to
image, where the measurement noise is) rejects outliers and refines on the
inliers. When intrinsics are known the pixels are undistorted first, so the
stored homography maps undistorted pixels, as
:meth:`storesense.config.Camera.image_to_floor_homography` expects.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import StoresenseError
from .correspondences import Correspondences


def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map N×2 points through the 3×3 homography ``H`` (NaN where they go to infinity)."""
    pts = np.asarray(points, float).reshape(-1, 2)
    h = np.c_[pts, np.ones(len(pts))] @ np.asarray(H, float).T
    with np.errstate(divide="ignore", invalid="ignore"):
        out = h[:, :2] / h[:, 2:3]
    out[~np.isfinite(out).all(axis=1)] = np.nan
    return out


def homography_residuals(image: np.ndarray, floor_xy: np.ndarray,
                         H_image_to_floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point: (observed - mapped pixels, N×2) and the floor error in metres (N,)."""
    mapped_px = apply_homography(np.linalg.inv(H_image_to_floor), floor_xy)
    mapped_floor = apply_homography(H_image_to_floor, image)
    return image - mapped_px, np.linalg.norm(mapped_floor - floor_xy, axis=1)


def fit_homography(image: np.ndarray, floor_xy: np.ndarray, threshold_px: float = 4.0,
                   source: str = "<points>") -> tuple[np.ndarray, np.ndarray]:
    """The image-to-floor homography (H[2,2] = 1) and the inlier mask."""
    try:
        H, mask = cv2.findHomography(floor_xy.astype(np.float64), image.astype(np.float64), cv2.RANSAC,
                                     ransacReprojThreshold=threshold_px, maxIters=5000, confidence=0.999)
    except cv2.error as exc:
        raise StoresenseError(f"{source}: homography failed: {exc.err}") from None
    if H is None or mask is None or int(mask.sum()) < 4 or abs(np.linalg.det(H)) < 1e-12:
        raise StoresenseError(f"{source}: no homography agrees with at least 4 of the {len(image)} points "
                              f"within {threshold_px} px; check the point list")
    mask = mask.ravel().astype(bool)
    d_px = image - apply_homography(H, floor_xy)
    mask &= np.linalg.norm(d_px, axis=1) <= threshold_px  # after findHomography's refinement on the inliers
    if mask.sum() < 4:
        raise StoresenseError(f"{source}: no homography agrees with at least 4 of the {len(image)} points "
                              f"within {threshold_px} px after refinement; check the point list")
    H_inv = np.linalg.inv(H)
    if abs(H_inv[2, 2]) > 1e-12:
        H_inv /= H_inv[2, 2]
    return H_inv, mask


def pose_from_homography(H_image_to_floor: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recover (rvec, tvec) from an image-to-floor homography and known K (no distortion).

    The floor-to-image homography is s·K[r1 r2 t]; the sign of s is fixed by the
    camera being above the floor (det[r1 r2 t] = -height < 0) and the rotation is
    made orthonormal by SVD.
    """
    M = np.linalg.inv(K) @ np.linalg.inv(H_image_to_floor)
    scale = 2.0 / (np.linalg.norm(M[:, 0]) + np.linalg.norm(M[:, 1]))
    M = M * scale
    if np.linalg.det(M) > 0:
        M = -M
    r1, r2, t = M[:, 0], M[:, 1], M[:, 2]
    R = np.c_[r1, r2, np.cross(r1, r2)]
    U, _, Vt = np.linalg.svd(R)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        R = U @ np.diag([1.0, 1.0, -1.0]) @ Vt
    rvec, _ = cv2.Rodrigues(R)
    return rvec.reshape(3), t
