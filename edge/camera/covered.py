"""Covered tracks: keep reporting a tracked person whom the person in front of them hides.

When one shopper walks just behind another, the model usually draws one box for the
two of them; the tracker holds the one behind a few frames and then loses them, and
the node stops reporting a person who is still there. :class:`CoveredTracks` carries
such a person for a few frames (``detector.regions.carry_frames``): a live track that

* was matched in the node's last update (by a detection of its own, or carried),
* was matched by detections of its own in at least :data:`CARRY_MIN_SEEN` frames (not a track just born),
* was last matched by a detection of its own no more than ``carry_frames`` frames ago,
* is matched by no detection of this frame (one-to-one, IoU >= :data:`CARRY_MATCH_IOU`),
* lies at least :data:`CARRY_COVER` inside a detection that another live track holds, and
* was seen apart from that track (both matched by detections of their own in the same update) in at least
  ``min_apart`` (:data:`CARRY_MIN_APART`) updates: two people, not one person the tracker holds twice

is reported at its box moved by its velocity (a running average of its box centre's motion while it was
seen, :data:`CARRY_VELOCITY_WEIGHT`; the box keeps its size), scored ``score`` (the detector's lowest
threshold: the node's tracker extends only tracks it saw last frame with such a score and never starts a
track from it), with its keypoints unseen (score 0): no keypoint was seen for it, so no hand event comes of it.

This is a detection the node really makes and publishes (the person is there, hidden); the constants
were set by hand on the rescaled TUD proxy, in sample; ``carry_frames`` by leave-one-footage-out CV
(docs/benchmarks.md, camera node).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detections import Detections, box_iou

#: A live track is covered by a detection when this share of its box lies inside the detection.
CARRY_COVER = 0.5
#: Only a track matched by detections of its own in at least this many frames is carried (not one just born).
CARRY_MIN_SEEN = 3
#: A live track and a detection of the frame are the same person (one to one) at this IoU or more.
CARRY_MATCH_IOU = 0.3
#: A covered track is carried only when it and the track holding its cover were both matched by detections of their
#: own in at least this many of the same updates (seen apart: two people). A track the tracker started a second time
#: on one person (a partial box, a box lagging behind) is never seen apart from its twin; on the TUD-Campus proxy such
#: twins made most of the false carried boxes (docs/benchmarks.md, camera node). Chosen by CV (bench/cv_regions.py).
CARRY_MIN_APART = 3
#: A track's velocity is a running average of its box centre's motion per update, from 0 when it is born, the newest
#: weighing this much (1: the last update's motion alone; 0.3 carried 40-80 px people with fewer false boxes on the
#: TUD-Campus proxy, in sample: docs/benchmarks.md, camera node).
CARRY_VELOCITY_WEIGHT = 0.3


def inside_share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """len(a) × len(b): the share of each box of ``a`` that lies inside each box of ``b`` (xyxy)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    area = np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-9)
    return np.maximum(iw, 0) * np.maximum(ih, 0) / area[:, None]


class CoveredTracks:
    """Carries live tracks hidden behind another tracked person (see the module docstring).

    :meth:`note` takes the tracker's live tracks after each frame (boxes, ids, frames since their
    last match); :meth:`carry` adds the covered ones to the next frame's detections.
    """

    def __init__(self, max_frames: int, score: float, min_apart: int = CARRY_MIN_APART):
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self.max_frames = int(max_frames)
        self.score = float(score)
        self.min_apart = int(min_apart)
        #: (id, id) with the smaller id first -> updates in which both were matched by detections of their own
        self._apart: dict[tuple[int, int], int] = {}
        #: id -> (box after the last update, velocity per frame, frames carried since its own last detection)
        self._state: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        self._boxes = np.zeros((0, 4))
        self._rows: dict[int, int] = {}
        self._seen: dict[int, int] = {}  # id -> frames it was matched by a detection of its own
        self._carried: set[int] = set()
        self.carried = 0  # detections carried so far

    def note(self, boxes: np.ndarray, ids: np.ndarray, misses: np.ndarray) -> None:
        """The tracker's live (confirmed) tracks after a frame: boxes (xyxy), ids, frames since their last match."""
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        ids = np.asarray(ids, int).reshape(-1)
        state, seen, own = {}, {}, []
        for b, i, m in zip(boxes, ids.tolist(), np.asarray(misses, int).tolist()):
            seen[i] = self._seen.get(i, 0)
            if m != 0:  # not matched in this update: carried no further
                continue
            old = self._state.get(i)
            if i in self._carried and old is not None:  # matched by its carried box: it keeps its velocity
                state[i] = (b.copy(), old[1], old[2])
            else:  # matched by a detection of its own: velocity of the box centre (its size kept)
                v = np.zeros(4)
                if old is not None:  # the box centre's motion since the last update, averaged from 0 (size kept)
                    c = ((b[:2] + b[2:]) - (old[0][:2] + old[0][2:])) / 2
                    v = CARRY_VELOCITY_WEIGHT * np.r_[c, c] + (1 - CARRY_VELOCITY_WEIGHT) * old[1]
                state[i] = (b.copy(), v, 0)
                seen[i] += 1
                own.append(i)
        if self.min_apart > 0:  # pairs of live tracks seen apart; pairs with a track gone are forgotten
            apart = {p: n for p, n in self._apart.items() if p[0] in seen and p[1] in seen}
            own.sort()
            for a, i in enumerate(own):
                for j in own[a + 1:]:
                    apart[(i, j)] = apart.get((i, j), 0) + 1
            self._apart = apart
        self._state, self._seen = state, seen
        self._boxes = boxes
        self._rows = {i: k for k, i in enumerate(ids.tolist())}
        self._carried = set()

    def carry(self, dets: Detections, frame_size: tuple[int, int]) -> Detections:
        """``dets`` plus a box for each live track that the person in front hides (none when nothing is)."""
        w, h = frame_size
        if not len(dets) or len(self._boxes) < 2 or not any(n < self.max_frames for _, _, n in self._state.values()):
            return dets
        # every live track where it should be now (those seen last time moved by their velocity)
        boxes = self._boxes.copy()
        for i, (b, v, _) in self._state.items():
            boxes[self._rows[i]] = b + v
        boxes = np.clip(boxes, 0, [w, h, w, h])
        # which live track each detection is (one to one): a carried track is free and its cover held by another
        iou = box_iou(boxes, dets.xyxy)
        r, c = linear_sum_assignment(-iou)
        ok = iou[r, c] >= CARRY_MATCH_IOU
        holder = np.full(len(dets), -1)
        holder[c[ok]] = r[ok]
        free = np.ones(len(boxes), bool)
        free[r[ok]] = False
        cover = inside_share(boxes, dets.xyxy)
        ids = list(self._rows)  # row -> id (rows were numbered in order)
        carried = []
        for i, (_, _, n) in self._state.items():
            k = self._rows[i]
            if (n >= self.max_frames or self._seen[i] < CARRY_MIN_SEEN or not free[k]
                    or boxes[k, 2] - boxes[k, 0] < 1 or boxes[k, 3] - boxes[k, 1] < 1):
                continue
            d = int(np.argmax(cover[k]))
            if cover[k, d] >= CARRY_COVER and holder[d] >= 0 and self._seen_apart(i, ids[holder[d]]) >= self.min_apart:
                carried.append(i)
        if not carried:
            return dets
        out = boxes[[self._rows[i] for i in carried]]
        kp = None
        if dets.keypoints is not None:  # no keypoint was seen: each at the box centre, score 0
            kp = np.zeros((len(out), dets.keypoints.shape[1], 3))
            kp[:, :, 0] = ((out[:, 0] + out[:, 2]) / 2)[:, None]
            kp[:, :, 1] = ((out[:, 1] + out[:, 3]) / 2)[:, None]
        for i in carried:
            b, v, n = self._state[i]
            self._state[i] = (b, v, n + 1)
        self._carried = set(carried)
        self.carried += len(carried)
        return Detections.concat([dets, Detections(out, np.full(len(out), self.score), kp)])

    def _seen_apart(self, i: int, j: int) -> int:
        """Updates in which tracks ``i`` and ``j`` were both matched by detections of their own."""
        return self._apart.get((i, j) if i < j else (j, i), 0)


__all__ = ["CoveredTracks", "inside_share", "CARRY_COVER", "CARRY_MATCH_IOU", "CARRY_MIN_APART"]
