"""Privacy on the camera node: frames never leave it, and local recordings blur heads.

The node publishes only boxes, keypoints, track ids and floor points. When an
operator asks for a local recording (evidence or debugging), :class:`VideoRecorder`
writes it on the node itself and, unless told otherwise, blurs every person's
head first: the head region comes from the nose, eye and ear keypoints when
they are seen, else from the top of the person's box.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ...errors import StoresenseError
from .detections import Detections

log = logging.getLogger(__name__)

#: COCO indices of the face keypoints: nose, eyes, ears.
HEAD_KEYPOINTS = (0, 1, 2, 3, 4)
#: COCO indices of the shoulders (to size the head when only the face points are seen).
SHOULDERS = (5, 6)


def head_boxes(dets: Detections, frame_shape: tuple[int, ...], min_score: float = 0.2) -> np.ndarray:
    """N×4 pixel boxes (x1, y1, x2, y2) around each person's head, clipped to the frame."""
    h, w = frame_shape[:2]
    out = np.zeros((len(dets), 4))
    for i in range(len(dets)):
        x1, y1, x2, y2 = dets.xyxy[i]
        bw, bh = max(1.0, x2 - x1), max(1.0, y2 - y1)
        box = None
        if dets.keypoints is not None and dets.keypoints.shape[1] == 17:
            kp = dets.keypoints[i]
            face = kp[list(HEAD_KEYPOINTS)]
            face = face[face[:, 2] >= min_score]
            if len(face):
                cx, cy = face[:, 0].mean(), face[:, 1].mean()
                spread = max(np.ptp(face[:, 0]), np.ptp(face[:, 1])) if len(face) > 1 else 0.0
                shoulders = kp[list(SHOULDERS)]
                shoulder_w = (abs(shoulders[0, 0] - shoulders[1, 0])
                              if (shoulders[:, 2] >= min_score).all() else 0.0)
                size = max(1.8 * spread, 0.7 * shoulder_w, 0.18 * bh, 0.35 * bw, 12.0)
                box = (cx - size / 2, cy - size * 0.6, cx + size / 2, cy + size * 0.5)
        if box is None:  # no face keypoints: the top of the box, where a standing person's head is
            size = max(0.25 * bh, 0.5 * bw, 12.0) if bh > bw else max(0.5 * min(bw, bh), 12.0)
            cx = (x1 + x2) / 2
            box = (cx - size / 2, y1 - 0.1 * size, cx + size / 2, y1 + size)
        out[i] = box
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def blur_heads(frame: np.ndarray, dets: Detections, *, strength: int = 8) -> np.ndarray:
    """A copy of ``frame`` with every person's head pixelated beyond recognition."""
    out = frame.copy()
    for x1, y1, x2, y2 in head_boxes(dets, frame.shape).round().astype(int):
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        roi = out[y1:y2, x1:x2]
        small = cv2.resize(roi, (max(1, (x2 - x1) // strength), max(1, (y2 - y1) // strength)),
                           interpolation=cv2.INTER_AREA)
        roi[:] = cv2.GaussianBlur(cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST),
                                  (0, 0), sigmaX=max(1.0, (x2 - x1) / 10))
    return out


class VideoRecorder:
    """Writes a local video on the node, heads blurred unless ``blur=False``, optionally with an overlay.

    ``overlay(image, dets)`` draws on the (already blurred) frame before it is
    written, e.g. :func:`storesense.edge.camera.drawing.draw_debug`. The file is
    opened at the first frame with that frame's size; ``.mp4``/``.m4v`` use the
    mp4v codec, anything else MJPG.
    """

    def __init__(self, path: str | Path, fps: float, *, blur: bool = True,
                 overlay: Callable[[np.ndarray, Detections], np.ndarray] | None = None):
        self.path = Path(path)
        self.fps = fps if fps > 0 else 10.0
        self.blur = blur
        self.overlay = overlay
        self.frames = 0
        self._writer = None

    def _open(self, size: tuple[int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = "mp4v" if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), self.fps, size)
        if not writer.isOpened():
            raise StoresenseError(f"{self.path}: cannot write a video here (check the folder and the extension)")
        self._writer = writer
        if not self.blur:
            log.warning("%s: recording WITHOUT head blurring (--no-blur); keep this file on the node", self.path)

    def write(self, frame: np.ndarray, dets: Detections) -> None:
        """Blur (by default), draw the overlay (if any) and append one frame."""
        if self._writer is None:
            self._open((frame.shape[1], frame.shape[0]))
        image = blur_heads(frame, dets) if self.blur else frame.copy()
        if self.overlay is not None:
            image = self.overlay(image, dets)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
