"""Wrist errors of the shipped pose model on real video: the rates the simulator's hand events draw from.

Two measurements on MOTChallenge sequences (ground-truth person boxes with
identities, no keypoint truth), with the camera node's own detector
(``storesense.edge.camera``, MoveNet MultiPose as shipped, tiling ``auto``):

- **neighbour wrists**: each detection is matched to a ground-truth box (IoU >=
  0.5, Hungarian). For a matched person whose box overlaps another person's box
  (the two stand within reach of each other, as the camera sees them), every
  wrist scored at least ``min_keypoint_score`` (0.3, the hand events'
  threshold) counts; it is *on a neighbour* when it lies inside another
  overlapping person's box and outside its own (both boxes grown by 5 % of
  their height, so a wrist on the own box's edge is not called wrong). The
  share of such wrists is the rate at which a wrist near a neighbour belongs to
  the wrong skeleton. Wrists inside both boxes are ambiguous and counted as
  right by that test, so its share is a lower bound. Two more signs of a wrist
  on the wrong skeleton are counted among them: the wrist nearer the
  neighbour's body axis than its own and more than 0.2 box heights off its own
  (``ambiguous_nearer_other``), and an *impossible forearm*: wrist and own
  elbow (both scored) more than 0.22 box heights apart, 1.5 x the forearm's
  0.146 of body height (Drillis and Contini), with the wrist in a neighbour's box.
- **wrist glitches**: per ground-truth identity, the wrist's position relative
  to its box (in box heights) at the camera node's processing rate (every
  ``step``-th frame, about 5 fps); a glitch is a run of one or more processed
  frames where the wrist is more than 0.25 box heights away from where it was
  before and after (those two within 0.1 of each other). A run of two frames or
  more is long enough to enter a shelf face (``enter_frames`` 2). Impossible
  forearms (above) are counted the same way, as runs of one and of two or more
  processed frames. Rates are per wrist-minute seen.

Run ``python -m storesense.datasets.sim.wrist_calibration SEQ_DIR...``: it
prints the figures and writes them to ``wrist_calibration.json`` beside this
module (read by the simulator's documentation, not at run time).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

MIN_SCORE = 0.3
MARGIN = 0.05
JUMP = 0.25
RETURN = 0.1
AXIS = 0.2  # box heights: a hanging or swinging wrist stays within this of the body's axis
PROCESS_FPS = 5.0
WRISTS = (9, 10)
ELBOWS = (7, 8)
#: box heights: a forearm (elbow to wrist) is 0.146 of body height (Drillis & Contini); longer than 0.22 (1.5x) is
#: not an arm the model saw right
FOREARM = 0.22


def _match(gt: np.ndarray, det: np.ndarray) -> list[tuple[int, int]]:
    from scipy.optimize import linear_sum_assignment

    from ...edge.camera.detections import box_iou

    if not len(gt) or not len(det):
        return []
    iou = box_iou(gt, det)
    r, c = linear_sum_assignment(-iou)
    return [(int(a), int(b)) for a, b in zip(r, c) if iou[a, b] >= 0.5]


def _inside(p: np.ndarray, box: np.ndarray) -> bool:
    m = MARGIN * (box[3] - box[1])
    return bool(box[0] - m <= p[0] <= box[2] + m and box[1] - m <= p[1] <= box[3] + m)


def detect_sequence(seq_dir: str | Path, detector) -> dict:
    """Ground truth and the model's detections of one sequence, frame by frame (plain arrays)."""
    from ..loaders.mot import read_sequence, rows_per_frame

    seq = read_sequence(seq_dir)
    gt_rows = rows_per_frame(seq.ground_truth(), seq.length)
    frames = []
    t0 = time.perf_counter()
    for f, image in seq.frames():
        rows = gt_rows[f - 1]
        rows = rows[rows[:, 6] != 0] if len(rows) else rows
        gt = np.c_[rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]] if len(rows) \
            else np.zeros((0, 4))
        dets = detector.detect(image)
        frames.append({"ids": rows[:, 1].astype(int) if len(rows) else np.zeros(0, int), "gt": gt,
                       "xyxy": np.asarray(dets.xyxy, float), "kp": np.asarray(dets.keypoints, float)
                       if dets.keypoints is not None else np.zeros((0, 17, 3))})
    return {"name": seq.name, "fps": seq.frame_rate, "frames": frames, "detect_s": time.perf_counter() - t0}


def measure(seq: dict) -> dict:
    """The neighbour-wrist and glitch counts of one detected sequence (see the module docstring)."""
    near = wrong = ambiguous = nearer = long_near = 0
    tracks: dict[int, dict[int, np.ndarray]] = {}  # gt id -> frame -> (2 wrists, 3) relative to the box
    for fi, fr in enumerate(seq["frames"]):
        gt, ids, xyxy, kp = fr["gt"], fr["ids"], fr["xyxy"], fr["kp"]
        for g, d in _match(gt, xyxy):
            own = gt[g]
            h = max(own[3] - own[1], 1.0)
            others = [k for k in range(len(gt)) if k != g and min(own[2], gt[k][2]) > max(own[0], gt[k][0])
                      and min(own[3], gt[k][3]) > max(own[1], gt[k][1])]
            rel = np.full((2, 3), np.nan)
            for w, idx in enumerate(WRISTS):
                x, y, s = kp[d, idx]
                if s < MIN_SCORE:
                    continue
                rel[w] = ((x - own[0]) / h, (y - own[1]) / h, s)
                ex, ey, es = kp[d, ELBOWS[w]]
                long_arm = bool(es >= MIN_SCORE and np.hypot(x - ex, y - ey) > FOREARM * h)
                rel[w, 2] = 2.0 if long_arm else s  # a score above 1 marks an impossible forearm
                if not others:
                    continue
                near += 1
                in_own = _inside((x, y), own)
                in_other = any(_inside((x, y), gt[k]) for k in others)
                long_near += int(bool(long_arm and in_other))
                if in_other and not in_own:
                    wrong += 1
                elif in_other:
                    ambiguous += 1
                    # nearer another person's body axis than its own, and farther from its own than arms hang
                    cx = (own[0] + own[2]) / 2
                    d_other = min(abs(x - (gt[k][0] + gt[k][2]) / 2) for k in others if _inside((x, y), gt[k]))
                    if abs(x - cx) > AXIS * h and d_other < abs(x - cx):
                        nearer += 1
            tracks.setdefault(int(ids[g]), {})[fi] = rel
    step = max(1, int(round(seq["fps"] / PROCESS_FPS)))
    seen_s = 0.0
    glitches = {1: 0, 2: 0}
    long_runs = {1: 0, 2: 0}  # impossible forearms: runs of one processed frame, and of two or more
    for frames in tracks.values():
        for w in range(2):
            for phase in range(step):
                keys = [f for f in sorted(frames) if f % step == phase]
                pts = [(f, frames[f][w]) for f in keys]
                seen_s += sum(1 for _, p in pts if not np.isnan(p[0])) * step / seq["fps"]
                run, prev = 0, None
                for f, p in pts:
                    bad = not np.isnan(p[0]) and p[2] > 1.0
                    if bad and run and f - prev == step:
                        run += 1
                    else:
                        if run:
                            long_runs[min(run, 2)] += 1
                        run = 1 if bad else 0
                    prev = f
                if run:
                    long_runs[min(run, 2)] += 1
                # runs of deviating processed frames between two agreeing ones
                i = 0
                while i < len(pts) - 2:
                    f0, a = pts[i]
                    if np.isnan(a[0]):
                        i += 1
                        continue
                    for run in (1, 2):
                        if i + run + 1 >= len(pts):
                            break
                        fb, b = pts[i + run + 1]
                        mids = [pts[i + k][1] for k in range(1, run + 1)]
                        if fb - f0 != (run + 1) * step or np.isnan(b[0]) or any(np.isnan(m[0]) for m in mids):
                            break
                        if np.hypot(*(b[:2] - a[:2])) > RETURN:
                            continue
                        if all(np.hypot(*(m[:2] - (a[:2] + b[:2]) / 2)) > JUMP for m in mids):
                            glitches[run] += 1
                            break
                    i += 1
    return {"sequence": seq["name"], "fps": seq["fps"], "process_step": step,
            "wrists_near_neighbour": near, "on_neighbour": wrong, "ambiguous": ambiguous,
            "ambiguous_nearer_other": nearer, "impossible_forearm_on_neighbour": long_near,
            "impossible_forearm_runs_1": long_runs[1], "impossible_forearm_runs_2": long_runs[2],
            "wrist_seen_s": round(seen_s / step, 1), "glitch_runs_1": glitches[1], "glitch_runs_2": glitches[2],
            "detect_s": round(seq["detect_s"], 1)}


def main(argv: list[str]) -> int:
    """Measure the sequences named in ``argv`` and write ``wrist_calibration.json``."""
    from ...config import DetectorSettings
    from ...edge.camera.detectors import load_detector
    from ...edge.camera.tiling import build_detector

    settings = DetectorSettings(model="movenet")  # as the camera node ships it (tiling auto, from the frame size)
    detector = build_detector(load_detector(settings), settings)
    rows = []
    for path in argv:
        r = measure(detect_sequence(path, detector))
        print(json.dumps(r), flush=True)
        rows.append(r)
    near = sum(r["wrists_near_neighbour"] for r in rows)
    wrong = sum(r["on_neighbour"] for r in rows)
    seen = sum(r["wrist_seen_s"] for r in rows)
    g2 = sum(r["glitch_runs_2"] for r in rows)
    g1 = sum(r["glitch_runs_1"] for r in rows)
    summary = {"model": "movenet (shipped, tiling auto)", "min_keypoint_score": MIN_SCORE, "margin": MARGIN,
               "jump_box_heights": JUMP, "process_fps": PROCESS_FPS, "sequences": rows,
               "neighbour_wrist_share": round(wrong / near, 4) if near else None,
               "nearer_other_share": round((wrong + sum(r["ambiguous_nearer_other"] for r in rows)) / near, 4)
               if near else None,
               "ambiguous_share": round(sum(r["ambiguous"] for r in rows) / near, 4) if near else None,
               "impossible_forearm_on_neighbour_share": round(sum(r["impossible_forearm_on_neighbour"]
                                                                  for r in rows) / near, 4) if near else None,
               "impossible_forearm_2_per_wrist_min": round(60 * sum(r["impossible_forearm_runs_2"] for r in rows)
                                                           / seen, 4) if seen else None,
               "impossible_forearm_1_per_wrist_min": round(60 * sum(r["impossible_forearm_runs_1"] for r in rows)
                                                           / seen, 4) if seen else None,
               "glitch_1_per_wrist_min": round(60 * g1 / seen, 4) if seen else None,
               "glitch_2_per_wrist_min": round(60 * g2 / seen, 4) if seen else None}
    per_seq = [r["on_neighbour"] / r["wrists_near_neighbour"] for r in rows if r["wrists_near_neighbour"]]
    summary["neighbour_wrist_share_per_sequence"] = [round(x, 4) for x in per_seq]
    print(json.dumps({k: v for k, v in summary.items() if k != "sequences"}, indent=1))
    Path(__file__).with_name("wrist_calibration.json").write_text(json.dumps(summary, indent=1) + "\n",
                                                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
