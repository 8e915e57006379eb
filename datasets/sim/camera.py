"""What one simulated camera node reports: person observations and hand-shelf interactions.

:func:`render_camera` renders every shopper through the camera's real
projection (:class:`~.sim_geometry.PinholeView`), frame by frame, vectorised
over all frames and shoppers at once:

- **body**: a person is a vertical body of their height at their floor
  position; five body samples (ankles, knees, hips, shoulders, head) are tested
  for line of sight to the camera centre against the shelf prisms (occlusion by
  shelves). The box spans the visible height of the body, 0.5 m wide, plus the
  reaching wrist; the box edges get noise.
- **other shoppers**: a nearer person's box covering part of a farther one's
  box hides that share of it (occlusion by other shoppers).
- **detection**: probability ``(1 - miss_rate) * clip((v - 0.3) / 0.4, 0, 1)``
  with ``v`` the visible share (shelf samples x uncovered box share), and at
  least 40 % of the box inside the image.
- **floor point**: from the feet when they are visible (pixel noise
  ``foot_sigma_px`` gives tangential sigma ``s R / f`` and radial sigma
  ``s R^2 / (f H)``, R the range to the point, H the camera height above
  the plane, f the focal length, plus ``calib_sigma_m`` isotropic); from
  the head when the feet are hidden (the ray through the head is cut at an
  assumed 1.7 m, so a shopper's true height biases it; the reported
  covariance adds that height term, 8 cm std). The reported covariance is
  exactly the one the noise was drawn from (plus the height term).
- **keypoints**: 17 COCO keypoints of a simple skeleton (walking gait, the
  reaching wrist inside the shelf), pixel noise ``keypoint_sigma_frac`` x
  box height + 1 px, scores low where the body part is hidden by a shelf, a
  nearer person or the image border, or the face looks away.
- **track ids**: a person keeps the camera's track id while detected with
  gaps of at most ``track_timeout_s``; after a longer gap (left the view,
  occluded) they get a new id. When two tracked boxes start to overlap (IoU >=
  0.3, an *encounter*) their ids swap with probability ``id_switch_share``.
- **false positives**: spurious tracks (a person-sized box on a random floor
  spot, lasting a few frames) at ``false_positive_rate`` observations per frame.
- **hand-shelf interactions**: for each reach into a shelf whose face this
  camera has configured, when the wrist's line of sight is clear, the wrist
  projects into the face polygon and the shopper is tracked (not hidden by
  another person): ``enter`` at the first frame after the wrist went in and
  ``exit`` at the first frame after it came out, with the shopper's track id
  at that frame (after any id switch); a reach is missed with
  ``hand_miss_rate``. With ``neighbour_wrist_share`` a reach's wrist goes to
  a neighbour's skeleton: its events carry the track id of the nearest other
  tracked shopper within 0.8 m whose box overlaps the reacher's; spurious hand
  visits (a hand at the face that moves nothing, ``spurious_hand_per_min``)
  are seen like reaches. Both draw from a random stream of their own, and
  every event's truth is in :attr:`CameraOutput.hands`.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ...config import Camera
from ...contracts import HandShelfInteraction, PersonObservation
from .appearance import to_appearance
from .geometry import PinholeView, Prism, blocked, points_in_polygon
from .shoppers import FACE_CLEARANCE_M, REACH_DEPTH_M

#: COCO keypoints in the body frame: (forward m, left m, height as a share of the person's height)
SKELETON = np.array([
    [0.10, 0.0, 0.935],  # nose
    [0.08, 0.035, 0.955], [0.08, -0.035, 0.955],  # eyes
    [0.0, 0.075, 0.945], [0.0, -0.075, 0.945],  # ears
    [0.0, 0.19, 0.815], [0.0, -0.19, 0.815],  # shoulders
    [0.0, 0.22, 0.63], [0.0, -0.22, 0.63],  # elbows
    [0.02, 0.22, 0.48], [0.02, -0.22, 0.48],  # wrists
    [0.0, 0.11, 0.53], [0.0, -0.11, 0.53],  # hips
    [0.0, 0.10, 0.285], [0.0, -0.10, 0.285],  # knees
    [0.0, 0.10, 0.04], [0.0, -0.10, 0.04],  # ankles
])
#: heights (share of body height) of the body samples tested for shelf occlusion
SAMPLE_FRACS = np.array([0.04, 0.285, 0.53, 0.815, 0.97])
#: which body sample each keypoint belongs to
KEYPOINT_SAMPLE = np.array([4, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 0, 0])
#: gait swing (forward metres at full stride) per keypoint
GAIT_SWING = np.array([0, 0, 0, 0, 0, 0, 0, -0.06, 0.06, -0.12, 0.12, 0, 0, 0.10, -0.10, 0.20, -0.20])
BODY_HALF_WIDTH_M = 0.25
#: head-top height a camera node assumes when only the head is visible
ASSUMED_HEIGHT_M = 1.7
HEIGHT_SIGMA_M = 0.08
MEAN_HEIGHT_M = 1.72
ENCOUNTER_IOU = 0.3
#: a shopper this close (floor metres) to a reacher, boxes overlapping in the image, can get the reacher's wrist
NEIGHBOUR_REACH_M = 0.8
FP_MEAN_FRAMES = 4.0


@dataclass
class TrackSegment:
    """Truth of one camera track id over a stretch of time (``shopper`` None: a false positive)."""

    camera: str
    track_id: int
    shopper: str | None
    t0: float
    t1: float

    def to_json(self) -> dict:
        """Plain JSON-ready dict."""
        return {"camera": self.camera, "track_id": self.track_id, "shopper": self.shopper,
                "t0": round(self.t0, 3), "t1": round(self.t1, 3)}


@dataclass
class IdSwitch:
    """Two shoppers' camera track ids swapped at ``ts`` (truth)."""

    camera: str
    ts: float
    shoppers: tuple[str, str]
    tracks_before: tuple[int, int]

    def to_json(self) -> dict:
        """Plain JSON-ready dict."""
        return {"camera": self.camera, "ts": round(self.ts, 3), "shoppers": list(self.shoppers),
                "tracks_before": list(self.tracks_before)}


@dataclass
class HandTruth:
    """One hand event a camera sent, and the truth behind it.

    ``shopper``: whose hand it was; ``track_id``: the track id the event
    carries; ``cause``: ``reach`` (a real reach, on the reacher's track),
    ``neighbour`` (a real reach whose wrist went to ``neighbour``'s skeleton:
    the event carries that shopper's track id) or ``spurious`` (a hand at the
    shelf face that moved nothing: a hover or a keypoint glitch).
    """

    camera: str
    ts: float
    phase: str
    shopper: str
    track_id: int
    cause: str
    shelf: str
    neighbour: str | None = None

    def to_json(self) -> dict:
        """Plain JSON-ready dict."""
        return {"camera": self.camera, "ts": round(self.ts, 3), "phase": self.phase, "shopper": self.shopper,
                "track_id": self.track_id, "cause": self.cause, "shelf": self.shelf, "neighbour": self.neighbour}


@dataclass
class CameraOutput:
    """What :func:`render_camera` produced: message records and truth."""

    records: list[tuple] = field(default_factory=list)  # (ts, source, cls, fields)
    segments: list[TrackSegment] = field(default_factory=list)
    switches: list[IdSwitch] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    hands: list[HandTruth] = field(default_factory=list)


def _boxes(view: PinholeView, pts: np.ndarray) -> np.ndarray:
    """Bounding boxes (..., 4) as x0, y0, x1, y1 of projected point sets (..., K, 3)."""
    uv = view.project(pts)
    return np.concatenate([uv.min(axis=-2), uv.max(axis=-2)], axis=-1)


def _clip_boxes(b: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.stack([np.clip(b[..., 0], 0, w), np.clip(b[..., 1], 0, h),
                     np.clip(b[..., 2], 0, w), np.clip(b[..., 3], 0, h)], axis=-1)


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def _pairwise_intersection(b: np.ndarray) -> np.ndarray:
    """Intersection areas (F, S, S) of boxes (F, S, 4)."""
    x0, y0, x1, y1 = (np.ascontiguousarray(b[..., k]) for k in range(4))
    w = np.minimum(x1[:, :, None], x1[:, None, :])
    w -= np.maximum(x0[:, :, None], x0[:, None, :])
    np.clip(w, 0, None, out=w)
    h = np.minimum(y1[:, :, None], y1[:, None, :])
    h -= np.maximum(y0[:, :, None], y0[:, None, :])
    np.clip(h, 0, None, out=h)
    w *= h
    return w


def _inside_boxes(p: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether point p[f, i] lies in box b[f, j] -> (F, S, S)."""
    px, py = np.ascontiguousarray(p[..., 0])[:, :, None], np.ascontiguousarray(p[..., 1])[:, :, None]
    x0, y0, x1, y1 = (np.ascontiguousarray(b[..., k])[:, None, :] for k in range(4))
    return (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)


def floor_covariance(view: PinholeView, xy: np.ndarray, plane_z: float, sigma_px: float, calib_sigma: float
                     ) -> np.ndarray:
    """Covariance (N, 2, 2) of a floor point placed from a pixel on the plane z = ``plane_z``.

    A pixel error of ``sigma_px`` moves the point ``sigma_px R / f`` across the
    line of sight and ``sigma_px R^2 / (f H)`` along it (R: range from the camera
    to the point, H: camera height above the plane, f: focal length).
    """
    c = view.centre
    d = xy - c[:2]
    horiz = np.maximum(np.linalg.norm(d, axis=1), 1e-6)
    hgt = max(c[2] - plane_z, 0.2)
    rng3 = np.sqrt(horiz**2 + hgt**2)
    s_t = sigma_px * rng3 / view.focal
    s_r = sigma_px * rng3**2 / (view.focal * hgt)
    u = d / horiz[:, None]
    return _radial_cov(u, s_r**2 + calib_sigma**2, s_t**2 + calib_sigma**2)


def _radial_cov(u: np.ndarray, var_r: np.ndarray, var_t: np.ndarray) -> np.ndarray:
    """2x2 covariances with variance ``var_r`` along unit vectors ``u`` and ``var_t`` across."""
    uu = u[:, :, None] * u[:, None, :]
    eye = np.eye(2)[None]
    return var_r[:, None, None] * uu + var_t[:, None, None] * (eye - uu)


def _draw(rng: np.random.Generator, cov: np.ndarray) -> np.ndarray:
    """One sample per 2x2 covariance (N, 2, 2) -> (N, 2)."""
    L = np.linalg.cholesky(cov + 1e-12 * np.eye(2)[None])
    return np.einsum("nij,nj->ni", L, rng.standard_normal((len(cov), 2)))


def _skeleton(P, heading, height, moving, phase, reach_alpha, reach_target, reach_left):
    """World keypoints (N, 17, 3) of N bodies."""
    fwd = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    left = np.stack([-fwd[:, 1], fwd[:, 0]], axis=-1)
    swing = np.where(moving, np.sin(phase), 0.0)
    f_off = SKELETON[None, :, 0] + swing[:, None] * GAIT_SWING[None, :]
    xy = P[:, None, :] + f_off[..., None] * fwd[:, None, :] + SKELETON[None, :, 1, None] * left[:, None, :]
    z = SKELETON[None, :, 2] * height[:, None]
    kp = np.concatenate([xy, z[..., None]], axis=-1)
    a = reach_alpha[:, None]
    for side, (sh, el, wr) in ((True, (5, 7, 9)), (False, (6, 8, 10))):
        m = (reach_left == side)[:, None]
        wrist = np.where(m, kp[:, wr] * (1 - a) + reach_target * a, kp[:, wr])
        elbow_reach = (kp[:, sh] + reach_target) / 2 - np.array([0, 0, 0.05])
        elbow = np.where(m, kp[:, el] * (1 - a) + elbow_reach * a, kp[:, el])
        kp[:, wr], kp[:, el] = wrist, elbow
    return kp


def render_camera(cam: Camera, shoppers: list, level, prisms: list[Prism], rng: np.random.Generator,
                  start_ts: float, end_ts: float, fps: float, floor_points: np.ndarray,
                  appearance=None, spurious: list | None = None,
                  hand_rng: np.random.Generator | None = None) -> CameraOutput:
    """Render one camera over [start_ts, end_ts): observations, interactions and track truth.

    ``appearance`` is None (observations without a descriptor) or ``(model,
    bases, light, rng)``: an :class:`~.appearance.AppearanceModel`, the
    shoppers' base histograms (S, 2, 12), this camera's lighting (12, 12) and
    its own random stream (so the rest of the scenario is the same with or
    without appearance). ``spurious``: per shopper, hand visits that move
    nothing (:func:`~.simulator.spurious_reaches`); ``hand_rng``: the random
    stream of wrists given to a neighbour (``level.neighbour_wrist_share``)
    and of the spurious events (None: neither happens).
    """
    view = PinholeView.of(cam)
    W, Hh = view.width, view.height
    out = CameraOutput()
    C = view.centre
    T = start_ts + float(rng.uniform(0, 1 / fps)) + np.arange(int((end_ts - start_ts) * fps)) / fps
    T = T[T < end_ts]
    F, S = len(T), len(shoppers)
    if F == 0 or S == 0:
        return out
    P = np.stack([s.positions(T) for s in shoppers], axis=1)  # (F, S, 2)
    active = ~np.isnan(P[..., 0])
    P = np.where(active[..., None], P, 0.0)
    height = np.array([s.height_m for s in shoppers])
    heading = np.stack([s.heading_at(T) for s in shoppers], axis=1)
    moving = np.stack([s.moving_at(T) for s in shoppers], axis=1)

    # reaching arm state per frame
    alpha = np.zeros((F, S))
    target = np.zeros((F, S, 3))
    left = np.zeros((F, S), dtype=bool)
    for j, s in enumerate(shoppers):
        for r in s.reaches:
            i0, i1 = np.searchsorted(T, [r.t_in - 0.4, r.t_out + 0.4])
            if i1 <= i0:
                continue
            t = T[i0:i1]
            a = np.clip(np.minimum(t - (r.t_in - 0.4), (r.t_out + 0.4) - t) / 0.4, 0, 1)
            alpha[i0:i1, j] = np.maximum(alpha[i0:i1, j], a)
            target[i0:i1, j] = r.target
            left[i0:i1, j] = r.hand == "left"

    # shelf occlusion of body samples
    samples = np.concatenate([np.broadcast_to(P[:, :, None, :], (F, S, 5, 2)),
                              (SAMPLE_FRACS[None, None, :] * height[None, :, None])[..., None]
                              * np.ones((F, S, 5, 1))], axis=-1)
    occl = np.ones((F, S, 5), dtype=bool)
    fa = np.nonzero(active)
    if len(fa[0]):
        pts = samples[fa].reshape(-1, 3)
        occl[fa] = blocked(np.broadcast_to(C, pts.shape), pts, prisms).reshape(-1, 5)
    vis_shelf = 1.0 - occl.mean(axis=2)

    # full body boxes
    d = P - C[:2]
    dn = np.maximum(np.linalg.norm(d, axis=-1), 1e-6)
    lat = np.stack([-d[..., 1], d[..., 0]], axis=-1) / dn[..., None] * BODY_HALF_WIDTH_M
    top = (height + 0.05)[None, :, None] * np.ones((F, S, 1))
    corners = np.stack([np.concatenate([P + lat, np.zeros((F, S, 1))], -1),
                        np.concatenate([P - lat, np.zeros((F, S, 1))], -1),
                        np.concatenate([P + lat, top], -1),
                        np.concatenate([P - lat, top], -1)], axis=2)
    full = _boxes(view, corners)
    in_front = active & ~np.isnan(full).any(axis=-1)
    full = np.where(in_front[..., None], full, 0.0)
    clipped = _clip_boxes(full, W, Hh)
    in_frac = np.where(in_front, _area(clipped) / np.maximum(_area(full), 1e-6), 0.0)
    present = in_front & (in_frac > 0.05)
    sample_px = view.project(samples)
    sample_px = np.where(present[..., None, None], sample_px, -1.0)

    # occlusion by nearer shoppers
    rng3 = np.hypot(dn, C[2] - height / 2)
    nearer = (rng3[:, None, :] < rng3[:, :, None]) & present[:, None, :] & present[:, :, None]
    inter = _pairwise_intersection(clipped) * nearer
    cover = 1.0 - np.prod(1.0 - np.clip(inter / np.maximum(_area(clipped), 1e-6)[..., None], 0, 1), axis=2)
    foot_px, head_px = sample_px[:, :, 0], sample_px[:, :, 4]
    foot_covered = (_inside_boxes(foot_px, clipped) & nearer).any(axis=2)
    head_covered = (_inside_boxes(head_px, clipped) & nearer).any(axis=2)

    eff = vis_shelf * (1.0 - cover)
    p_det = (1.0 - level.miss_rate) * np.clip((eff - 0.3) / 0.4, 0.0, 1.0) * (in_frac >= 0.4)
    detected = present & (rng.random((F, S)) < p_det)
    n_present = int(present.sum())
    out.stats.update(frames=F, present=n_present, detected=int(detected.sum()),
                     shelf_occluded=int((present & (vis_shelf < 0.7)).sum()),
                     person_occluded=int((present & (cover >= 0.3)).sum()),
                     occluded=int((present & (eff < 0.7)).sum()))

    # track segments (a new id after a gap longer than the timeout), false-positive tracks
    timeout = max(1, int(round(level.track_timeout_s * fps)))
    segs = []  # (start_f, order, end_f, shopper index or -1 - ghost index)
    for j in range(S):
        fr = np.flatnonzero(detected[:, j])
        if len(fr) == 0:
            continue
        breaks = np.flatnonzero(np.diff(fr) > timeout)
        starts = np.r_[fr[0], fr[breaks + 1]]
        ends = np.r_[fr[breaks], fr[-1]]
        segs += [(int(a), 0, int(b), j) for a, b in zip(starts, ends)]
    ghosts = _ghost_tracks(view, rng, level, F, floor_points)
    segs += [(g["f0"], 1, g["f1"], -1 - k) for k, g in enumerate(ghosts)]
    segs.sort()
    TID = np.full((F, S), -1, dtype=np.int64)
    next_id = 1
    for f0, _, f1, who in segs:
        if who >= 0:
            TID[f0:f1 + 1, who] = next_id
        else:
            ghosts[-1 - who]["id"] = next_id
        next_id += 1

    # id switches when two tracked boxes start to overlap
    tracked = detected & (TID >= 0)
    inter_all = _pairwise_intersection(clipped)
    union = _area(clipped)[:, :, None] + _area(clipped)[:, None, :] - inter_all
    iou = inter_all / np.maximum(union, 1e-6)
    close = (iou >= ENCOUNTER_IOU) & tracked[:, :, None] & tracked[:, None, :]
    close &= np.triu(np.ones((S, S), dtype=bool), 1)[None]
    starts = close & ~np.concatenate([np.zeros((1, S, S), dtype=bool), close[:-1]], axis=0)
    enc = np.argwhere(starts)
    draws = rng.random(len(enc))
    out.stats["encounters"] = len(enc)
    for (f, a, b), u in zip(enc, draws):
        ta, tb = int(TID[f, a]), int(TID[f, b])
        if u >= level.id_switch_share or ta == tb:
            continue
        ea = f + _run_length(TID[f:, a], ta)
        eb = f + _run_length(TID[f:, b], tb)
        TID[f:ea, a] = tb
        TID[f:eb, b] = ta
        out.switches.append(IdSwitch(cam.id, float(T[f]), (shoppers[a].id, shoppers[b].id), (ta, tb)))
    out.stats["id_switches"] = len(out.switches)

    # truth of the track ids
    for j in range(S):
        col = TID[:, j]
        idx = np.flatnonzero(col >= 0)
        if len(idx) == 0:
            continue
        cut = np.flatnonzero((np.diff(idx) > 1) | (np.diff(col[idx]) != 0))
        for a, b in zip(np.r_[0, cut + 1], np.r_[cut, len(idx) - 1]):
            out.segments.append(TrackSegment(cam.id, int(col[idx[a]]), shoppers[j].id, float(T[idx[a]]),
                                             float(T[idx[b]])))
    for g in ghosts:
        out.segments.append(TrackSegment(cam.id, g["id"], None, float(T[g["f0"]]), float(T[g["f1"]])))

    # observations of real shoppers
    fi, si = np.nonzero(detected)
    n = len(fi)
    if n:
        Pd, hd = P[fi, si], height[si]
        vis = ~occl[fi, si]
        lowest = np.argmax(vis, axis=1)
        z_lo = np.where(lowest == 0, 0.0, np.maximum(SAMPLE_FRACS[lowest] * hd - 0.12, 0.0))
        lat_d = lat[fi, si]
        box_pts = np.stack([np.c_[Pd + lat_d, z_lo], np.c_[Pd - lat_d, z_lo],
                            np.c_[Pd + lat_d, hd + 0.05], np.c_[Pd - lat_d, hd + 0.05]], axis=1)
        kp3 = _skeleton(Pd, heading[fi, si], hd, moving[fi, si],
                        2 * math.pi * 1.9 * T[fi] + si * 1.3, alpha[fi, si], target[fi, si], left[fi, si])
        kp_px = view.project(kp3)
        reaching = alpha[fi, si] > 0.5
        wrist = np.where(left[fi, si][:, None], kp_px[:, 9], kp_px[:, 10])
        box = _boxes(view, box_pts)
        box[reaching, :2] = np.minimum(box[reaching, :2], wrist[reaching])
        box[reaching, 2:] = np.maximum(box[reaching, 2:], wrist[reaching])
        bh = np.maximum(box[:, 3] - box[:, 1], 1.0)
        box += rng.normal(0, 1, (n, 4)) * (0.02 * bh)[:, None]
        box = _clip_boxes(box, W, Hh)
        score = np.clip(rng.uniform(0.75, 0.95, n) * (0.55 + 0.45 * eff[fi, si]), 0.05, 1.0)

        # keypoints: noise and scores
        kp_sigma = level.keypoint_sigma_frac * bh + 1.0
        kp_px = kp_px + rng.normal(0, 1, kp_px.shape) * kp_sigma[:, None, None]
        kscore = rng.uniform(0.7, 0.98, (n, 17))
        hidden = occl[fi, si][:, KEYPOINT_SAMPLE]
        kscore = np.where(hidden, rng.uniform(0.05, 0.35, (n, 17)), kscore)
        nearer_d = nearer[fi, si]  # (n, S): who is nearer to the camera than this person
        kp_cov = np.zeros((n, 17), dtype=bool)
        for k in range(17):
            p = kp_px[:, k]
            inb = ((p[:, None, 0] >= clipped[fi, :, 0]) & (p[:, None, 0] <= clipped[fi, :, 2])
                   & (p[:, None, 1] >= clipped[fi, :, 1]) & (p[:, None, 1] <= clipped[fi, :, 3]))
            kp_cov[:, k] = (inb & nearer_d).any(axis=1)
        kscore = np.where(kp_cov, np.minimum(kscore, rng.uniform(0.1, 0.4, (n, 17))), kscore)
        to_cam = C[:2] - Pd
        facing_cam = (np.cos(heading[fi, si]) * to_cam[:, 0] + np.sin(heading[fi, si]) * to_cam[:, 1]) \
            / np.maximum(np.linalg.norm(to_cam, axis=1), 1e-6)
        away = facing_cam < -0.2
        kscore[:, :3] = np.where(away[:, None], rng.uniform(0.05, 0.3, (n, 3)), kscore[:, :3])
        bad = np.isnan(kp_px).any(axis=2)
        outside = bad | (kp_px[..., 0] < 0) | (kp_px[..., 0] > W - 1) | (kp_px[..., 1] < 0) | (kp_px[..., 1] > Hh - 1)
        kscore = np.where(outside, rng.uniform(0.0, 0.15, (n, 17)), kscore)
        kp_px = np.nan_to_num(kp_px, nan=0.0)
        kp_px[..., 0] = np.clip(kp_px[..., 0], 0, W - 1)
        kp_px[..., 1] = np.clip(kp_px[..., 1], 0, Hh - 1)

        # floor points: from the feet, else from the head, else none
        foot_ok = vis[:, 0] & ~foot_covered[fi, si] & _in_image(foot_px[fi, si], W, Hh)
        head_ok = ~foot_ok & vis[:, 4] & ~head_covered[fi, si] & _in_image(head_px[fi, si], W, Hh) \
            & (C[2] > ASSUMED_HEIGHT_M + 0.3)
        est = Pd.copy()
        noise_cov = floor_covariance(view, Pd, 0.0, level.foot_sigma_px, level.calib_sigma_m)
        cov = noise_cov.copy()
        if head_ok.any():
            hcut = (C[2] - ASSUMED_HEIGHT_M) / np.maximum(C[2] - hd[head_ok], 0.1)
            est[head_ok] = C[:2] + (Pd[head_ok] - C[:2]) * hcut[:, None]
            noise_cov[head_ok] = floor_covariance(view, est[head_ok], ASSUMED_HEIGHT_M, level.foot_sigma_px,
                                                  level.calib_sigma_m)
            dh = est[head_ok] - C[:2]
            dist_h = np.maximum(np.linalg.norm(dh, axis=1), 1e-6)
            s_h = dist_h * HEIGHT_SIGMA_M / (C[2] - MEAN_HEIGHT_M)
            cov[head_ok] = noise_cov[head_ok] + _radial_cov(dh / dist_h[:, None], s_h**2, np.zeros_like(s_h))
        est = est + _draw(rng, noise_cov)
        has_floor = foot_ok | head_ok
        out.stats.update(floor_from_feet=int(foot_ok.sum()), floor_from_head=int(head_ok.sum()),
                         no_floor=int((~has_floor).sum()))
        apps = _appearances(appearance, fi, si, cover, inter, n)
        for k in range(n):
            f, j = int(fi[k]), int(si[k])
            floor = None
            if has_floor[k]:
                c = cov[k]
                floor = {"x": round(float(est[k, 0]), 3), "y": round(float(est[k, 1]), 3),
                         "cov": ((round(float(c[0, 0]), 6), round(float(c[0, 1]), 6)),
                                 (round(float(c[1, 0]), 6), round(float(c[1, 1]), 6)))}
            out.records.append((round(float(T[f]), 3), cam.id, PersonObservation, dict(
                camera=cam.id, frame=f, track_id=int(TID[f, j]), bbox=_bbox(box[k]),
                score=round(float(score[k]), 3), keypoints=_keypoints(kp_px[k], kscore[k]), floor=floor,
                **({"appearance": apps[k]} if apps else {}))))
    out.stats["observations"] = n

    # false positives
    n_fp = 0
    for g in ghosts:
        for f in range(g["f0"], g["f1"] + 1):
            if rng.random() < level.miss_rate:
                continue
            n_fp += 1
            b = g["box"] + rng.normal(0, 1, 4) * 0.03 * (g["box"][3] - g["box"][1])
            xy = g["xy"] + _draw(rng, g["cov"][None])[0]
            c = g["cov"]
            kp = g["kp"] + rng.normal(0, 2.0, g["kp"].shape)
            kp[:, 0] = np.clip(kp[:, 0], 0, W - 1)
            kp[:, 1] = np.clip(kp[:, 1], 0, Hh - 1)
            extra = {}
            if appearance is not None:
                model, _, light, arng = appearance
                extra["appearance"] = to_appearance(model.draw(arng, model.base(arng, 1), light)[0], 0.5)
            out.records.append((round(float(T[f]), 3), cam.id, PersonObservation, dict(
                camera=cam.id, frame=f, track_id=g["id"], bbox=_bbox(_clip_boxes(b, W, Hh)),
                score=round(float(rng.uniform(0.25, 0.6)), 3), **extra,
                keypoints=_keypoints(kp, rng.uniform(0.05, 0.5, 17)),
                floor={"x": round(float(xy[0]), 3), "y": round(float(xy[1]), 3),
                       "cov": ((round(float(c[0, 0]), 6), round(float(c[0, 1]), 6)),
                               (round(float(c[1, 0]), 6), round(float(c[1, 1]), 6)))})))
    out.stats["false_positives"] = n_fp

    _hand_interactions(out, cam, view, shoppers, level, prisms, rng, T, TID, detected, cover,
                       neighbours=(P, inter_all, hand_rng), spurious=spurious)
    return out


def _appearances(appearance, fi: np.ndarray, si: np.ndarray, cover: np.ndarray, inter: np.ndarray, n: int
                 ) -> list[dict] | None:
    """Appearance fields of the ``n`` observations (frame ``fi``, shopper ``si``), or None without a model.

    A person partly hidden by nearer ones gets the colours of the one hiding
    most of them mixed in, by the hidden share of their box.
    """
    if appearance is None or n == 0:
        return None
    model, bases, light, arng = appearance
    c = cover[fi, si]
    occluder = np.argmax(inter[fi, si], axis=-1)
    hists = model.draw(arng, bases[si], light, mix=bases[occluder], cover=c)
    return [to_appearance(h, max(0.0, 1.0 - float(ck))) for h, ck in zip(hists, c)]


def _run_length(col: np.ndarray, value: int) -> int:
    """Length of the leading run of ``value`` in ``col``."""
    diff = np.flatnonzero(col != value)
    return int(diff[0]) if len(diff) else len(col)


def _in_image(p: np.ndarray, w: int, h: int) -> np.ndarray:
    return (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)


def _bbox(b: np.ndarray) -> tuple[float, float, float, float]:
    return (round(float(b[0]), 1), round(float(b[1]), 1), round(float(b[2] - b[0]), 1), round(float(b[3] - b[1]), 1))


def _keypoints(px: np.ndarray, score: np.ndarray) -> tuple[dict, ...]:
    xs = np.round(px[:, 0], 1).tolist()
    ys = np.round(px[:, 1], 1).tolist()
    sc = np.round(score, 3).tolist()
    return tuple({"x": x, "y": y, "score": c} for x, y, c in zip(xs, ys, sc))


def _ghost_tracks(view: PinholeView, rng, level, F: int, floor_points: np.ndarray) -> list[dict]:
    """Spurious person tracks: static person-like boxes on random floor spots, a few frames each."""
    ghosts = []
    rate = level.false_positive_rate / FP_MEAN_FRAMES
    spawns = rng.poisson(rate, F)
    for f0 in np.flatnonzero(spawns):
        for _ in range(int(spawns[f0])):
            length = int(rng.geometric(1.0 / FP_MEAN_FRAMES))
            for _try in range(20):
                xy = floor_points[int(rng.integers(len(floor_points)))]
                hgt = float(rng.uniform(0.9, 1.9))
                pts = np.array([[xy[0] - 0.2, xy[1], 0.0], [xy[0] + 0.2, xy[1], 0.0],
                                [xy[0] - 0.2, xy[1], hgt], [xy[0] + 0.2, xy[1], hgt]])
                uv = view.project(pts)
                if np.isnan(uv).any() or not _in_image(uv[:1], view.width, view.height)[0]:
                    continue
                heading = np.array([float(rng.uniform(-math.pi, math.pi))])
                kp3 = _skeleton(xy[None], heading, np.array([hgt]), np.array([False]), np.zeros(1), np.zeros(1),
                                np.zeros((1, 3)), np.zeros(1, dtype=bool))
                kp = np.nan_to_num(view.project(kp3)[0])
                cov = floor_covariance(view, np.asarray(xy, float)[None], 0.0, level.foot_sigma_px,
                                       level.calib_sigma_m)[0]
                box = np.r_[uv.min(axis=0), uv.max(axis=0)]
                ghosts.append({"f0": int(f0), "f1": int(min(F - 1, f0 + length - 1)), "xy": np.asarray(xy, float),
                               "box": box, "kp": kp, "cov": cov, "id": -1})
                break
    return ghosts


def _hand_interactions(out: CameraOutput, cam: Camera, view: PinholeView, shoppers, level, prisms, rng, T, TID,
                       detected, cover, neighbours=None, spurious: list | None = None) -> None:
    """Hand enter/exit events of every reach this camera sees into a configured shelf face.

    ``neighbours`` is ``(P, inter, hand_rng)``: floor positions (F, S, 2), the
    boxes' pairwise intersections (F, S, S) and the random stream of the wrist
    errors. With a share ``level.neighbour_wrist_share`` a reach's wrist goes
    to a neighbour's skeleton: the event carries the track id of the nearest
    other tracked shopper within :data:`NEIGHBOUR_REACH_M` whose box overlaps
    the reacher's at that frame (the reacher's own id when there is none).
    The ``spurious`` hand visits of each shopper are seen like real reaches,
    their draws from ``hand_rng`` (so the real reaches' events do not change).
    """
    faces: dict[str, list] = {}
    for face in cam.shelf_faces:
        faces.setdefault(face.shelf, []).append(face)
    n_seen = n_missed = n_spurious = 0
    F = len(T)
    P, inter, hrng = neighbours if neighbours is not None else (None, None, None)
    share = getattr(level, "neighbour_wrist_share", 0.0)
    visits = [(j, r, rng) for j, s in enumerate(shoppers) for r in s.reaches]
    if hrng is not None and spurious:
        visits += [(j, r, hrng) for j, extra in enumerate(spurious) for r in extra]
    for j, r, vrng in visits:
        s = shoppers[j]
        if r.shelf not in faces:
            continue
        fp = np.asarray([r.face_point], float)
        if blocked(view.centre[None], fp, prisms)[0]:
            continue
        px = view.project(fp)
        if np.isnan(px).any():
            continue
        face = next((fc for fc in faces[r.shelf] if _near_polygon(px[0], np.asarray(fc.polygon, float), 12.0)),
                    None)
        if face is None:
            continue
        f_in, f_out = (int(i) for i in np.searchsorted(T, [r.t_in, r.t_out]))
        if f_out >= F or f_out <= f_in:
            continue
        if vrng.random() < level.hand_miss_rate:
            n_missed += r.kind != "spurious"
            continue
        # the wrist on a neighbour's skeleton (drawn once per reach, on its own stream)
        to_neighbour = hrng is not None and r.kind != "spurious" and share > 0 and hrng.random() < share
        seen_any = False
        # where the wrist crosses the face: on the shelf's front edge, between the face point and the target
        crossing = fp + (np.asarray([r.target], float) - fp) * (FACE_CLEARANCE_M / (FACE_CLEARANCE_M + REACH_DEPTH_M))
        wrist_px = view.project(crossing)[0]
        # the wrist's pixel jitters like any keypoint: a share of the person's height in the image
        depth = float(np.linalg.norm(fp[0] - view.centre))
        wrist_sigma = level.keypoint_sigma_frac * view.focal * s.height_m / max(depth, 0.5)
        # its own random stream, so the rest of the scenario does not depend on whether wrists are drawn
        wrist_rng = np.random.default_rng([zlib.crc32(cam.id.encode()), int(r.t_in * 1000) % 2**32])
        for phase, f in (("enter", f_in), ("exit", f_out)):
            tid = int(TID[f, j])
            if tid < 0 or not detected[max(0, f - 2):f + 3, j].any() or cover[f, j] >= 0.6:
                continue
            seen_any = True
            cause, other = ("spurious" if r.kind == "spurious" else "reach"), None
            if to_neighbour:
                k = _neighbour(j, f, P, inter, TID, detected)
                if k is not None:
                    tid, cause, other = int(TID[f, k]), "neighbour", shoppers[k].id
            out.records.append((round(float(T[f]), 3), cam.id, HandShelfInteraction, dict(
                camera=cam.id, track_id=tid, shelf=r.shelf, face=face.id, phase=phase, hand=r.hand,
                dwell_s=0.0 if phase == "enter" else round(float(T[f_out] - T[f_in]), 3),
                keypoint_score=round(float(vrng.uniform(0.55, 0.95) * (1 - 0.5 * cover[f, j])), 3),
                wrist=tuple(round(float(c), 1) for c in wrist_px + wrist_rng.normal(0.0, wrist_sigma, 2)))))
            out.hands.append(HandTruth(cam.id, round(float(T[f]), 3), phase, s.id, tid, cause, r.shelf, other))
        if r.kind == "spurious":
            n_spurious += seen_any
        else:
            n_seen += seen_any
    out.stats.update(reaches_seen=n_seen, reaches_missed=n_missed)
    if n_spurious:
        out.stats["spurious_hands_seen"] = n_spurious


def _neighbour(j: int, f: int, P, inter, TID, detected) -> int | None:
    """The nearest other shopper tracked at frame ``f`` within reach of shopper ``j``, boxes overlapping."""
    if P is None:
        return None
    ok = detected[f] & (TID[f] >= 0) & (TID[f] != TID[f, j]) & (inter[f, j] > 0)
    ok[j] = False
    if not ok.any():
        return None
    d = np.where(ok, np.linalg.norm(P[f] - P[f, j], axis=1), np.inf)
    k = int(np.argmin(d))
    return k if d[k] < NEIGHBOUR_REACH_M else None


def _near_polygon(p: np.ndarray, poly: np.ndarray, tol: float) -> bool:
    """Whether pixel ``p`` is inside ``poly`` or within ``tol`` pixels of its outline."""
    if points_in_polygon(p[None], poly)[0]:
        return True
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(((p - a) * ab).sum(axis=1) / np.maximum((ab * ab).sum(axis=1), 1e-9), 0, 1)
    return bool((np.linalg.norm(a + t[:, None] * ab - p, axis=1) <= tol).any())
