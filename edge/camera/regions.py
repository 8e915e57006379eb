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

Each region is padded, overlapping ones are united, and each is covered by tiles at
the largest scale (toward ``person_px``, at most ``max_upscale``) whose model pixels,
with the full-frame pass, fit ``max_input_px``. A frame whose regions do not fit at
the static plan's scale runs the static plan.
"""

from __future__ import annotations

import math

import numpy as np

from ...config import RegionSettings
from .tiling import Pass, TilingPlan

#: Width of the grey frame motion is found in, pixels.
MOTION_WIDTH = 192
#: Weight of the newest frame in the running-average background.
BACKGROUND_ALPHA = 0.15
#: Moving blobs smaller than this many motion-frame pixels are noise.
MIN_BLOB_PX = 6
#: At most this many region passes per frame (each pass has a fixed cost besides its pixels).
MAX_REGION_PASSES = 8


class MotionMask:
    """Moving pixels of a fixed camera's frames: running-average background on a small grey frame."""

    def __init__(self, settings: RegionSettings):
        self.settings = settings
        self.background: np.ndarray | None = None
        self.changed_share = 0.0

    def reset(self) -> None:
        """Forget the background (the next frame becomes it)."""
        self.background = None

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
            self.changed_share = 1.0
            return None
        diff = small - self.background
        diff -= float(np.median(diff))  # a global brightness change is not motion
        moving = np.abs(diff) > self.settings.motion_threshold
        self.changed_share = float(moving.mean())
        if self.changed_share > self.settings.global_change:
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


def expected_heights(samples: np.ndarray, box: np.ndarray, fallback: float) -> tuple[float, float]:
    """The (smallest, largest) person height expected with feet inside ``box`` (the plan's samples), else ``fallback``."""
    if len(samples):
        inside = ((samples[:, 0] >= box[0]) & (samples[:, 0] <= box[2]) & (samples[:, 1] >= box[1])
                  & (samples[:, 1] <= box[3]))
        if inside.any():
            return float(samples[inside, 2].min()), float(samples[inside, 2].max())
    return fallback, fallback


def _cover(box: np.ndarray, s: float, frame_size: tuple[int, int], tile_input: tuple[int, int],
           overlap: float, heights: tuple[float, float]) -> list[Pass]:
    """Passes at scale ``s`` covering ``box``: one crop at its own input size when it fits a tile, else tiles."""
    w, h = frame_size
    th_in, tw_in = tile_input
    tw, th = min(w, tw_in / s), min(h, th_in / s)
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw <= tw and bh <= th:
        # one crop, its input the box at scale s (multiples of 32)
        iw, ih = max(32, math.ceil(bw * s / 32) * 32), max(32, math.ceil(bh * s / 32) * 32)
        cw, ch = min(w, iw / s), min(h, ih / s)
        x0 = float(np.clip((box[0] + box[2] - cw) / 2, 0, w - cw))
        y0 = float(np.clip((box[1] + box[3] - ch) / 2, 0, h - ch))
        return [Pass(int(round(x0)), int(round(y0)), int(round(cw)), int(round(ch)), (ih, iw), heights=heights)]
    ov_x, ov_y = min(0.9 * tw, overlap * 0.6), min(0.9 * th, overlap)
    nx = 1 if bw <= tw else math.ceil((bw - ov_x) / (tw - ov_x))
    ny = 1 if bh <= th else math.ceil((bh - ov_y) / (th - ov_y))
    xs = np.linspace(box[0], box[2] - tw, nx) if nx > 1 else [(box[0] + box[2] - tw) / 2]
    ys = np.linspace(box[1], box[3] - th, ny) if ny > 1 else [(box[1] + box[3] - th) / 2]
    return [Pass(int(round(np.clip(x, 0, w - tw))), int(round(np.clip(y, 0, h - th))), int(round(tw)), int(round(th)),
                 (th_in, tw_in), heights=heights) for y in ys for x in xs]


def region_passes(regions: np.ndarray, static: TilingPlan, settings, frame_size: tuple[int, int]
                  ) -> tuple[list[Pass], float] | None:
    """Passes covering ``regions`` (united, padded xyxy boxes) at the largest scale within the budget, and that scale.

    The scale aims at ``person_px[0]`` model px for the smallest person expected in each
    region, at most ``max_upscale``; it is lowered step by step until the passes and the
    full-frame pass fit ``max_input_px`` and at most :data:`MAX_REGION_PASSES`. None when
    they do not fit even at the static plan's tile scale (run the static plan instead).
    """
    full = next(p for p in static.passes if p.full_frame)
    tiles = [p for p in static.passes if not p.full_frame]
    floor_scale = min((p.scale for p in tiles), default=full.scale)
    budget = settings.max_input_px - full.cost_px
    tile_input = tuple(settings.tile_input_size)
    fallback = float(static.samples[:, 2].min()) if len(static.samples) else 0.08 * frame_size[1]
    info = [expected_heights(static.samples, b, fallback) for b in regions]
    want = [min(settings.max_upscale, settings.person_px[0] / max(1.0, lo)) for lo, _ in info]
    factor = 1.0
    while True:
        passes: list[Pass] = []
        scale = 0.0
        for b, (lo, hi), s0 in zip(regions, info, want):
            s = max(floor_scale, s0 * factor)
            scale = max(scale, s)
            passes += _cover(b, s, frame_size, tile_input, 1.1 * min(hi, tile_input[0] / s) + 8, (lo, hi))
        if sum(p.cost_px for p in passes) <= budget and len(passes) <= MAX_REGION_PASSES:
            return passes, scale
        if all(s0 * factor <= floor_scale for s0 in want):
            return None
        factor *= 0.9


__all__ = ["MotionMask", "unite", "region_passes", "expected_heights"]
