"""Active regions: where a fixed camera's frame changes or people were just seen, and the passes that cover them.

A fixed camera sees mostly static background. Between full scans of the static
plan (:mod:`.tiling`), the tiled detector runs the model only on the *active
regions* of a frame (``detector.regions``):

* **motion**: the frame, grey and downscaled to :data:`MOTION_WIDTH` px wide, against a
  running-average background; the frame's median difference is taken out first, so
  a global lighting change or flicker does not count as motion; a frame where more
  than ``global_change`` moves at once (camera moved, light switched) asks for a full
  scan and restarts the background;
* **people**: the boxes detected in the last ``hold_frames`` frames and the node's live
  tracks (:meth:`TiledDetector.note_tracks`), so a shopper standing still at a shelf
  keeps being detected.

Each region is padded, overlapping ones are united, and the tiled detector covers each
(:func:`~storesense.edge.camera.tiling.region_passes`) at the largest scale (toward
``person_px``, at most ``max_upscale``) whose model pixels,
with the full-frame pass, fit those of the static plan (never more than a full scan).
A frame whose regions do not fit at the static plan's scale runs the static plan.
After the frame's passes, live tracks no detection matched get a tight look of their own within
the model pixels left of ``max_input_px`` (``track_looks``,
:func:`~storesense.edge.camera.tiling.track_looks`).
"""

from __future__ import annotations

import numpy as np

from ...config import RegionSettings

#: Width of the grey frame motion is found in, pixels.
MOTION_WIDTH = 192
#: Weight of the newest frame in the running-average background.
BACKGROUND_ALPHA = 0.15
#: Moving blobs smaller than this many motion-frame pixels are noise.
MIN_BLOB_PX = 6


class MotionMask:
    """Moving pixels of a fixed camera's frames: running-average background on a small grey frame."""

    def __init__(self, settings: RegionSettings):
        self.settings = settings
        self.background: np.ndarray | None = None

    def boxes(self, frame: np.ndarray) -> np.ndarray | None:
        """(n, 4) xyxy frame-pixel boxes around moving blobs; None when most of the frame changed (full scan)."""
        import cv2

        h, w = frame.shape[:2]
        f = MOTION_WIDTH / w
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        small = cv2.resize(grey, (MOTION_WIDTH, max(8, round(h * f))), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32)
        if self.background is None or self.background.shape != small.shape:
            self.background = small
            return None
        diff = small - self.background
        diff -= float(np.median(diff))  # a global brightness change is not motion
        moving = np.abs(diff) > self.settings.motion_threshold
        if float(moving.mean()) > self.settings.global_change:
            self.background = small
            return None
        # moving pixels adapt slowly (a person standing still fades in over a few seconds), the rest quickly
        alpha = np.where(moving, BACKGROUND_ALPHA / 3, BACKGROUND_ALPHA).astype(np.float32)
        self.background += alpha * (small - self.background)
        mask = cv2.dilate(moving.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        stats = stats[1:]
        stats = stats[stats[:, cv2.CC_STAT_AREA] >= MIN_BLOB_PX]
        if not len(stats):
            return np.zeros((0, 4))
        x, y, bw, bh = (stats[:, i].astype(float) for i in range(4))
        return np.c_[x, y, x + bw, y + bh] / f


def unite(boxes: np.ndarray) -> np.ndarray:
    """Boxes (xyxy) merged until none overlaps another: each result is the bounding box of a connected group."""
    boxes = [list(map(float, b)) for b in boxes]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        out: list[list[float]] = []
        for b in boxes:
            for o in out:
                if b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]:
                    o[:] = [min(o[0], b[0]), min(o[1], b[1]), max(o[2], b[2]), max(o[3], b[3])]
                    merged = True
                    break
            else:
                out.append(b)
        boxes = out
    return np.asarray(boxes, float).reshape(-1, 4)


__all__ = ["MotionMask", "unite"]
