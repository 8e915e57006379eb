"""Reading a folder of calibration images, with clear errors for what cannot be read."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import StoresenseError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}


def list_images(folder: str | Path) -> list[Path]:
    """The image files in ``folder``, sorted by name; raises when there is none.

    Files with other extensions (a result YAML lying next to the images, say)
    are ignored.
    """
    folder = Path(folder)
    if not folder.exists():
        raise StoresenseError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise StoresenseError(f"{folder}: not a folder of images")
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise StoresenseError(f"{folder}: cannot list: {exc}") from None
    if not files:
        raise StoresenseError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_image(path: str | Path, color: bool = False) -> np.ndarray:
    """The image at ``path`` as 8-bit grayscale (or BGR with ``color``).

    Raises naming the file when it cannot be read or decoded.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise StoresenseError(f"{path}: cannot read: {exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise StoresenseError(f"{path}: not a readable image (empty or corrupt)")
    return image
