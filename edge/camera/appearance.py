"""Appearance without frames: a compact colour descriptor of a person, computed on the camera node.

Only the descriptor leaves the node, never pixels. For each tracked person
:func:`describe_person` takes two body regions from the pose keypoints (the
torso between shoulders and hips, the thighs between hips and knees; from
fixed shares of the box when the keypoints are missing or unsure), and for
each builds a 12-bin colour histogram in a lighting-robust space:

- 8 **hue** bins for chromatic pixels (HSV saturation and value both at least
  40 of 255): hue does not change when the light gets brighter or dimmer;
- 4 **achromatic** bins by value (black, dark grey, light grey, white) for
  the rest: clothes without a colour still differ in lightness.

Each region's histogram is normalised and quantised to bytes summing to about
255, so the whole descriptor is 24 small integers (:data:`BINS`), about 100
bytes of JSON. It cannot be turned back into an image: it holds no positions,
only how much of each colour the region has.

:func:`appearance_distance` is the Hellinger distance (0 same colours, 1
nothing in common) averaged over the regions both descriptors have;
``docs/fusion.md`` has its ROC on the MOTChallenge TUD videos.
"""

from __future__ import annotations

import math

import numpy as np

from ...contracts import APPEARANCE_BINS, Appearance

#: histogram bins per region, regions per descriptor, and the descriptor's length
REGION_BINS = 12
REGIONS = ("torso", "legs")
BINS = APPEARANCE_BINS
HUE_BINS = 8
SAT_MIN = 40
VAL_MIN = 40
#: value thresholds (0..255) of the achromatic bins: black | dark grey | light grey | white
VALUE_EDGES = (60, 120, 190)
#: keypoints must be at least this sure to place a region
KEYPOINT_MIN_SCORE = 0.3
#: fewest pixels a region needs; its quality reaches 1 at ``FULL_PIXELS``
MIN_PIXELS = 24
FULL_PIXELS = 400

# COCO keypoint indices
_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP, _L_KNEE, _R_KNEE = 5, 6, 11, 12, 13, 14


def _box_regions(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float, float, float]]:
    """Torso and thigh rectangles as fixed shares of a person box (no keypoints)."""
    w, h = x1 - x0, y1 - y0
    return [(x0 + 0.3 * w, y0 + 0.2 * h, x0 + 0.7 * w, y0 + 0.48 * h),
            (x0 + 0.3 * w, y0 + 0.55 * h, x0 + 0.7 * w, y0 + 0.78 * h)]


def _span(points: np.ndarray, shrink: float, min_w: float) -> tuple[float, float, float, float]:
    """Bounding rectangle of ``points`` shrunk by ``shrink`` of its size, at least ``min_w`` wide."""
    xa, ya = points.min(axis=0)
    xb, yb = points.max(axis=0)
    cx, w = (xa + xb) / 2, max(xb - xa, min_w)
    h = yb - ya
    return (cx - w * (0.5 - shrink), ya + h * shrink, cx + w * (0.5 - shrink), yb - h * shrink)


def body_regions(xyxy, keypoints=None) -> list[tuple[float, float, float, float]]:
    """Torso and thigh rectangles (x0, y0, x1, y1 in pixels) of one person.

    From the shoulders, hips and knees when ``keypoints`` (17×3: x, y, score)
    has them at ``KEYPOINT_MIN_SCORE`` or more; otherwise from fixed shares of
    the box ``xyxy``.
    """
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    regions = _box_regions(x0, y0, x1, y1)
    if keypoints is None:
        return regions
    kp = np.asarray(keypoints, dtype=float)
    if kp.shape != (17, 3):
        return regions
    sure = kp[:, 2] >= KEYPOINT_MIN_SCORE
    min_w = 0.25 * (x1 - x0)
    torso = [_L_SHOULDER, _R_SHOULDER, _L_HIP, _R_HIP]
    if sure[torso].all() and kp[[_L_HIP, _R_HIP], 1].mean() - kp[[_L_SHOULDER, _R_SHOULDER], 1].mean() > 4:
        regions[0] = _span(kp[torso, :2], 0.15, min_w)
    thighs = [_L_HIP, _R_HIP, _L_KNEE, _R_KNEE]
    if sure[thighs].all() and kp[[_L_KNEE, _R_KNEE], 1].mean() - kp[[_L_HIP, _R_HIP], 1].mean() > 4:
        regions[1] = _span(kp[thighs, :2], 0.1, min_w)
    return regions


def region_histogram(hsv: np.ndarray) -> np.ndarray:
    """The 12-bin histogram (summing to 1) of an HSV pixel array (..., 3), OpenCV ranges (H 0..179)."""
    px = hsv.reshape(-1, 3)
    h, s, v = px[:, 0].astype(np.int32), px[:, 1], px[:, 2]
    chroma = (s >= SAT_MIN) & (v >= VAL_MIN)
    hue_bin = (h[chroma] * HUE_BINS) // 180
    val_bin = np.searchsorted(np.asarray(VALUE_EDGES), v[~chroma], side="right")
    hist = np.concatenate([np.bincount(hue_bin, minlength=HUE_BINS),
                           np.bincount(val_bin, minlength=REGION_BINS - HUE_BINS)]).astype(float)
    total = hist.sum()
    return hist / total if total else hist


def describe_person(image: np.ndarray, xyxy, keypoints=None) -> Appearance | None:
    """The appearance descriptor of one person in a BGR ``image``; None when too little of them is visible.

    ``xyxy`` is the person's box, ``keypoints`` its 17 COCO keypoints (x, y,
    score) or None. A region with fewer than ``MIN_PIXELS`` pixels inside the
    image is left empty (all zeros); ``quality`` is the share of
    ``FULL_PIXELS`` the smaller filled region reached.
    """
    import cv2

    if image is None or image.ndim != 3 or image.shape[2] != 3:
        return None  # not a colour frame
    hgt, wid = image.shape[:2]
    bins: list[int] = []
    counts = []
    for x0, y0, x1, y1 in body_regions(xyxy, keypoints):
        c0, c1 = max(0, int(math.floor(x0))), min(wid, int(math.ceil(x1)))
        r0, r1 = max(0, int(math.floor(y0))), min(hgt, int(math.ceil(y1)))
        n = max(0, c1 - c0) * max(0, r1 - r0)
        if n < MIN_PIXELS:
            bins += [0] * REGION_BINS
            continue
        crop = image[r0:r1, c0:c1]
        step = max(1, int(math.sqrt(n / 1600)))  # at most ~1,600 pixels per region: cost bounded on big boxes
        if step > 1:
            crop = crop[::step, ::step]
        hist = region_histogram(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2HSV))
        bins += quantise(hist)
        counts.append(n)
    if not counts:
        return None
    return Appearance(bins=tuple(bins), quality=round(min(1.0, min(counts) / FULL_PIXELS), 2))


def quantise(hist: np.ndarray) -> list[int]:
    """A region histogram (summing to 1) as bytes summing to about 255."""
    return [int(v) for v in np.clip(np.round(np.asarray(hist, float) * 255.0), 0, 255)]


def histograms(appearance: Appearance | tuple | list | np.ndarray) -> np.ndarray:
    """The descriptor as (regions, 12) histograms, each summing to 1 (an empty region stays all zeros)."""
    bins = appearance.bins if isinstance(appearance, Appearance) else appearance
    h = np.asarray(bins, dtype=float).reshape(len(REGIONS), REGION_BINS)
    s = h.sum(axis=1, keepdims=True)
    return np.divide(h, s, out=np.zeros_like(h), where=s > 0)


def appearance_distance(a, b) -> float:
    """Hellinger distance (0..1) between two descriptors (or (2, 12) histogram arrays), over shared regions.

    1.0 when they share no filled region.
    """
    ha = a if isinstance(a, np.ndarray) and a.ndim == 2 else histograms(a)
    hb = b if isinstance(b, np.ndarray) and b.ndim == 2 else histograms(b)
    both = (ha.sum(axis=1) > 0) & (hb.sum(axis=1) > 0)
    if not both.any():
        return 1.0
    bc = np.sqrt(ha[both] * hb[both]).sum(axis=1)
    return float(np.sqrt(np.clip(1.0 - bc, 0.0, 1.0)).mean())
