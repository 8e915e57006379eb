"""Scale-aware detection: which parts of the frame the model sees at which scale, and the tiled detector.

A pose model finds a person reliably only when the person is a certain size in
its input (``detector.person_px``; MoveNet MultiPose: about 80-176 px); shrinking a
768×576 frame into a 256×320 input makes a 60 px shopper 27 px, and the model
misses them. It also returns at most six people per pass. A calibrated camera knows
how tall a 1.7 m person appears at every floor point it sees, so at start-up the node
makes a :class:`TilingPlan`:

* one **full-frame pass** (the frame letterboxed to ``detector.input_size``) for the
  people who appear large;
* bands of **overlapping tiles** (``detector.tile_input_size`` each) where people
  appear too small for it, each band scaled so the people expected there reach
  ``person_px[0]`` model pixels (at most ``max_upscale``); tiles overlap by the
  height (vertically) and about the width (horizontally) of the tallest person
  expected there, so every person lies whole inside some tile;
* everything within ``max_input_px`` model pixels per frame: when the plan does not
  fit, its scales are lowered until it does, and the plan says which person heights
  it then sees below the reliable size.

An uncalibrated camera gets a plan from the frame size alone: people are assumed
anywhere, at least :data:`UNCALIBRATED_MIN_HEIGHT` of the frame height tall.
With ``detector.regions`` (on by default) the plan runs whole only on full scans; between them
the model sees only the full frame and tiles over active regions (motion, recent detections,
live tracks; :mod:`.regions`), at a larger scale, never more model pixels than a full scan.
Gated, a live track that no detection of the frame matches (often a person walking just behind
another, whom the model drew one box for) gets a tight look of its own with the pixels left
(``detector.regions.track_looks``, :func:`track_looks`).
Detections of all passes are mapped back to frame pixels (keypoints with their
box); a detection touching a tile edge inside the frame is a cut person, dropped
when another pass sees them whole, and duplicates across passes are merged (NMS
by IoU, and by intersection over the smaller box, so a box inside a bigger one of
the same person merges too).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np

from ...config import Camera, DetectorSettings
from .detections import Detections
from .detector import Detector

log = logging.getLogger(__name__)

#: Height of a person the plan is made for, metres.
PERSON_HEIGHT_M = 1.7
#: Without calibration, the smallest person assumed, as a share of the frame height.
UNCALIBRATED_MIN_HEIGHT = 0.08
#: Without calibration, the largest person assumed, as a share of the frame height.
UNCALIBRATED_MAX_HEIGHT = 0.6
#: Pixels of the frame between height samples.
SAMPLE_STEP = 8
#: A box within this many frame pixels of a tile edge inside the frame is taken to be cut by it.
EDGE_MARGIN = 3.0
#: Boxes from different passes whose intersection covers this share of the smaller one are the same person.
CROSS_PASS_IOS = 0.7


@dataclass(frozen=True)
class Pass:
    """One model run: a frame region (x, y, w, h in frame pixels) at ``input_size`` (h, w)."""

    x: int
    y: int
    w: int
    h: int
    input_size: tuple[int, int]
    full_frame: bool = False
    #: Expected person heights (frame pixels) this pass is meant for, when known.
    heights: tuple[float, float] | None = None

    @property
    def scale(self) -> float:
        """Model pixels per frame pixel (letterboxed: the smaller of the two axes)."""
        return min(self.input_size[0] / self.h, self.input_size[1] / self.w)

    @property
    def cost_px(self) -> int:
        """Model-input pixels of this pass."""
        return self.input_size[0] * self.input_size[1]


@dataclass(frozen=True)
class TilingPlan:
    """The passes of one frame size, how the plan was made, and what it does not cover well."""

    frame_size: tuple[int, int]  # width, height
    passes: tuple[Pass, ...]
    source: str  # "calibration", "frame size", "explicit" or "off"
    missed: str = ""
    #: (foot u, foot v, person height px) samples the plan was made for (empty for explicit/off plans).
    samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)), repr=False, compare=False)
    #: How the plan is gated between full scans (detector.regions), "" when it is not.
    gating: str = ""

    @property
    def cost_px(self) -> int:
        """Model-input pixels per frame over all passes."""
        return sum(p.cost_px for p in self.passes)

    def describe(self) -> str:
        """Several lines: the plan's origin, each pass (region, scale, person heights it covers) and any gap."""
        w, h = self.frame_size
        lines = [f"detection plan for {w}x{h} frames ({self.source}): {len(self.passes)} passes, "
                 f"{self.cost_px:,} model pixels per frame"]
        for i, p in enumerate(self.passes):
            what = "full frame" if p.full_frame else f"tile x={p.x} y={p.y} {p.w}x{p.h}"
            lines.append(f"  pass {i}: {what} -> {p.input_size[1]}x{p.input_size[0]} input, scale {p.scale:.2f}"
                         + (f", people {p.heights[0]:.0f}-{p.heights[1]:.0f} px expected" if p.heights else ""))
        if self.missed:
            lines.append(f"  not covered at a reliable size: {self.missed}")
        if self.gating:
            lines.append(f"  gating: {self.gating}")
        return "\n".join(lines)


def person_heights(camera: Camera, frame_size: tuple[int, int], floor_outline=None,
                   step: int = SAMPLE_STEP) -> np.ndarray:
    """(u, v, height) samples: how tall a person standing with their feet at pixel (u, v) appears.

    Needs intrinsics and a pose (a homography alone maps the floor, not heights). Only
    pixels that see the floor (in front of the camera, within 30 m, and inside
    ``floor_outline`` when given) are sampled. ``camera`` must match ``frame_size``
    (see :meth:`Camera.scaled_to`).
    """
    from .projection import FloorProjector

    w, h = frame_size
    us, vs = np.meshgrid(np.arange(step / 2, w, step), np.arange(step / 2, h, step))
    uv = np.c_[us.ravel(), vs.ravel()]
    xy, valid = FloorProjector(camera).image_to_floor(uv)
    if floor_outline is not None and len(floor_outline) >= 3:
        import cv2

        poly = np.asarray(floor_outline, np.float32).reshape(-1, 1, 2)
        inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 if ok else False
                           for (x, y), ok in zip(xy, valid)])
        valid &= inside
    if not valid.any():
        return np.zeros((0, 3))
    heads = camera.floor_to_image(np.c_[xy[valid], np.full(valid.sum(), PERSON_HEIGHT_M)])
    # the undistorted foot pixel and the (undistorted) head pixel: their distance is the apparent height
    feet = camera.floor_to_image(np.c_[xy[valid], np.zeros(valid.sum())])
    height = np.linalg.norm(feet - heads, axis=1)
    ok = np.isfinite(height) & (height > 1)
    return np.c_[uv[valid][ok], height[ok]]


def uncalibrated_samples(frame_size: tuple[int, int], step: int = SAMPLE_STEP * 2) -> np.ndarray:
    """(u, v, height) samples for a camera without calibration: the smallest assumed person everywhere."""
    w, h = frame_size
    us, vs = np.meshgrid(np.arange(step / 2, w, step), np.arange(step / 2, h, step))
    hmin = max(16.0, UNCALIBRATED_MIN_HEIGHT * h)
    return np.c_[us.ravel(), vs.ravel(), np.full(us.size, hmin)]


def _full_pass(frame_size: tuple[int, int], input_size: tuple[int, int]) -> Pass:
    w, h = frame_size
    return Pass(0, 0, w, h, tuple(input_size), full_frame=True)


def _largest_full_pass(frame_size: tuple[int, int], budget: int) -> Pass:
    """The full-frame pass with the largest input (multiples of 32, frame aspect) within ``budget`` (+5 %)."""
    w, h = frame_size
    s = min(1.0, math.sqrt(budget * 1.05 / (w * h)))
    while True:
        ih, iw = max(32, math.ceil(h * s / 32) * 32), max(32, math.ceil(w * s / 32) * 32)
        if ih * iw <= budget * 1.05 or s < 0.05:
            return Pass(0, 0, w, h, (ih, iw), full_frame=True)
        s *= 0.97


def _tiles_for(samples: np.ndarray, frame_size: tuple[int, int], tile_input: tuple[int, int], min_px: float,
               max_upscale: float) -> list[Pass]:
    """Bands of overlapping tiles, top to bottom, covering every sample at ``min_px`` model pixels (capped)."""
    w, h = frame_size
    th_in, tw_in = tile_input
    head = np.maximum(0.0, samples[:, 1] - 1.05 * samples[:, 2])
    order = np.argsort(head, kind="stable")  # top to bottom by head row
    todo, head = samples[order], head[order]
    tiles: list[Pass] = []
    while len(todo):
        in_band = np.zeros(len(todo), bool)
        in_band[0] = True
        for _ in range(4):  # the band's scale serves its smallest member; a larger scale narrows the band
            members = todo[in_band]
            tall = float((members[:, 1] - head[in_band]).max())  # tallest box in the band, frame pixels
            s = min(max_upscale, min_px / float(members[:, 2].min()), th_in / (1.1 * tall + 1.0))
            th, tw = min(h, th_in / s), min(w, tw_in / s)
            y0 = float(np.clip(head[0], 0, h - th))
            # a person belongs to this band when their whole box (feet row v, head row) fits in it
            new = (head >= y0 - 1) & (todo[:, 1] <= y0 + th + 1)
            new[0] = True
            if (new == in_band).all():
                break
            in_band = new
        band = todo[in_band]
        hmax = float(band[:, 2].max())
        overlap = min(tw * 0.9, 0.6 * hmax + 8)
        n = 1 if tw >= w else math.ceil((w - overlap) / (tw - overlap))
        xs = np.linspace(0, w - tw, n) if n > 1 else [max(0.0, (w - tw) / 2)]
        for x0 in xs:
            # keep a tile only when some person of the band stands whole inside it
            cx = band[:, 0]
            half = 0.25 * band[:, 2]
            if ((cx - half >= x0 - 1) & (cx + half <= x0 + tw + 1)).any():
                tiles.append(Pass(int(round(x0)), int(round(y0)), int(round(tw)), int(round(th)), tuple(tile_input),
                                  heights=(float(band[:, 2].min()), hmax)))
        todo, head = todo[~in_band], head[~in_band]
    return tiles


def make_plan(frame_size: tuple[int, int], settings: DetectorSettings, samples: np.ndarray | None = None, *,
              dynamic_input: bool = True) -> TilingPlan:
    """The detection plan for ``frame_size`` (width, height) under ``settings``.

    ``samples``: (u, v, height) from :func:`person_heights` for a calibrated camera,
    None for the frame-size policy. ``dynamic_input``: whether the model runs at any
    input size (MoveNet); a fixed-size model (a YOLO export) runs every pass at its own
    ``input_size``.
    """
    w, h = frame_size
    tile_input = tuple(settings.tile_input_size) if dynamic_input else tuple(settings.input_size)
    full = _full_pass(frame_size, settings.input_size)
    if settings.tiling == "off":
        return TilingPlan(frame_size, (full,), "off")
    if settings.tiling == "explicit":
        tiles = [Pass(x, y, min(tw, w - x), min(th, h - y), tile_input) for x, y, tw, th in settings.tiles
                 if x < w and y < h]
        return TilingPlan(frame_size, (full, *tiles), "explicit")
    source = "calibration" if samples is not None else "frame size"
    if samples is None or not len(samples):
        samples = uncalibrated_samples(frame_size)
    min_px, max_px = settings.person_px
    budget = settings.max_input_px
    # the people the full-frame pass sees at a reliable size need no tile
    need = samples[samples[:, 2] * full.scale < min_px]
    target = float(min_px)
    while True:
        tiles = _tiles_for(need, frame_size, tile_input, target, settings.max_upscale) if len(need) else []
        cost = full.cost_px + sum(t.cost_px for t in tiles)
        if cost <= budget or target < 8:
            break
        target *= 0.9
    big = _largest_full_pass(frame_size, budget)
    if (source == "calibration" and tiles and dynamic_input and big.scale > full.scale
            and min(t.scale for t in tiles) * 1.15 <= big.scale):
        # tiles barely larger than one bigger full-frame pass within the budget: that pass serves better (the
        # tiles' other gain, lifting the model's cap of six people per pass, is then not worth the lower scale;
        # without calibration the crowd is unknown, and the tiles stay)
        full, tiles = big, []
        target = min(float(min_px), float(need[:, 2].min()) * big.scale)
        need = need[need[:, 2] * big.scale < min_px]
    missed = ""
    if len(need) and not tiles:
        missed = (f"people {need[:, 2].min():.0f}-{need[:, 2].max():.0f} px tall are seen at "
                  f"{need[:, 2].min() * full.scale:.0f} model px and up (reliable from {min_px}); raise "
                  f"detector.max_input_px ({budget:,}) to see them larger")
    elif len(need) and target < min_px - 1e-6:
        small = need[need[:, 2] * min(settings.max_upscale, target / need[:, 2].min()) < min_px]
        if len(small):
            missed = (f"people {small[:, 2].min():.0f}-{small[:, 2].max():.0f} px tall are seen at about "
                      f"{target:.0f} model px (reliable from {min_px}); raise detector.max_input_px "
                      f"({budget:,}) to see them larger")
    elif len(need):
        too_small = need[need[:, 2] * settings.max_upscale < min_px]
        if len(too_small):
            missed = (f"people {too_small[:, 2].min():.0f}-{too_small[:, 2].max():.0f} px tall need more than "
                      f"detector.max_upscale ({settings.max_upscale:g})")
    return TilingPlan(frame_size, (full, *tiles), source, missed, samples)


def plan_for_camera(camera: Camera | None, frame_size: tuple[int, int], settings: DetectorSettings, *,
                    floor_outline=None, dynamic_input: bool = True) -> TilingPlan:
    """The plan of a camera (calibrated: from its geometry; else: from the frame size) for ``frame_size`` frames."""
    samples = None
    if settings.tiling == "auto" and camera is not None and camera.intrinsics is not None and (
            camera.extrinsics is not None or camera.mount is not None):
        samples = person_heights(camera.scaled_to(*frame_size), frame_size, floor_outline)
    return make_plan(frame_size, settings, samples, dynamic_input=dynamic_input)


def merge_passes(results: list[tuple[Pass, Detections]], frame_size: tuple[int, int], nms_iou: float) -> Detections:
    """One set of detections from the passes' (already frame-pixel) detections.

    A box touching a tile edge that lies inside the frame is a cut person: dropped
    when it overlaps a box from another pass (that one sees more of them). Then boxes
    are merged across passes, best score first: a box overlapping a kept one from
    another pass by IoU above ``nms_iou`` or by :data:`CROSS_PASS_IOS` of the smaller
    box is the same person.
    """
    w, h = frame_size
    parts, origin, cut = [], [], []
    for i, (p, dets) in enumerate(results):
        if not len(dets):
            continue
        b = dets.xyxy
        touches = np.zeros(len(dets), bool)
        if not p.full_frame:
            if p.x > 0:
                touches |= b[:, 0] <= p.x + EDGE_MARGIN
            if p.y > 0:
                touches |= b[:, 1] <= p.y + EDGE_MARGIN
            if p.x + p.w < w:
                touches |= b[:, 2] >= p.x + p.w - EDGE_MARGIN
            if p.y + p.h < h:
                touches |= b[:, 3] >= p.y + p.h - EDGE_MARGIN
        parts.append(dets)
        origin.append(np.full(len(dets), i))
        cut.append(touches)
    if not parts:
        return Detections.empty(with_keypoints=any(d.keypoints is not None for _, d in results))
    if len(parts) == 1:
        return parts[0][~cut[0]] if cut[0].any() and len(results) == 1 else parts[0]
    dets = Detections.concat(parts)
    origin_a, cut_a = np.concatenate(origin), np.concatenate(cut)
    b = dets.xyxy
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    ix = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    ios = inter / np.minimum(area[:, None], area[None, :])
    iou = inter / (area[:, None] + area[None, :] - inter)
    other = origin_a[:, None] != origin_a[None, :]
    same = other & ((iou > nms_iou) | (ios > CROSS_PASS_IOS))
    # a cut box that overlaps anything from another pass goes first
    drop = cut_a & (other & (inter > 0)).any(axis=1)
    order = np.lexsort((-dets.scores, cut_a))  # whole boxes before cut ones, best first
    keep: list[int] = []
    removed = drop.copy()
    for i in order:
        if removed[i]:
            continue
        keep.append(int(i))
        removed |= same[i]
    keep_a = np.asarray(sorted(keep, key=lambda k: -dets.scores[k]), dtype=np.int64)
    return dets[keep_a]


#: At most this many region passes per gated frame (each pass has a fixed cost besides its pixels).
MAX_REGION_PASSES = 8


def expected_heights(samples: np.ndarray, box: np.ndarray, fallback: float) -> tuple[float, float]:
    """The (smallest, largest) person height expected with feet inside ``box`` (the plan's samples), else ``fallback``."""
    if len(samples):
        inside = ((samples[:, 0] >= box[0]) & (samples[:, 0] <= box[2]) & (samples[:, 1] >= box[1])
                  & (samples[:, 1] <= box[3]))
        if inside.any():
            return float(samples[inside, 2].min()), float(samples[inside, 2].max())
    return fallback, fallback


def _crop_pass(box: np.ndarray, s: float, frame_size: tuple[int, int], heights: tuple[float, float]) -> Pass:
    """One crop centred on ``box`` (inside the frame), its input the box at scale ``s`` (multiples of 32)."""
    w, h = frame_size
    iw, ih = max(32, math.ceil((box[2] - box[0]) * s / 32) * 32), max(32, math.ceil((box[3] - box[1]) * s / 32) * 32)
    cw, ch = min(w, iw / s), min(h, ih / s)
    x0 = float(np.clip((box[0] + box[2] - cw) / 2, 0, w - cw))
    y0 = float(np.clip((box[1] + box[3] - ch) / 2, 0, h - ch))
    return Pass(int(round(x0)), int(round(y0)), int(round(cw)), int(round(ch)), (ih, iw), heights=heights)


def _cover(box: np.ndarray, s: float, frame_size: tuple[int, int], tile_input: tuple[int, int],
           overlap: float, heights: tuple[float, float]) -> list[Pass]:
    """Passes at scale ``s`` covering ``box``: one crop at its own input size when it fits a tile, else tiles."""
    w, h = frame_size
    th_in, tw_in = tile_input
    tw, th = min(w, tw_in / s), min(h, th_in / s)
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw <= tw and bh <= th:
        return [_crop_pass(box, s, frame_size, heights)]
    ov_x, ov_y = min(0.9 * tw, overlap * 0.6), min(0.9 * th, overlap)
    nx = 1 if bw <= tw else math.ceil((bw - ov_x) / (tw - ov_x))
    ny = 1 if bh <= th else math.ceil((bh - ov_y) / (th - ov_y))
    xs = np.linspace(box[0], box[2] - tw, nx) if nx > 1 else [(box[0] + box[2] - tw) / 2]
    ys = np.linspace(box[1], box[3] - th, ny) if ny > 1 else [(box[1] + box[3] - th) / 2]
    return [Pass(int(round(np.clip(x, 0, w - tw))), int(round(np.clip(y, 0, h - th))), int(round(tw)), int(round(th)),
                 (th_in, tw_in), heights=heights) for y in ys for x in xs]


def smallest_person(plan: TilingPlan, frame_height: int) -> float:
    """The smallest person height (px) the plan was made for; an uncalibrated camera's floor when it has no samples."""
    return float(plan.samples[:, 2].min()) if len(plan.samples) else UNCALIBRATED_MIN_HEIGHT * frame_height


def region_passes(regions: np.ndarray, static: TilingPlan, settings, frame_size: tuple[int, int],
                  tallest: np.ndarray | None = None) -> tuple[list[Pass], float] | None:
    """Passes covering ``regions`` (united, padded xyxy boxes) at the largest scale within the budget, and that scale.

    The scale aims at ``person_px[0]`` model px for the smallest person expected in each
    region, at most ``max_upscale`` and at most ``person_px[1]`` for the tallest box seen in it (``tallest``,
    frame px per region: a large person must not be cut by the tiles); it is lowered step by step until the passes and the
    full-frame pass fit the static plan's model pixels (at most ``max_input_px``) and at most
    :data:`MAX_REGION_PASSES` passes. None when
    they do not fit even at the static plan's tile scale (run the static plan instead).
    """
    full = next(p for p in static.passes if p.full_frame)
    tiles = [p for p in static.passes if not p.full_frame]
    floor_scale = min((p.scale for p in tiles), default=full.scale)
    # never more model pixels than a full scan: a frame full of motion costs at most what the static plan does
    budget = min(settings.max_input_px, static.cost_px) - full.cost_px
    tile_input = tuple(settings.tile_input_size)
    fallback = smallest_person(static, frame_size[1])
    info = [expected_heights(static.samples, b, fallback) for b in regions]
    if tallest is not None:
        info = [(lo, max(hi, t)) for (lo, hi), t in zip(info, tallest)]
    want = [min(settings.max_upscale, settings.person_px[0] / max(1.0, lo),
                settings.person_px[1] / max(1.0, t if tallest is not None else 0.0))
            for (lo, _), t in zip(info, tallest if tallest is not None else np.zeros(len(regions)))]
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


#: A box narrower than this share of its height is no person's (a sliver at a tile or frame edge, a pole): dropped.
#: A person seen from the side is about 0.25 of their height wide, and MoveNet's boxes are wider than the person.
#: Chosen by CV (bench/cv_regions.py; docs/benchmarks.md, camera node).
MIN_BOX_ASPECT = 0.15
#: A track's own look (detector.regions.track_looks) upscales its crop at most this much.
MAX_LOOK_UPSCALE = 3.0
#: A track is matched by a detection of the frame (and gets no look) at this IoU or more.
LOOK_MATCHED_IOU = 0.6
#: The crop of a track's look: its box padded by this share of its height on every side.
LOOK_PAD = 0.15
#: A person found in a track's look is taken when their box overlaps the track's by at least this IoU.
LOOK_ACCEPT_IOU = 0.5
#: A track's look keeps people scored at least this (above tile_score_threshold: at 0.1 the looks added false
#: detections on the native TUD videos and cost MOTA there; docs/benchmarks.md, camera node).
LOOK_MIN_SCORE = 0.2


def look_pass(box: np.ndarray, frame_size: tuple[int, int], person_px: float) -> Pass:
    """The crop (a :class:`Pass`) of a track's own look: its box padded, scaled so the box is ``person_px`` tall."""
    w, h = frame_size
    bh = float(box[3] - box[1])
    pad = LOOK_PAD * bh
    padded = np.array([max(0.0, box[0] - pad), max(0.0, box[1] - pad), min(w, box[2] + pad), min(h, box[3] + pad)])
    return _crop_pass(padded, min(MAX_LOOK_UPSCALE, person_px / max(1.0, bh)), frame_size, (bh, bh))


def track_looks(base: Detector, frame: np.ndarray, merged: Detections, tracks: np.ndarray, settings,
                spare_px: int, threshold: float | None = None, counters: dict | None = None,
                ran: list | None = None) -> Detections:
    """``merged`` plus the people found by looks of their own at the live ``tracks`` no detection matches.

    One detection often covers two people when one walks behind the other, and the
    tracker still holds the one behind. Each unmatched track (smallest first, at most
    ``settings.track_looks``, within ``spare_px`` model pixels) gets a tight crop at
    ``settings.track_look_px``, run at score ``threshold``; a person found there is added when their box overlaps
    the track's by :data:`LOOK_ACCEPT_IOU` and more than it overlaps any detection
    already made (else the crop only saw the person in front again). Each look's
    :class:`Pass` is appended to ``ran`` (for ``--debug-video``).
    """
    from scipy.optimize import linear_sum_assignment

    from .detections import box_iou

    h, w = frame.shape[:2]
    tracks = np.asarray(tracks, float).reshape(-1, 4)
    free = np.ones(len(tracks), bool)
    if len(merged) and len(tracks):
        iou = box_iou(tracks, merged.xyxy)
        r, c = linear_sum_assignment(-iou)
        free[r[iou[r, c] >= LOOK_MATCHED_IOU]] = False
    # a track already as tall as the look would make it gains nothing from a closer look
    th = tracks[:, 3] - tracks[:, 1]
    todo = tracks[free & (tracks[:, 2] > tracks[:, 0] + 1) & (th > 1) & (th < settings.track_look_px)]
    todo = todo[np.argsort(todo[:, 3] - todo[:, 1], kind="stable")]
    found, looks = [], 0
    for b in todo:
        if looks >= settings.track_looks:
            break
        p = look_pass(b, (w, h), settings.track_look_px)
        if p.cost_px > spare_px:
            continue
        spare_px -= p.cost_px
        looks += 1
        if ran is not None:
            ran.append(p)
        d = base.detect_at(frame[p.y:p.y + p.h, p.x:p.x + p.w], p.input_size, max(threshold or 0.0, LOOK_MIN_SCORE))
        if not len(d):
            continue
        d = d.shifted(p.x, p.y)
        to_track = box_iou(b[None], d.xyxy)[0]
        others = [merged.xyxy, *(f.xyxy for f in found)]
        to_other = box_iou(d.xyxy, np.concatenate(others)).max(axis=1) if sum(map(len, others)) else 0.0
        good = np.flatnonzero((to_track >= LOOK_ACCEPT_IOU) & (to_track > to_other))
        if len(good):
            found.append(d[int(good[np.argmax(to_track[good])])])
    if counters is not None:
        counters["track_looks"] = counters.get("track_looks", 0) + looks
        counters["track_look_finds"] = counters.get("track_look_finds", 0) + len(found)
    return Detections.concat([merged, *found]) if found else merged


class TiledDetector(Detector):
    """Runs a detector over a :class:`TilingPlan`'s passes and merges the results.

    The plan is made per frame size, on the first frame of that size (``plan_for``),
    from ``camera`` (None: the frame-size policy). ``on_plan`` is called with each new
    plan (the node logs it; the debug video draws it).
    """

    def __init__(self, base: Detector, settings: DetectorSettings, camera: Camera | None = None, *,
                 floor_outline=None, on_plan=None):
        self.base = base
        self.settings = settings
        self.camera = camera
        self.floor_outline = floor_outline
        self.on_plan = on_plan
        self.input_size = base.input_size
        self.name = base.name
        self.plans: dict[tuple[int, int], TilingPlan] = {}
        self.plan: TilingPlan | None = None
        self.dynamic_input = bool(getattr(base, "dynamic_input", False))
        gated = settings.tiling == "auto" and settings.regions.enabled and self.dynamic_input
        self.gating = settings.regions if gated else None
        if gated:
            from .regions import MotionMask

            self.motion = MotionMask(settings.regions)
        #: active regions (xyxy frame pixels) of the last frame, None after a full scan
        self.regions: np.ndarray | None = None
        self.looks: list[Pass] = []  # the last frame's track looks (crops), for --debug-video
        #: frames processed since the last full scan; (box, frames left) of recently detected people; live tracks
        self._since_scan = 0
        self._held: list[tuple[np.ndarray, int]] = []
        self._tracks = np.zeros((0, 4))
        self.counters = {"full_scans": 0, "gated_frames": 0, "over_budget": 0, "region_passes": 0}
        #: boxes narrower than this share of their height are dropped (:data:`MIN_BOX_ASPECT`; 0 keeps them all)
        self.min_aspect = MIN_BOX_ASPECT
        carry = settings.regions.carry_frames if settings.tiling == "auto" and self.dynamic_input else 0
        self.covered = None
        if carry:
            from .covered import CoveredTracks

            self.covered = CoveredTracks(carry, settings.tile_score_threshold)
            self.counters["carried"] = 0

    def plan_for(self, frame_size: tuple[int, int]) -> TilingPlan:
        """The plan for frames of ``frame_size`` (width, height), made once and kept."""
        plan = self.plans.get(frame_size)
        if plan is None:
            plan = plan_for_camera(self.camera, frame_size, self.settings, floor_outline=self.floor_outline,
                                   dynamic_input=self.dynamic_input)
            if self.gating is not None and len(plan.passes) > 1:
                g = self.gating
                plan = replace(plan, gating=(
                    f"between full scans (every {g.full_scan_frames} frames, and when over {g.global_change:.0%} of "
                    f"the frame changes) only tiles over motion and people seen in the last {g.hold_frames} frames, "
                    f"at up to scale {self.settings.max_upscale:g}, never more than the full scan's {plan.cost_px:,} px"
                    + (f"; up to {g.track_looks} unmatched tracks a look of their own at {g.track_look_px} px "
                       f"within {self.settings.max_input_px:,} px" if g.track_looks else "")))
            self.plans[frame_size] = plan
            if self.on_plan is not None:
                self.on_plan(plan)
        self.plan = plan
        return plan

    def note_tracks(self, boxes: np.ndarray, ids: np.ndarray | None = None, misses: np.ndarray | None = None) -> None:
        """The node's live tracks (xyxy frame pixels) after a frame: active regions of the next one when gated.

        ``ids`` and ``misses`` (frames since each track's last match, row-aligned): with
        ``detector.regions.carry_frames``, tracks hidden behind another are carried (:mod:`.covered`).
        """
        self._tracks = np.asarray(boxes, float).reshape(-1, 4)
        if self.covered is not None and ids is not None and misses is not None:
            self.covered.note(self._tracks, ids, misses)

    def _gated_passes(self, frame: np.ndarray, plan: TilingPlan) -> tuple[Pass, ...]:
        """This frame's passes: the whole plan on a full scan, else the full-frame pass and tiles over active regions."""
        from .regions import unite

        g = self.gating
        h, w = frame.shape[:2]
        motion = self.motion.boxes(frame)
        self._held = [(b, n - 1) for b, n in self._held if n > 1]
        self.regions = None
        if motion is None or self._since_scan + 1 >= g.full_scan_frames:
            self._since_scan = 0
            self.counters["full_scans"] += 1
            return plan.passes
        self._since_scan += 1
        boxes = np.concatenate([motion, self._tracks, np.asarray([b for b, _ in self._held]).reshape(-1, 4)])
        full = next(p for p in plan.passes if p.full_frame)
        if not len(boxes):
            self.regions = np.zeros((0, 4))
            self.counters["gated_frames"] += 1
            return (full,)
        fallback = smallest_person(plan, h)
        heights = np.maximum(boxes[:, 3] - boxes[:, 1], fallback)
        pad = g.margin * np.minimum(heights, 3 * fallback)[:, None]
        padded = np.clip(boxes + pad * np.array([-1, -1, 1, 1]), 0, [w, h, w, h])
        regions = unite(padded)
        # the tallest box in each region (a box lies inside the region it was united into)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = ((cx[None] >= regions[:, 0:1]) & (cx[None] <= regions[:, 2:3]) & (cy[None] >= regions[:, 1:2])
                  & (cy[None] <= regions[:, 3:4]))
        tallest = np.where(inside, (boxes[:, 3] - boxes[:, 1])[None], 0.0).max(axis=1)
        got = region_passes(regions, plan, self.settings, (w, h), tallest)
        if got is None:  # more is moving than the budget covers at the static scale: the static plan
            self.counters["over_budget"] += 1
            return plan.passes
        self.regions = regions
        self.counters["gated_frames"] += 1
        self.counters["region_passes"] += len(got[0])
        return (full, *got[0])

    def detect(self, frame: np.ndarray) -> Detections:
        """People in one BGR frame: every pass of the plan (or, gated, of this frame's regions), mapped back and merged."""
        h, w = frame.shape[:2]
        plan = self.plan_for((w, h))
        passes = self._gated_passes(frame, plan) if self.gating is not None and len(plan.passes) > 1 else plan.passes
        if passes is not plan.passes:
            self.plan = replace(plan, passes=passes, source=f"{plan.source}, gated")
        results = []
        # a plan with tiles is for people the model scores low even when it finds them: all its passes take
        # tile_score_threshold (the full-frame pass too: at its small scale the larger people score low as well);
        # a plan of one pass keeps score_threshold
        threshold = self.settings.tile_score_threshold if len(plan.passes) > 1 else None
        for p in passes:
            crop = frame if p.full_frame else frame[p.y:p.y + p.h, p.x:p.x + p.w]
            if not self.dynamic_input:
                dets = self.base.detect(crop)
            else:
                dets = self.base.detect_at(crop, p.input_size, threshold)
            if not p.full_frame and len(dets):
                dets = dets.shifted(p.x, p.y)
            results.append((p, dets))
        merged = merge_passes(results, (w, h), self.settings.nms_iou)
        if self.min_aspect > 0 and len(merged):
            box_w, box_h = merged.xyxy[:, 2] - merged.xyxy[:, 0], merged.xyxy[:, 3] - merged.xyxy[:, 1]
            slim = box_w < self.min_aspect * box_h
            if slim.any():
                merged = merged[~slim]
        self.looks = []
        if self.gating is not None and self.gating.track_looks and len(plan.passes) > 1 and len(self._tracks):
            spare = self.settings.max_input_px - sum(p.cost_px for p in passes)
            merged = track_looks(self.base, frame, merged, self._tracks, self.gating, spare, threshold, self.counters,
                                 self.looks)
        if self.gating is not None and self.gating.hold_frames and len(merged):
            self._held += [(b, self.gating.hold_frames) for b in merged.xyxy]
        if self.covered is not None and len(plan.passes) > 1:
            merged = self.covered.carry(merged, (w, h))
            self.counters["carried"] = self.covered.carried
        return merged

    def close(self) -> None:
        """Close the wrapped detector."""
        self.base.close()


def build_detector(base: Detector, settings: DetectorSettings, camera: Camera | None = None, **kwargs) -> Detector:
    """``base`` wrapped in a :class:`TiledDetector` unless ``settings.tiling`` is 'off'."""
    if settings.tiling == "off":
        return base
    return TiledDetector(base, settings, camera, **kwargs)


__all__ = ["Pass", "TilingPlan", "TiledDetector", "make_plan", "plan_for_camera", "person_heights",
           "merge_passes", "build_detector", "region_passes", "look_pass", "track_looks"]
