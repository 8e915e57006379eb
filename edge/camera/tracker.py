"""Per-camera multi-person tracker: Kalman prediction and two-stage IoU association (ByteTrack style).

Each frame (:meth:`CameraTracker.update`):

1. every track's box filter predicts the box in this frame (``steps`` frames ahead when
   frames were skipped);
2. detections below ``low_thresh`` are dropped; the rest are split into high
   (``score >= high_thresh``) and low confidence;
3. **stage 1**: confirmed tracks are matched to high-confidence detections by the
   Hungarian algorithm on IoU: first the tracks seen in the previous update (a pair
   needing IoU >= ``match_iou``), then the tracks lost for up to ``max_age_frames``
   frames with the detections left (IoU >= ``lost_match_iou``), so a lost track's
   guess never takes a detection from a track that is being followed;
4. **stage 2**: confirmed tracks still unmatched that were seen in the previous update
   are matched to the low-confidence detections (IoU >= ``low_match_iou``): a person
   partly hidden, whose detection score dropped, keeps the track instead of losing it;
5. **stage 3**: tentative tracks are matched to the high-confidence detections left
   (IoU >= ``tentative_match_iou``); a tentative track that misses is dropped;
6. high-confidence detections still unmatched with ``score >= new_track_thresh`` start
   tentative tracks; a track is confirmed (and gets its id) after ``min_hits`` matched
   updates in a row; confirmed tracks unmatched for more than ``max_age_frames`` die.

Ids are given at confirmation (1, 2, 3, ...) and kept through misses, so a person
occluded for less than ``max_age_frames`` frames gets the same id back when the
predicted box meets the new detection.

Track state lives in parallel numpy arrays next to the :class:`~storesense.edge.camera.kalman.BoxFilter`
rows, so the per-frame cost is a few vectorised operations and up to three small assignments.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detections import Detections, box_iou
from .kalman import BoxFilter, ConstantVelocityFilter, FilterFactory


class CameraTracker:
    """Track people in one camera's stream of :class:`Detections`.

    ``filter_factory``: a callable returning an empty :class:`~storesense.edge.camera.kalman.BoxFilter`
    (called on construction and on :meth:`reset`); ``high_thresh``/``low_thresh``: the score
    split of the two association stages; ``match_iou``: least IoU for a stage-1 match;
    ``max_age_frames``: frames a confirmed track survives without a match; ``min_hits``:
    matched updates in a row before a track is confirmed. The keyword-only parameters
    refine the association of lost tracks, stages 2 and 3 and track birth (see the module
    docstring); ``lost_match_iou`` defaults to ``match_iou``.
    """

    def __init__(
        self,
        filter_factory: FilterFactory = ConstantVelocityFilter,
        high_thresh: float = 0.5,
        low_thresh: float = 0.1,
        match_iou: float = 0.2,
        max_age_frames: int = 30,
        min_hits: int = 2,
        *,
        low_match_iou: float = 0.5,
        lost_match_iou: float | None = None,
        tentative_match_iou: float = 0.3,
        new_track_thresh: float | None = None,
    ) -> None:
        if not 0 <= low_thresh <= high_thresh:
            raise ValueError(f"need 0 <= low_thresh ({low_thresh}) <= high_thresh ({high_thresh})")
        if max_age_frames < 0 or min_hits < 1:
            raise ValueError(f"need max_age_frames >= 0 ({max_age_frames}) and min_hits >= 1 ({min_hits})")
        lost_match_iou = match_iou if lost_match_iou is None else lost_match_iou
        for name, iou in (("match_iou", match_iou), ("low_match_iou", low_match_iou),
                          ("lost_match_iou", lost_match_iou), ("tentative_match_iou", tentative_match_iou)):
            if not 0 < iou <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {iou}")
        self.filter_factory = filter_factory
        self.high_thresh = float(high_thresh)
        self.low_thresh = float(low_thresh)
        self.match_iou = float(match_iou)
        self.max_age_frames = int(max_age_frames)
        self.min_hits = int(min_hits)
        self.low_match_iou = float(low_match_iou)
        self.lost_match_iou = float(lost_match_iou)
        self.tentative_match_iou = float(tentative_match_iou)
        self.new_track_thresh = float(high_thresh if new_track_thresh is None else new_track_thresh)
        self.reset()

    def reset(self) -> None:
        """Forget every track and restart ids at 1 (a new video or scene)."""
        self.filter: BoxFilter = self.filter_factory()
        if len(self.filter) != 0:
            raise ValueError("filter_factory() must return an empty filter")
        # per track (columns, parallel to the filter's rows): id (-1 while tentative),
        # matched updates in a row, frames since the last match, frames it may go unmatched
        self._meta = np.zeros((4, 0), dtype=np.int64)
        self._tentative = 0
        self._next_id = 1
        self._last_frame: int | None = None

    @property
    def track_count(self) -> int:
        """Tracks held now (confirmed, lost-but-alive and tentative)."""
        return self._meta.shape[1]

    def live_boxes(self) -> np.ndarray:
        """Current box estimate (xyxy) of every confirmed track held now, lost-but-alive ones included."""
        if not self.track_count:
            return np.zeros((0, 4))
        return self.filter.boxes()[self._meta[0] >= 0]

    def live_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Id and frames since the last match of every confirmed track held now, row-aligned with :meth:`live_boxes`."""
        ids, _, misses, _ = self._meta
        keep = ids >= 0
        return ids[keep].copy(), misses[keep].copy()

    def update(self, dets: Detections, frame: int | None = None) -> Detections:
        """Associate this frame's detections with the tracks; return those on confirmed tracks.

        ``frame``: the frame number, when known; a jump of k frames predicts k steps
        (a repeated or earlier number counts as one step). The result holds the matched
        detections' rows (boxes, scores, keypoints as detected) with ``track_id`` set.
        """
        steps = 1
        if frame is not None:
            if self._last_frame is not None:
                steps = max(1, int(frame) - self._last_frame)
            self._last_frame = int(frame)
        ids, hits, misses, max_misses = self._meta
        n_tracks = len(ids)
        scores = dets.scores
        is_high = scores >= self.high_thresh
        high = np.nonzero(is_high)[0]
        track_of_det = np.full(len(scores), -1, dtype=np.int64)   # detection -> track row

        if n_tracks:
            self.filter.predict(steps)
            seen_last_time = misses == 0
            misses += steps
            predicted = self.filter.boxes()
            confirmed = ids >= 0
            n_confirmed = n_tracks - self._tentative
            iou_high = box_iou(predicted, dets.xyxy[high])
            # stage 1: confirmed tracks x high-confidence detections; tracks seen last time
            # first, then lost ones (DeepSORT's cascade: a lost track's guess is the weaker one)
            recent = confirmed & seen_last_time if self._tentative else seen_last_time
            recent_rows = np.nonzero(recent)[0]
            t1, d1 = _assign(iou_high[recent_rows] if len(recent_rows) < n_tracks else iou_high, self.match_iou)
            track_of_det[high[d1]] = recent_rows[t1]
            if len(recent_rows) < n_confirmed:
                lost_rows = np.nonzero(confirmed & ~seen_last_time)[0]
                left_high = np.nonzero(track_of_det[high] < 0)[0]
                tl, dl = _assign(iou_high[lost_rows][:, left_high], self.lost_match_iou)
                track_of_det[high[left_high[dl]]] = lost_rows[tl]
            # stage 2: confirmed tracks seen last time and still unmatched x low-confidence detections
            low = np.nonzero((scores >= self.low_thresh) & ~is_high)[0]
            if len(low):
                free = recent
                free[recent_rows[t1]] = False
                rows2 = np.nonzero(free)[0]
                if len(rows2):
                    t2, d2 = _assign(box_iou(predicted[rows2], dets.xyxy[low]), self.low_match_iou)
                    track_of_det[low[d2]] = rows2[t2]
            # stage 3: tentative tracks x high-confidence detections left
            if self._tentative:
                tent_rows = np.nonzero(~confirmed)[0]
                left_high = np.nonzero(track_of_det[high] < 0)[0]
                t3, d3 = _assign(iou_high[tent_rows][:, left_high], self.tentative_match_iou)
                track_of_det[high[left_high[d3]]] = tent_rows[t3]

            matched_dets = np.nonzero(track_of_det >= 0)[0]
            matched_rows = track_of_det[matched_dets]
            self.filter.update(matched_rows, dets.xyxy[matched_dets])
            misses[matched_rows] = 0
            hits += 1
            hits[misses > 0] = 0
            if self._tentative:
                newly = np.nonzero((ids < 0) & (hits >= self.min_hits))[0]
                if len(newly):
                    ids[newly] = np.arange(self._next_id, self._next_id + len(newly))
                    max_misses[newly] = self.max_age_frames
                    self._next_id += len(newly)
            out_ids = ids[matched_rows]
            shown = out_ids >= 0
            out_rows, out_ids = matched_dets[shown], out_ids[shown]
            # death: tentative tracks that missed, confirmed tracks lost too long
            dead = misses > max_misses
            if dead.any():
                alive = ~dead
                self.filter.keep(alive)
                self._meta = self._meta[:, alive]
            if self._tentative:
                self._tentative = int(np.count_nonzero(self._meta[0] < 0))
        else:
            out_rows = out_ids = high[:0]

        # birth: high-confidence detections left over
        births = high[track_of_det[high] < 0]
        if self.new_track_thresh > self.high_thresh:
            births = births[scores[births] >= self.new_track_thresh]
        if len(births):
            b = dets.xyxy[births]
            ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])    # no track from an empty or NaN box
            births, b = births[ok], b[ok]
        if len(births):
            self.filter.add(b)
            n = len(births)
            meta = np.zeros((4, n), dtype=np.int64)
            meta[1] = 1
            if self.min_hits <= 1:
                meta[0] = np.arange(self._next_id, self._next_id + n)
                meta[3] = self.max_age_frames
                self._next_id += n
                out_rows = np.concatenate([out_rows, births])
                out_ids = np.concatenate([out_ids, meta[0]])
            else:
                meta[0] = -1
                self._tentative += n
            self._meta = np.concatenate([self._meta, meta], axis=1)
        result = dets[out_rows]
        result.track_id = out_ids
        return result


def _assign(iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-IoU one-to-one assignment keeping pairs with IoU >= ``min_iou``: (rows, cols)."""
    if iou.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    gated = np.where(iou >= min_iou, iou, 0.0)
    rows, cols = linear_sum_assignment(gated, maximize=True)
    ok = gated[rows, cols] > 0
    return rows[ok], cols[ok]

