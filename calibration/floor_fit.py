"""Map a camera to the floor: a pose (intrinsics known) or a homography (intrinsics unknown).

:func:`fit_floor` checks the correspondences, picks the method, fits it with
outlier rejection and returns a :class:`FloorFit`: the calibration to write into
the store config plus every point's residual in pixels and in centimetres on
the floor, and whether RANSAC kept it. The fit can be saved as YAML and drawn by
``storesense calibrate report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..config import Extrinsics, Intrinsics
from ..errors import StoresenseError
from .correspondences import Correspondences, check_correspondences
from .homography import fit_homography, homography_residuals
from ..geometry.lens import undistort_pixels
from .pnp import fit_pnp, pnp_residuals
from .resultfile import load_result, save_result

Method = Literal["auto", "pnp", "homography"]
FEW_POINTS = 6


class FitPoint(BaseModel):
    """One correspondence and how well the fit explains it."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="Point name (file row or marker corner).")
    u: float = Field(description="Observed pixel column.")
    v: float = Field(description="Observed pixel row.")
    x: float = Field(description="Floor x, metres.")
    y: float = Field(description="Floor y, metres.")
    z: float = Field(description="Height above the floor, metres.")
    inlier: bool = Field(description="Kept by RANSAC.")
    du: float = Field(description="Observed minus fitted pixel column.")
    dv: float = Field(description="Observed minus fitted pixel row.")
    residual_px: float = Field(description="Image residual, pixels.")
    residual_cm: float | None = Field(description="Floor residual, centimetres (None: ray misses the floor).")


class FloorFit(BaseModel):
    """A fitted camera-to-floor mapping and its residuals."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["storesense-floor-fit"] = "storesense-floor-fit"
    camera: str = Field(default="", description="Camera id in the store config.")
    source: str = Field(description="Where the correspondences came from.")
    method: Literal["pnp", "homography"] = Field(description="What was fitted.")
    threshold_px: float = Field(description="RANSAC inlier threshold, pixels.")
    image_size: tuple[int, int] | None = Field(default=None, description="Camera resolution, pixels.")
    intrinsics: Intrinsics | None = Field(default=None, description="Intrinsics used (pnp, or undistortion).")
    rvec: tuple[float, float, float] | None = Field(default=None, description="Pose (pnp): Rodrigues, floor to camera.")
    tvec: tuple[float, float, float] | None = Field(default=None, description="Pose (pnp): translation, metres.")
    homography: list[list[float]] | None = Field(default=None, description="Image-to-floor homography (homography).")
    points: list[FitPoint] = Field(description="Every correspondence with its residual.")
    notes: list[str] = Field(default_factory=list, description="Remarks, e.g. markers not found.")

    def inlier_count(self) -> int:
        """Points RANSAC kept."""
        return sum(p.inlier for p in self.points)

    def rms_px(self) -> float:
        """RMS image residual over the inliers, pixels."""
        r = [p.residual_px for p in self.points if p.inlier]
        return float(np.sqrt(np.mean(np.square(r)))) if r else float("nan")

    def rms_cm(self) -> float:
        """RMS floor residual over the inliers, centimetres."""
        r = [p.residual_cm for p in self.points if p.inlier and p.residual_cm is not None]
        return float(np.sqrt(np.mean(np.square(r)))) if r else float("nan")

    def extrinsics(self) -> Extrinsics | None:
        """The pose as the store config's :class:`~storesense.config.Extrinsics` (pnp fits)."""
        if self.rvec is None or self.tvec is None:
            return None
        return Extrinsics(rvec=self.rvec, tvec=self.tvec)

    def camera_position(self) -> np.ndarray | None:
        """Camera centre in floor metres (pnp fits)."""
        if self.rvec is None or self.tvec is None:
            return None
        R, _ = cv2.Rodrigues(np.asarray(self.rvec, float))
        return -R.T @ np.asarray(self.tvec, float)

    def save(self, path: str | Path) -> Path:
        """Write the fit as YAML."""
        return save_result(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "FloorFit":
        """Read a fit written by :meth:`save`; errors name the file."""
        return load_result(cls, path)


def _points(corr: Correspondences, mask: np.ndarray, d_px: np.ndarray, err_m: np.ndarray) -> list[FitPoint]:
    out = []
    for i, label in enumerate(corr.labels):
        cm = float(err_m[i]) * 100.0
        out.append(FitPoint(label=label, u=float(corr.image[i, 0]), v=float(corr.image[i, 1]),
                            x=float(corr.floor[i, 0]), y=float(corr.floor[i, 1]), z=float(corr.floor[i, 2]),
                            inlier=bool(mask[i]), du=float(d_px[i, 0]), dv=float(d_px[i, 1]),
                            residual_px=float(np.hypot(*d_px[i])), residual_cm=cm if np.isfinite(cm) else None))
    return out


def fit_floor(corr: Correspondences, intrinsics: Intrinsics | None = None, *, method: Method = "auto",
              threshold_px: float = 4.0, camera: str = "",
              image_size: tuple[int, int] | None = None) -> FloorFit:
    """Fit the camera to the floor from correspondences.

    ``method="auto"`` fits a pose (PnP) when ``intrinsics`` are given and a
    homography otherwise. Raises :class:`StoresenseError` for degenerate input
    (fewer than four points, duplicates, collinear points), for ``pnp`` without
    intrinsics, and when no model agrees with four or more points.
    """
    if threshold_px <= 0:
        raise StoresenseError(f"RANSAC threshold {threshold_px} px: must be positive")
    chosen = method if method != "auto" else ("pnp" if intrinsics is not None else "homography")
    if chosen == "pnp" and intrinsics is None:
        raise StoresenseError(f"camera {camera or '?'}: a pose (pnp) needs intrinsics; give --intrinsics FILE, "
                              "set them in the store config, or fit a homography")
    check_correspondences(corr, planar_required=chosen == "homography")
    notes = list(corr.notes)
    if len(corr) < FEW_POINTS:
        notes.append(f"only {len(corr)} points: too few to catch a wrong one reliably; use {FEW_POINTS} or more "
                     "spread over the floor")
    if chosen == "pnp":
        assert intrinsics is not None
        rvec, tvec, mask = fit_pnp(corr, intrinsics, threshold_px)
        d_px, err_m = pnp_residuals(corr, intrinsics.matrix(), np.asarray(intrinsics.dist or [], float), rvec, tvec)
        return FloorFit(camera=camera, source=corr.source, method="pnp", threshold_px=threshold_px,
                        image_size=image_size, intrinsics=intrinsics, rvec=tuple(map(float, rvec)),
                        tvec=tuple(map(float, tvec)), points=_points(corr, mask, d_px, err_m), notes=notes)
    image = undistort_pixels(corr.image, intrinsics) if intrinsics is not None else corr.image
    if intrinsics is not None and intrinsics.dist and np.any(intrinsics.dist):
        notes.append("pixels undistorted with the given intrinsics before fitting; the homography maps "
                     "undistorted pixels and the pixel residuals are in undistorted pixels")
    H, mask = fit_homography(image, corr.floor[:, :2], threshold_px, corr.source)
    d_px, err_m = homography_residuals(image, corr.floor[:, :2], H)
    return FloorFit(camera=camera, source=corr.source, method="homography", threshold_px=threshold_px,
                    image_size=image_size, intrinsics=intrinsics, homography=H.tolist(),
                    points=_points(corr, mask, d_px, err_m), notes=notes)
