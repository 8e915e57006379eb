"""``Detections``: the currency between the camera node's steps.

A detector returns a :class:`Detections`; the tracker takes one per frame and
fills in ``track_id``; floor projection and hand-shelf interactions read it.
Arrays are row-aligned: row *i* of every array is the same person.

Constructors exist per source (``from_mot`` for MOTChallenge detection rows;
detector back-ends add their own ``from_*``), in the style of supervision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: COCO keypoint order used by MoveNet and YOLO pose models.
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
LEFT_WRIST, RIGHT_WRIST = COCO_KEYPOINTS.index("left_wrist"), COCO_KEYPOINTS.index("right_wrist")
LEFT_ELBOW, RIGHT_ELBOW = COCO_KEYPOINTS.index("left_elbow"), COCO_KEYPOINTS.index("right_elbow")


_EPS = np.finfo(np.float64).eps


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a) × len(b)) of ``x1, y1, x2, y2`` boxes; pairs with an empty box score 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 2:3], a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    iw = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    ih = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    # an empty or inverted box has no intersection, so a union <= eps only comes with inter == 0
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / np.maximum(union, _EPS)


@dataclass
class Detections:
    """People found in one frame.

    ``xyxy``: N×4 boxes in pixels (x1, y1, x2, y2); ``scores``: N confidences;
    ``keypoints``: N×17×3 (x, y, score) in pixels, or None when the model has no
    pose; ``track_id``: N ints (-1 until a tracker assigns them).
    """

    xyxy: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None
    track_id: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        n = len(self.xyxy)
        if len(self.scores) != n:
            raise ValueError(f"{n} boxes but {len(self.scores)} scores")
        if self.keypoints is not None:
            kp = np.asarray(self.keypoints, dtype=np.float64)
            # keep the keypoint count when there are no rows (reshape(0, -1, 3) is ambiguous)
            self.keypoints = kp.reshape(n, kp.shape[1] if kp.ndim == 3 else 17 if kp.size == 0 else -1, 3)
        if self.track_id is None:
            self.track_id = np.full(n, -1, dtype=np.int64)
        else:
            self.track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
            if len(self.track_id) != n:
                raise ValueError(f"{n} boxes but {len(self.track_id)} track ids")

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> "Detections":
        """Select rows with an int, slice, index array or boolean mask."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index], self.scores[index],
            None if self.keypoints is None else self.keypoints[index],
            self.track_id[index],
        )

    @classmethod
    def empty(cls, with_keypoints: bool = False) -> "Detections":
        """No detections."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 3)) if with_keypoints else None)

    @classmethod
    def from_xywh(cls, xywh, scores, keypoints=None) -> "Detections":
        """From top-left x, y, width, height boxes."""
        b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
        return cls(np.c_[b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], scores, keypoints)

    @classmethod
    def from_mot(cls, rows: np.ndarray) -> "Detections":
        """From MOTChallenge ``det.txt`` rows of one frame: frame, id, x, y, w, h, conf, ..."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, rows.shape[-1] if len(rows) else 10)
        return cls.from_xywh(rows[:, 2:6], rows[:, 6] if rows.shape[1] > 6 else np.ones(len(rows)))

    @classmethod
    def concat(cls, parts: "list[Detections]") -> "Detections":
        """The rows of ``parts`` in order, one set (keypoints kept only when every part has them)."""
        kp = [d.keypoints for d in parts]
        return cls(np.concatenate([d.xyxy for d in parts]), np.concatenate([d.scores for d in parts]),
                   np.concatenate(kp) if all(k is not None for k in kp) else None,
                   np.concatenate([d.track_id for d in parts]))

    def shifted(self, dx: float, dy: float) -> "Detections":
        """These detections moved by (dx, dy) pixels (boxes and keypoints; e.g. from a tile to its frame)."""
        kp = None
        if self.keypoints is not None:
            kp = self.keypoints.copy()
            kp[:, :, 0] += dx
            kp[:, :, 1] += dy
        return Detections(self.xyxy + [dx, dy, dx, dy], self.scores.copy(), kp, self.track_id.copy())

    @property
    def xywh(self) -> np.ndarray:
        """Boxes as top-left x, y, width, height."""
        b = self.xyxy
        return np.c_[b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]

    @property
    def foot_points(self) -> np.ndarray:
        """N×2 image points where each person stands: bottom centre of the box,
        or the midpoint of the ankles when both are confidently detected."""
        b = self.xyxy
        feet = np.c_[(b[:, 0] + b[:, 2]) / 2, b[:, 3]]
        if self.keypoints is not None and self.keypoints.shape[1] == 17:
            ankles = self.keypoints[:, 15:17]
            ok = (ankles[:, :, 2] > 0.5).all(axis=1)
            feet[ok] = ankles[ok, :, :2].mean(axis=1)
        return feet
