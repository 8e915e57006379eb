"""Detection precision and recall by person height: where a detector loses people, by size.

Each frame's detections (before any tracking) are matched one-to-one to the
ground-truth boxes by IoU (Hungarian, IoU >= 0.5, as CLEAR's matching). Recall in
a height bucket is matched ground truth / ground truth of that height; precision is
matched detections / detections of that height (a detection is bucketed by its own
box height, so a bucket's false positives are the boxes the detector drew at that size).
Ground-truth rows with ``conf`` 0 (MOTChallenge's ignore flag) are left out, and a
detection matched to one of them counts neither way, as the benchmark does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...edge.camera.detections import Detections, box_iou

#: Person-height buckets in pixels: (label, low inclusive, high exclusive).
HEIGHT_BUCKETS = (("<40", 0.0, 40.0), ("40-80", 40.0, 80.0), ("80-160", 80.0, 160.0), (">160", 160.0, np.inf))
IOU = 0.5


def bucket_of(heights: np.ndarray) -> np.ndarray:
    """Bucket index (into :data:`HEIGHT_BUCKETS`) of each height."""
    edges = np.array([b[2] for b in HEIGHT_BUCKETS[:-1]])
    return np.searchsorted(edges, np.asarray(heights, dtype=np.float64), side="right")


@dataclass
class SizeReport:
    """Counts per height bucket: ground truth, matched ground truth, detections, matched detections."""

    gt: np.ndarray = field(default_factory=lambda: np.zeros(len(HEIGHT_BUCKETS), np.int64))
    gt_matched: np.ndarray = field(default_factory=lambda: np.zeros(len(HEIGHT_BUCKETS), np.int64))
    det: np.ndarray = field(default_factory=lambda: np.zeros(len(HEIGHT_BUCKETS), np.int64))
    det_matched: np.ndarray = field(default_factory=lambda: np.zeros(len(HEIGHT_BUCKETS), np.int64))

    def add_frame(self, gt_xyxy: np.ndarray, dets: Detections, ignore_xyxy: np.ndarray | None = None) -> None:
        """Count one frame: ground-truth boxes (x1, y1, x2, y2), the detections, boxes to ignore."""
        gt_xyxy = np.asarray(gt_xyxy, dtype=np.float64).reshape(-1, 4)
        d = dets.xyxy
        matched_gt = np.zeros(len(gt_xyxy), bool)
        matched_det = np.zeros(len(d), bool)
        if len(gt_xyxy) and len(d):
            iou = box_iou(gt_xyxy, d)
            rows, cols = linear_sum_assignment(-iou)
            ok = iou[rows, cols] >= IOU - 1e-9
            matched_gt[rows[ok]] = True
            matched_det[cols[ok]] = True
        if ignore_xyxy is not None and len(ignore_xyxy) and (~matched_det).any():
            free = np.flatnonzero(~matched_det)
            iou = box_iou(np.asarray(ignore_xyxy).reshape(-1, 4), d[free])
            rows, cols = linear_sum_assignment(-iou)
            ok = iou[rows, cols] >= IOU - 1e-9
            drop = np.zeros(len(d), bool)
            drop[free[cols[ok]]] = True
            d, matched_det = d[~drop], matched_det[~drop]
        gb = bucket_of(gt_xyxy[:, 3] - gt_xyxy[:, 1])
        db = bucket_of(d[:, 3] - d[:, 1])
        n = len(HEIGHT_BUCKETS)
        self.gt += np.bincount(gb, minlength=n)
        self.gt_matched += np.bincount(gb[matched_gt], minlength=n)
        self.det += np.bincount(db, minlength=n)
        self.det_matched += np.bincount(db[matched_det], minlength=n)

    def merged(self, other: "SizeReport") -> "SizeReport":
        """The counts of both reports together."""
        return SizeReport(self.gt + other.gt, self.gt_matched + other.gt_matched, self.det + other.det,
                          self.det_matched + other.det_matched)

    def rows(self) -> list[dict]:
        """One dict per bucket plus ``all``: gt, detections, recall and precision (NaN where undefined)."""
        out = []
        for i, (label, _, _) in enumerate(list(HEIGHT_BUCKETS) + [("all", 0, 0)]):
            sl = slice(None) if label == "all" else slice(i, i + 1)
            gt, gm = int(self.gt[sl].sum()), int(self.gt_matched[sl].sum())
            det, dm = int(self.det[sl].sum()), int(self.det_matched[sl].sum())
            out.append({"bucket": label, "gt": gt, "detections": det,
                        "recall": gm / gt if gt else float("nan"), "precision": dm / det if det else float("nan")})
        return out


def frame_gt_boxes(gt_rows: np.ndarray, benchmark: str = "MOT15") -> tuple[np.ndarray, np.ndarray]:
    """Scored and ignored ground-truth boxes (x1, y1, x2, y2) of one frame's MOT rows.

    ``conf`` 0 marks a row ignored; for MOT16 and later (``benchmark``, see
    :func:`~storesense.datasets.scoring.matching.guess_benchmark`) only pedestrians (class 1) are scored.
    """
    rows = np.asarray(gt_rows, dtype=np.float64).reshape(-1, gt_rows.shape[-1] if len(gt_rows) else 7)
    xyxy = np.c_[rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]]
    keep = rows[:, 6] != 0
    if benchmark != "MOT15" and rows.shape[1] > 7:
        keep &= rows[:, 7] == 1
    return xyxy[keep], xyxy[~keep]
