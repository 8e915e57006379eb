"""The classic chessboard: inner corners found by OpenCV, refined with cornerSubPix.

The detection follows OpenCV's calibration sample (samples/cpp/calibration.cpp):
``findChessboardCorners`` with adaptive threshold, image normalisation and the
fast check, then ``cornerSubPix`` with an 11×11 half-window and the sample's
termination criteria (30 iterations or a step below 0.1 px). With the same
flags this reproduces OpenCV's published ``left_intrinsics.yml`` for its
``left*.jpg`` images (see tests/calibration/test_intrinsics.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import StoresenseError
from .board import BoardView

FIND_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 0.1)


class Chessboard:
    """A chessboard with ``cols`` × ``rows`` inner corners and squares of ``square`` metres."""

    def __init__(self, cols: int, rows: int, square: float, subpix_window: int = 11):
        if cols < 2 or rows < 2:
            raise StoresenseError(f"chessboard {cols}x{rows}: needs at least 2x2 inner corners")
        if square <= 0:
            raise StoresenseError(f"chessboard square size {square}: must be positive (metres)")
        self.cols, self.rows, self.square = cols, rows, float(square)
        self.subpix_window = subpix_window
        grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2)  # row-major, x fastest, as OpenCV orders corners
        self.object_points = np.zeros((cols * rows, 3), np.float32)
        self.object_points[:, :2] = grid * self.square

    def detect(self, gray: np.ndarray, name: str) -> BoardView | None:
        """Inner corners of the board, sub-pixel refined, or None when not all are found."""
        found, corners = cv2.findChessboardCorners(gray, (self.cols, self.rows), flags=FIND_FLAGS)
        if not found:
            return None
        w = self.subpix_window
        corners = cv2.cornerSubPix(gray, corners, (w, w), (-1, -1), SUBPIX_CRITERIA)
        return BoardView(name, corners.reshape(-1, 2).astype(np.float32), self.object_points)

    def describe(self) -> dict:
        """Board parameters for the result file."""
        return {"type": "chessboard", "cols": self.cols, "rows": self.rows, "square": self.square,
                "subpix_window": self.subpix_window}
