"""MOTChallenge 2D-box evaluation data: per-frame ids and IoU, after the benchmark's preprocessing.

The conventions follow TrackEval's ``MotChallenge2DBox`` (the MOTChallenge devkit's
Python successor), so figures are comparable with published ones:

- boxes are ``x, y, w, h`` in pixels and compared by IoU with ``x2 = x + w`` (no +1);
- **MOT15**: ground-truth rows whose ``conf`` column is 0 are removed; there are no
  classes and no distractor handling, so a tracker box on an ignored person is a false positive;
- **MOT16/17/20**: a tracker box matched (IoU >= 0.5, Hungarian) to a distractor-class ground
  truth (person on vehicle, static person, distractor, reflection; also non-MOT vehicle
  for MOT20) is removed; then only pedestrian ground truth (class 1) with ``conf != 0`` is kept;
- ids are relabelled 0..n-1 so metrics can index arrays by id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...edge.camera.detections import box_iou
from ..loaders.mot import rows_per_frame

EPS = np.finfo("float").eps
PEDESTRIAN = 1
#: MOTChallenge class ids counted as distractors (a tracker box on one is not a false positive).
DISTRACTOR_CLASSES = {"MOT16": (2, 7, 8, 12), "MOT17": (2, 7, 8, 12), "MOT20": (2, 6, 7, 8, 12)}
BENCHMARKS = ("MOT15", "MOT16", "MOT17", "MOT20")


@dataclass
class SequenceData:
    """What the metrics read: per frame, the gt ids, tracker ids and their IoU matrix."""

    gt_ids: list[np.ndarray]
    tracker_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    num_gt_ids: int
    num_tracker_ids: int
    num_gt_dets: int
    num_tracker_dets: int

    @property
    def num_frames(self) -> int:
        """Number of frames (timesteps) in the sequence."""
        return len(self.gt_ids)


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a) × len(b)) of ``x, y, w, h`` boxes (``x2 = x + w``), empty boxes scoring 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return box_iou(np.c_[a[:, :2], a[:, :2] + a[:, 2:]], np.c_[b[:, :2], b[:, :2] + b[:, 2:]])


def guess_benchmark(gt_rows: np.ndarray) -> str:
    """``"MOT17"`` when column 8 holds MOTChallenge class ids (1..13) everywhere, else ``"MOT15"``.

    MOT15's ground truth has -1 or world coordinates in that column.
    """
    gt_rows = np.asarray(gt_rows)
    if gt_rows.ndim != 2 or gt_rows.shape[1] < 9 or len(gt_rows) == 0:
        return "MOT15"
    classes = gt_rows[:, 7]
    if np.all(classes == np.round(classes)) and classes.min() >= 1 and classes.max() <= 13:
        return "MOT17"
    return "MOT15"


def prepare_sequence(gt_rows: np.ndarray, tracker_rows: np.ndarray, length: int,
                     benchmark: str = "MOT15") -> SequenceData:
    """Apply the benchmark's preprocessing to ground-truth and tracker rows of one sequence.

    ``gt_rows``/``tracker_rows``: MOTChallenge rows (frame, id, x, y, w, h, conf, ...).
    Raises ``ValueError`` when an id repeats within a frame (the format forbids it).
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark {benchmark!r}: expected one of {', '.join(BENCHMARKS)}")
    gt_frames = rows_per_frame(gt_rows, length)
    tr_frames = rows_per_frame(tracker_rows, length)
    gt_ids, tr_ids, sims = [], [], []
    for t, (g, r) in enumerate(zip(gt_frames, tr_frames)):
        for rows, what in ((g, "ground-truth"), (r, "tracker")):
            ids = rows[:, 1]
            if len(np.unique(ids)) != len(ids):
                raise ValueError(f"{what} id repeated in frame {t + 1}")
        sim = box_iou_xywh(g[:, 2:6], r[:, 2:6])
        keep_tracker = np.ones(len(r), dtype=bool)
        if benchmark == "MOT15":
            keep_gt = g[:, 6] != 0
        else:
            classes = g[:, 7].astype(int) if g.shape[1] > 7 else np.full(len(g), PEDESTRIAN)
            if len(g) and len(r):
                score = np.where(sim >= 0.5 - EPS, sim, 0.0)
                rows_, cols = linear_sum_assignment(-score)
                matched = score[rows_, cols] > EPS
                rows_, cols = rows_[matched], cols[matched]
                keep_tracker[cols[np.isin(classes[rows_], DISTRACTOR_CLASSES[benchmark])]] = False
            keep_gt = (g[:, 6] != 0) & (classes == PEDESTRIAN)
        gt_ids.append(g[keep_gt, 1].astype(np.int64))
        tr_ids.append(r[keep_tracker, 1].astype(np.int64))
        sims.append(sim[keep_gt][:, keep_tracker])
    gt_ids, n_gt = _relabel(gt_ids)
    tr_ids, n_tr = _relabel(tr_ids)
    return SequenceData(gt_ids, tr_ids, sims, n_gt, n_tr,
                        int(sum(len(x) for x in gt_ids)), int(sum(len(x) for x in tr_ids)))


def _relabel(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map the ids that occur to 0..n-1, keeping their order."""
    present = [x for x in ids_per_frame if len(x)]
    if not present:
        return ids_per_frame, 0
    unique = np.unique(np.concatenate(present))
    return [np.searchsorted(unique, x).astype(np.int64) for x in ids_per_frame], len(unique)
