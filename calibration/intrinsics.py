"""Camera intrinsics from a folder of board images (chessboard or ChArUco).

:func:`calibrate_intrinsics` finds the board in every image, lists the images
where it is not found, and runs ``cv2.calibrateCamera`` with the chosen
:class:`CalibrationFlags`. The result (:class:`IntrinsicsResult`) holds the camera
matrix, the distortion coefficients, the RMS reprojection error returned by
OpenCV and, per view, the error and the residual of every corner; it is saved
as YAML and read back by ``storesense calibrate floor`` and ``report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..config import Intrinsics
from ..errors import StoresenseError
from .board import BoardView, CalibrationBoard
from .images import list_images, read_image
from .resultfile import load_result, save_result

MIN_VIEWS = 3

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CalibrationFlags:
    """Which camera-model simplifications ``cv2.calibrateCamera`` applies.

    ``fix_aspect`` keeps fx/fy at ``aspect_ratio``; ``zero_tangent`` sets p1 = p2 = 0;
    ``rational`` adds k4..k6 (8 coefficients); ``fix_principal_point`` keeps the
    principal point at the image centre.
    """

    fix_aspect: bool = False
    zero_tangent: bool = False
    rational: bool = False
    fix_principal_point: bool = False
    aspect_ratio: float = 1.0

    def to_cv(self) -> int:
        """The OpenCV ``CALIB_*`` bit mask."""
        flags = 0
        if self.fix_aspect:
            flags |= cv2.CALIB_FIX_ASPECT_RATIO
        if self.zero_tangent:
            flags |= cv2.CALIB_ZERO_TANGENT_DIST
        if self.rational:
            flags |= cv2.CALIB_RATIONAL_MODEL
        if self.fix_principal_point:
            flags |= cv2.CALIB_FIX_PRINCIPAL_POINT
        return flags

    def names(self) -> list[str]:
        """Names of the flags that are set, for the result file."""
        names = []
        if self.fix_aspect:
            names.append(f"fix_aspect_ratio={self.aspect_ratio:g}")
        for attr in ("zero_tangent", "rational", "fix_principal_point"):
            if getattr(self, attr):
                names.append(attr)
        return names


class ViewResult(BaseModel):
    """One image that took part in the calibration."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Image file name.")
    error_px: float = Field(description="RMS reprojection error of this view, pixels.")
    rvec: tuple[float, float, float] = Field(description="Board pose: Rodrigues rotation, board to camera.")
    tvec: tuple[float, float, float] = Field(description="Board pose: translation in metres.")
    points: list[tuple[float, float]] = Field(description="Detected corners, pixels.")
    residuals: list[tuple[float, float]] = Field(description="Detected minus reprojected corner, pixels.")


class IntrinsicsResult(BaseModel):
    """The result of an intrinsics calibration, as saved to YAML."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["storesense-intrinsics"] = "storesense-intrinsics"
    source: str = Field(description="Folder the images came from.")
    image_size: tuple[int, int] = Field(description="Width and height in pixels.")
    camera_matrix: list[list[float]] = Field(description="3×3 camera matrix K.")
    dist: list[float] = Field(description="OpenCV distortion coefficients k1 k2 p1 p2 k3 [k4 k5 k6].")
    rms: float = Field(description="RMS reprojection error over all corners, as returned by calibrateCamera.")
    flags: list[str] = Field(description="Calibration flags used.")
    board: dict = Field(description="The board: type and dimensions.")
    views: list[ViewResult] = Field(description="Views used, with their errors.")
    rejected: list[str] = Field(description="Images in which the board was not found.")

    def matrix(self) -> np.ndarray:
        """The camera matrix as a 3×3 array."""
        return np.asarray(self.camera_matrix, dtype=float)

    def intrinsics(self) -> Intrinsics:
        """The calibration as the store config's :class:`~storesense.config.Intrinsics`."""
        K = self.matrix()
        return Intrinsics(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], dist=list(self.dist))

    def save(self, path: str | Path) -> Path:
        """Write the result as YAML."""
        return save_result(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "IntrinsicsResult":
        """Read a result written by :meth:`save`; errors name the file."""
        return load_result(cls, path)


def detect_views(paths: list[Path], board: CalibrationBoard,
                 progress: Progress | None = None) -> tuple[list[BoardView], list[str], tuple[int, int]]:
    """Find the board in every image: (views found, names rejected, image size).

    Every image must be readable and of the same size; otherwise the error names it.
    """
    views, rejected = [], []
    size: tuple[int, int] | None = None
    first = None
    for i, path in enumerate(paths):
        gray = read_image(path)
        this = (gray.shape[1], gray.shape[0])
        if size is None:
            size, first = this, path.name
        elif this != size:
            raise StoresenseError(f"{path}: image is {this[0]}x{this[1]} but {first} is {size[0]}x{size[1]}; "
                                  "calibrate one camera resolution at a time")
        view = board.detect(gray, path.name)
        if view is None:
            rejected.append(path.name)
        else:
            views.append(view)
        if progress:
            progress(i + 1, len(paths), path.name)
    assert size is not None
    return views, rejected, size


def calibrate_views(views: list[BoardView], image_size: tuple[int, int], flags: CalibrationFlags,
                    *, source: str = "", board: dict | None = None, rejected: list[str] | None = None,
                    min_views: int = MIN_VIEWS) -> IntrinsicsResult:
    """Run ``cv2.calibrateCamera`` on board views and collect the per-view residuals."""
    rejected = list(rejected or [])
    if len(views) < min_views:
        missing = f"; board not found in: {', '.join(rejected)}" if rejected else ""
        raise StoresenseError(f"{source or 'images'}: board found in only {len(views)} of "
                              f"{len(views) + len(rejected)} images (need at least {min_views}){missing}")
    K0 = np.eye(3)
    if flags.fix_aspect:
        K0[0, 0] = flags.aspect_ratio  # calibrateCamera keeps fx/fy as given in the initial matrix
    dist0 = np.zeros((8 if flags.rational else 5, 1))
    obj = [v.object_points for v in views]
    img = [v.image_points.reshape(-1, 1, 2) for v in views]
    try:
        rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, image_size, K0, dist0, flags=flags.to_cv())
    except cv2.error as exc:
        raise StoresenseError(f"{source or 'images'}: calibration failed: {exc.err}") from None
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(dist))):
        raise StoresenseError(f"{source or 'images'}: calibration diverged (non-finite parameters); "
                              "use more views with the board tilted and in different image areas")
    results = []
    for view, rvec, tvec in zip(views, rvecs, tvecs):
        projected, _ = cv2.projectPoints(view.object_points, rvec, tvec, K, dist)
        residual = view.image_points.astype(float) - projected.reshape(-1, 2)
        # per-view error as OpenCV's sample computes it: sqrt(sum of squared distances / n)
        err = float(np.sqrt((residual ** 2).sum() / len(residual)))
        results.append(ViewResult(name=view.name, error_px=err, rvec=tuple(rvec.ravel()), tvec=tuple(tvec.ravel()),
                                  points=[tuple(p) for p in np.round(view.image_points.astype(float), 3)],
                                  residuals=[tuple(r) for r in np.round(residual, 4)]))
    return IntrinsicsResult(source=source, image_size=image_size, camera_matrix=K.tolist(),
                            dist=dist.ravel().tolist(), rms=float(rms), flags=flags.names(),
                            board=board or {}, views=results, rejected=rejected)


def calibrate_intrinsics(folder: str | Path, board: CalibrationBoard, flags: CalibrationFlags = CalibrationFlags(),
                         *, progress: Progress | None = None, min_views: int = MIN_VIEWS) -> IntrinsicsResult:
    """Calibrate a camera from the board images in ``folder``.

    Raises :class:`StoresenseError` for a missing or empty folder, an unreadable
    image, images of different sizes, or fewer than ``min_views`` usable views
    (the message lists the images where the board was not found).
    """
    paths = list_images(folder)
    views, rejected, size = detect_views(paths, board, progress)
    return calibrate_views(views, size, flags, source=str(folder), board=board.describe(),
                           rejected=rejected, min_views=min_views)
