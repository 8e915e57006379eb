"""Camera pose from floor correspondences when the intrinsics are known (Perspective-n-Point).

``cv2.solvePnPRansac`` finds the pose agreeing with most points (outliers such
as a mistyped coordinate are rejected), then ``cv2.solvePnPRefineLM`` polishes
it on the inliers; the inlier set is re-evaluated with the refined pose and the
refinement repeated until it no longer changes. Residuals are reported in
pixels (reprojection, with distortion) and on the floor in centimetres (the
pixel's ray intersected with the point's height plane).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..config import Intrinsics
from ..errors import StoresenseError
from .correspondences import Correspondences
from ..geometry.lens import undistort_normalized


def pnp_residuals(corr: Correspondences, K: np.ndarray, dist: np.ndarray, rvec: np.ndarray,
                  tvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point: (observed - reprojected pixels, N×2) and the floor error in metres (N,).

    The floor error is the distance in the point's horizontal plane between the
    true floor position and where the observed pixel's ray meets that plane;
    NaN when the ray does not meet it in front of the camera.
    """
    projected, _ = cv2.projectPoints(corr.floor.astype(np.float64), rvec, tvec, K, dist)
    d_px = corr.image - projected.reshape(-1, 2)
    normalized = undistort_normalized(corr.image, K, dist)
    R, _ = cv2.Rodrigues(rvec)
    t = np.asarray(tvec, float).reshape(3)
    centre = -R.T @ t
    rays = np.c_[normalized, np.ones(len(normalized))] @ R  # R.T @ ray for each row
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (corr.floor[:, 2] - centre[2]) / rays[:, 2]
    hit = centre[None, :] + s[:, None] * rays
    err_m = np.linalg.norm(hit[:, :2] - corr.floor[:, :2], axis=1)
    err_m[~np.isfinite(s) | (s <= 0)] = np.nan
    return d_px, err_m


def fit_pnp(corr: Correspondences, intrinsics: Intrinsics, threshold_px: float = 4.0,
            max_rounds: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose (rvec, tvec: floor to camera) and the inlier mask, robust to outliers.

    Raises :class:`StoresenseError` when fewer than four points agree on a pose,
    or when the best pose puts the points behind the camera or the camera under
    the floor (the floor coordinates are then usually mirrored: x must point
    right and y up the plan, z up).
    """
    K = intrinsics.matrix()
    dist = np.asarray(intrinsics.dist or [], dtype=float)
    obj = corr.floor.astype(np.float64)
    img = corr.image.astype(np.float64)
    try:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(obj, img, K, dist, reprojectionError=threshold_px,
                                                     iterationsCount=2000, confidence=0.999)
    except cv2.error as exc:
        raise StoresenseError(f"{corr.source}: PnP failed: {exc.err}") from None
    if not ok or inliers is None or len(inliers) < 4:
        found = 0 if inliers is None else len(inliers)
        raise StoresenseError(f"{corr.source}: no camera pose agrees with at least 4 of the {len(corr)} points "
                              f"(best: {found} within {threshold_px} px); check the point list")
    mask = np.zeros(len(corr), bool)
    mask[inliers.ravel()] = True
    for _ in range(max_rounds):
        rvec, tvec = cv2.solvePnPRefineLM(obj[mask], img[mask], K, dist, rvec, tvec)
        d_px, _ = pnp_residuals(corr, K, dist, rvec, tvec)
        new_mask = np.linalg.norm(d_px, axis=1) <= threshold_px
        if np.array_equal(new_mask, mask) or new_mask.sum() < 4:
            mask = new_mask
            break
        mask = new_mask
    if mask.sum() < 4:
        raise StoresenseError(f"{corr.source}: no camera pose agrees with at least 4 of the {len(corr)} points "
                              f"within {threshold_px} px after refinement (best: {int(mask.sum())}); "
                              "check the point list")
    R, _ = cv2.Rodrigues(rvec)
    depth = obj[mask] @ R[2] + float(tvec.ravel()[2])
    if np.any(depth <= 0):
        raise StoresenseError(f"{corr.source}: the fitted pose puts {int((depth <= 0).sum())} point(s) behind "
                              "the camera; check the point list")
    height = float((-R.T @ tvec.reshape(3))[2])
    if height <= 0:
        raise StoresenseError(f"{corr.source}: the fitted pose puts the camera {-height:.2f} m under the floor; "
                              "are the floor coordinates mirrored? (x right, y up the floor plan, z up)")
    return rvec.reshape(3), tvec.reshape(3), mask
