"""ChArUco boards: a chessboard whose white squares hold ArUco markers.

Corners are found by ``cv2.aruco.CharucoDetector`` (OpenCV >= 4.7 / 5.x API),
which interpolates chessboard corners between detected markers and refines them
to sub-pixel accuracy itself. Unlike a plain chessboard, a partly visible or
partly occluded board still gives usable corners, each with its id.

The board is given in squares (``squares_x`` × ``squares_y``), as OpenCV
creates it; it has (squares_x - 1) × (squares_y - 1) inner corners.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import StoresenseError
from .board import BoardView


def aruco_dictionary(name: str):
    """The predefined ArUco dictionary called ``name`` (e.g. ``DICT_4X4_50``)."""
    key = name.strip().upper()
    if not key.startswith("DICT_"):
        key = "DICT_" + key
    value = getattr(cv2.aruco, key, None)
    if not isinstance(value, int):
        known = sorted(n for n in dir(cv2.aruco) if n.startswith("DICT_") and n.upper() == n)
        raise StoresenseError(f"unknown ArUco dictionary {name!r}; known: {', '.join(known)}")
    return cv2.aruco.getPredefinedDictionary(value)


class CharucoPattern:
    """A ChArUco board: squares of ``square`` metres holding markers of ``marker`` metres."""

    def __init__(self, squares_x: int, squares_y: int, square: float, marker: float,
                 dictionary: str = "DICT_4X4_50", min_corners: int = 6):
        if squares_x < 3 or squares_y < 3:
            raise StoresenseError(f"ChArUco board {squares_x}x{squares_y}: needs at least 3x3 squares")
        if square <= 0 or marker <= 0:
            raise StoresenseError("ChArUco square and marker sizes must be positive (metres)")
        if marker >= square:
            raise StoresenseError(f"ChArUco marker size {marker} must be smaller than the square size {square}")
        self.squares_x, self.squares_y = squares_x, squares_y
        self.square, self.marker = float(square), float(marker)
        self.dictionary_name = dictionary
        self.min_corners = max(4, min_corners)
        dictionary_obj = aruco_dictionary(dictionary)
        needed = squares_x * squares_y // 2
        if dictionary_obj.bytesList.shape[0] < needed:
            raise StoresenseError(f"ArUco dictionary {dictionary} has {dictionary_obj.bytesList.shape[0]} markers; "
                                  f"a {squares_x}x{squares_y} ChArUco board needs {needed}")
        self.board = cv2.aruco.CharucoBoard((squares_x, squares_y), self.square, self.marker, dictionary_obj)
        self.detector = cv2.aruco.CharucoDetector(self.board)

    def detect(self, gray: np.ndarray, name: str) -> BoardView | None:
        """Interpolated ChArUco corners, or None when fewer than ``min_corners`` or all on one line."""
        corners, ids, _marker_corners, _marker_ids = self.detector.detectBoard(gray)
        if corners is None or ids is None or len(ids) < self.min_corners:
            return None
        obj, img = self.board.matchImagePoints(corners, ids)
        obj = obj.reshape(-1, 3).astype(np.float32)
        spread = np.linalg.svd(obj[:, :2] - obj[:, :2].mean(axis=0), compute_uv=False)
        if spread[1] < 1e-3 * max(spread[0], 1e-12):  # every corner on one line: no homography
            return None
        return BoardView(name, img.reshape(-1, 2).astype(np.float32), obj)

    def describe(self) -> dict:
        """Board parameters for the result file."""
        return {"type": "charuco", "squares_x": self.squares_x, "squares_y": self.squares_y,
                "square": self.square, "marker": self.marker, "dictionary": self.dictionary_name}

    def render(self, width: int, height: int, margin: int = 20) -> np.ndarray:
        """An image of the board (uint8), e.g. to print it or to test with."""
        return self.board.generateImage((width, height), marginSize=margin, borderBits=1)
