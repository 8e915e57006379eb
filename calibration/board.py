"""What a calibration board is, to the intrinsics calibration: one interface for every pattern.

A board finds its corners in a grayscale image and says where those corners
are on the board itself (metres, z = 0). :class:`Chessboard` and
:class:`CharucoPattern` implement it; :func:`calibrate_intrinsics` only ever
talks to this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import StoresenseError


@dataclass(frozen=True)
class BoardView:
    """The board corners found in one image.

    ``image_points`` is N×2 float32 pixels and ``object_points`` the matching
    N×3 float32 board coordinates in metres (z = 0).
    """

    name: str
    image_points: np.ndarray
    object_points: np.ndarray


class CalibrationBoard(Protocol):
    """A calibration pattern that can be found in an image."""

    def detect(self, gray: np.ndarray, name: str) -> BoardView | None:
        """Corners of the board in ``gray`` (uint8), or None when the board is not found."""
        ...

    def describe(self) -> dict:
        """The board's parameters as plain data, for the calibration result file."""
        ...


def parse_board_size(text: str) -> tuple[int, int]:
    """``"9x6"`` -> ``(9, 6)``; a clear error for anything else."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        cols, rows = (int(p) for p in parts)
    except ValueError:
        raise StoresenseError(f"--board {text!r}: expected COLSxROWS, e.g. 9x6") from None
    if cols < 2 or rows < 2:
        raise StoresenseError(f"--board {text!r}: both dimensions must be at least 2")
    return cols, rows
