"""Floor projection: where each person stands on the store floor, in metres, with a covariance.

A person's foot point (``Detections.foot_points``: the ankles' midpoint when
both are confidently seen, else the bottom centre of the box) is undistorted
with the camera's intrinsics (``cv2.undistortPoints``) when it has them, then
mapped through the image-to-floor homography (``Camera.image_to_floor_homography``:
the configured homography, or the one from intrinsics + extrinsics/mount).

The covariance propagates pixel noise through the homography's Jacobian at
that point, so it grows with distance from the camera (a pixel covers more
floor far away) and with box uncertainty: the foot point's pixel standard
deviation is ``pixel_sigma`` plus a fraction of the box size, larger when the
foot point comes from the box (where feet are guessed) than from the ankles,
and scaled up for low detection scores. A small isotropic floor term stands
for calibration error. Points on or above the horizon, behind the camera or
beyond ``max_range_m`` get no floor point.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...config import Camera
from ...contracts import FloorPoint
from .detections import Detections

#: Ankle keypoint score above which the ankles give the foot point (as Detections.foot_points uses).
ANKLE_SCORE = 0.5


class FloorProjector:
    """Maps image pixels of one calibrated camera to floor metres with covariances."""

    def __init__(self, camera: Camera, *, pixel_sigma: float = 2.0, box_sigma: float = 0.04,
                 ankle_sigma: float = 0.015, floor_sigma_m: float = 0.05, max_range_m: float = 30.0):
        self.camera = camera
        self.pixel_sigma = pixel_sigma
        self.box_sigma = box_sigma
        self.ankle_sigma = ankle_sigma
        self.floor_var = floor_sigma_m ** 2
        self.max_range_m = max_range_m
        self.H = camera.image_to_floor_homography()
        intr = camera.intrinsics
        self._K = intr.matrix() if intr is not None else None
        self._dist = np.asarray(intr.dist, dtype=float) if intr is not None and any(intr.dist) else None
        self._pose = None
        if camera.extrinsics is not None or camera.mount is not None:
            self._pose = camera.rotation_translation()
        self.position = self._camera_position()
        # sign of the homogeneous coordinate for pixels that see the floor (calibrated cameras: checked
        # with depth instead; homography only: the bottom centre of the image is taken to see the floor)
        w, h = camera.resolution
        self._sign = float(np.sign(self.H[2] @ np.array([w / 2, h - 1, 1.0])) or 1.0)

    def _camera_position(self) -> np.ndarray | None:
        """Camera centre on the floor plan (x, y), when the pose is known."""
        if self._pose is None:
            return None
        R, t = self._pose
        return (-R.T @ t)[:2]

    def undistort(self, uv: np.ndarray) -> np.ndarray:
        """Pixels with lens distortion removed (unchanged when the camera has none)."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if self._dist is None or not len(uv):
            return uv
        out = cv2.undistortPoints(uv.reshape(-1, 1, 2), self._K, self._dist, P=self._K)
        return out.reshape(-1, 2)

    def image_to_floor(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Floor points (N×2, metres) for pixels ``uv`` (N×2) and which of them are valid."""
        und = self.undistort(uv)
        hom = np.c_[und, np.ones(len(und))] @ self.H.T
        w = hom[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = hom[:, :2] / w[:, None]
        valid = np.isfinite(xy).all(axis=1)
        if self._pose is not None:
            R, t = self._pose
            depth = np.c_[xy, np.zeros(len(xy))] @ R[2] + t[2]
            valid &= depth > 1e-6
        else:
            valid &= w * self._sign > 0
        if self.position is not None:
            valid &= np.linalg.norm(xy - self.position, axis=1) <= self.max_range_m
        return xy, valid

    def jacobian(self, uv_undistorted: np.ndarray) -> np.ndarray:
        """N×2×2 derivative of floor (x, y) with respect to undistorted pixel (u, v)."""
        H = self.H
        uv = np.asarray(uv_undistorted, dtype=np.float64).reshape(-1, 2)
        hom = np.c_[uv, np.ones(len(uv))] @ H.T
        w = hom[:, 2]
        x, y = hom[:, 0] / w, hom[:, 1] / w
        J = np.empty((len(uv), 2, 2))
        J[:, 0, 0] = (H[0, 0] - x * H[2, 0]) / w
        J[:, 0, 1] = (H[0, 1] - x * H[2, 1]) / w
        J[:, 1, 0] = (H[1, 0] - y * H[2, 0]) / w
        J[:, 1, 1] = (H[1, 1] - y * H[2, 1]) / w
        return J

    def pixel_covariance(self, dets: Detections) -> np.ndarray:
        """N×2×2 pixel covariance of each foot point: noise floor + box-size share, worse for low scores."""
        wh = np.c_[dets.xyxy[:, 2] - dets.xyxy[:, 0], dets.xyxy[:, 3] - dets.xyxy[:, 1]].clip(1.0)
        rel = np.full(len(dets), self.box_sigma)
        if dets.keypoints is not None and dets.keypoints.shape[1] == 17:
            from_ankles = (dets.keypoints[:, 15:17, 2] > ANKLE_SCORE).all(axis=1)
            rel[from_ankles] = self.ankle_sigma
        confidence = 1.0 / np.sqrt(dets.scores.clip(0.05, 1.0))
        sigma = (self.pixel_sigma + rel[:, None] * wh) * confidence[:, None]
        cov = np.zeros((len(dets), 2, 2))
        cov[:, 0, 0] = sigma[:, 0] ** 2
        cov[:, 1, 1] = sigma[:, 1] ** 2
        return cov

    def floor_covariance(self, uv: np.ndarray, pixel_cov: np.ndarray) -> np.ndarray:
        """N×2×2 floor covariance (m²): J Σ_px Jᵀ plus the calibration floor term."""
        J = self.jacobian(self.undistort(uv))
        cov = J @ pixel_cov @ J.transpose(0, 2, 1)
        cov[:, 0, 0] += self.floor_var
        cov[:, 1, 1] += self.floor_var
        return 0.5 * (cov + cov.transpose(0, 2, 1))

    def project(self, dets: Detections) -> list[FloorPoint | None]:
        """A FloorPoint (or None where the foot point does not land on the floor) per detection."""
        if not len(dets):
            return []
        feet = dets.foot_points
        xy, valid = self.image_to_floor(feet)
        cov = self.floor_covariance(feet, self.pixel_covariance(dets))
        out: list[FloorPoint | None] = []
        for i in range(len(dets)):
            if not valid[i]:
                out.append(None)
                continue
            c = cov[i]
            out.append(FloorPoint(x=float(xy[i, 0]), y=float(xy[i, 1]),
                                  cov=((float(c[0, 0]), float(c[0, 1])), (float(c[1, 0]), float(c[1, 1])))))
        return out
