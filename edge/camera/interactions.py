"""Hand-shelf interactions: wrists reaching into the shelf faces a camera sees.

For every tracked person, each hand is placed at the wrist keypoint - or a
little beyond it along the forearm when the elbow is confidently seen
(``HandSettings.hand_extension``), since the fingers reach past the wrist - and
tested against the camera's shelf faces (image polygons). Per (track, hand,
face) a small state machine with hysteresis turns that into events:

* ``enter`` once the hand has been inside for ``enter_frames`` processed
  frames in a row (its time is the first of them, dwell 0);
* ``exit`` once it has been outside (or unseen, or below
  ``min_keypoint_score``) for ``exit_frames`` frames in a row (its time is the
  first outside frame; dwell = exit time - enter time).

A hand must also cross ``edge_margin_px`` pixels out of the polygon to count as
outside, so a wrist jittering on the edge does not flicker. The event's
keypoint score is the mean wrist score over the frames that confirmed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ...config import HandSettings, ShelfFace
from .detections import LEFT_ELBOW, LEFT_WRIST, RIGHT_ELBOW, RIGHT_WRIST, Detections

HANDS = (("left", LEFT_WRIST, LEFT_ELBOW), ("right", RIGHT_WRIST, RIGHT_ELBOW))


@dataclass(frozen=True)
class HandEvent:
    """A hand entering or leaving a shelf face (becomes a contracts.HandShelfInteraction)."""

    track_id: int
    shelf: str
    face: str
    phase: str
    hand: str
    ts: float
    dwell_s: float
    keypoint_score: float
    wrist: tuple[float, float] | None = None  # wrist pixel inside the face: first frame in / last frame in


@dataclass
class _HandState:
    inside: bool = False
    streak: int = 0  # consecutive frames contradicting the current state
    streak_ts: float = 0.0  # time of the first of those frames
    streak_scores: list[float] = field(default_factory=list)
    enter_ts: float = 0.0
    score_sum: float = 0.0  # wrist scores while inside, for the exit event's mean
    score_n: int = 0
    first_point: tuple[float, float] | None = None  # wrist pixel of the first frame inside (pending enter)
    last_point: tuple[float, float] | None = None  # wrist pixel of the last frame inside

    def mean_score(self) -> float:
        """Mean wrist score over the frames the hand was inside."""
        return self.score_sum / self.score_n if self.score_n else 0.0


class HandShelfMonitor:
    """Turns per-frame wrist keypoints of tracked people into hand enter/exit events per shelf face."""

    def __init__(self, faces: list[ShelfFace], settings: HandSettings | None = None, *, edge_margin_px: float = 4.0):
        self.faces = list(faces)
        self.settings = settings or HandSettings()
        self.edge_margin_px = edge_margin_px
        self._contours = [np.asarray(f.polygon, dtype=np.float32).reshape(-1, 1, 2) for f in self.faces]
        self._states: dict[tuple[int, str, int], _HandState] = {}

    def hand_points(self, dets: Detections) -> dict[tuple[int, str], tuple[float, float, float]]:
        """(track id, hand) -> (x, y, wrist score) for tracked people whose wrist passes the score threshold."""
        out: dict[tuple[int, str], tuple[float, float, float]] = {}
        if dets.keypoints is None or dets.keypoints.shape[1] != 17:
            return out
        s = self.settings
        for i, tid in enumerate(dets.track_id):
            if tid < 0:
                continue
            kp = dets.keypoints[i]
            for hand, wrist, elbow in HANDS:
                wx, wy, ws = kp[wrist]
                if ws < s.min_keypoint_score:
                    continue
                ex, ey, es = kp[elbow]
                if s.hand_extension > 0 and es >= s.min_keypoint_score:
                    wx, wy = wx + s.hand_extension * (wx - ex), wy + s.hand_extension * (wy - ey)
                out[(int(tid), hand)] = (float(wx), float(wy), float(ws))
        return out

    def update(self, dets: Detections, ts: float) -> list[HandEvent]:
        """Feed one processed frame's tracked detections at time ``ts``; returns the events it confirms."""
        hands = self.hand_points(dets)
        events: list[HandEvent] = []
        keys = set(self._states)
        for (tid, hand) in hands:
            keys.update((tid, hand, f) for f in range(len(self.faces)))
        for key in sorted(keys):
            tid, hand, f = key
            point = hands.get((tid, hand))
            state = self._states.get(key) or _HandState()
            if point is None:
                now_inside, score = False, 0.0
            else:
                dist = cv2.pointPolygonTest(self._contours[f], (point[0], point[1]), True)
                now_inside = dist >= 0 if not state.inside else dist >= -self.edge_margin_px
                score = point[2]
                if now_inside:
                    if not state.inside and state.streak == 0:
                        state.first_point = (point[0], point[1])
                    state.last_point = (point[0], point[1])
            event = self._step(state, now_inside, score, ts, key)
            if event is not None:
                events.append(event)
            if state.inside or state.streak:
                self._states[key] = state
            else:
                self._states.pop(key, None)
        return events

    def _step(self, state: _HandState, now_inside: bool, score: float, ts: float, key) -> HandEvent | None:
        if now_inside == state.inside:
            state.streak, state.streak_scores = 0, []
            if now_inside:
                state.score_sum, state.score_n = state.score_sum + score, state.score_n + 1
            return None
        if state.streak == 0:
            state.streak_ts = ts
        state.streak += 1
        if now_inside:
            state.streak_scores.append(score)
        needed = self.settings.exit_frames if state.inside else self.settings.enter_frames
        if state.streak < needed:
            return None
        tid, hand, f = key
        face = self.faces[f]
        if now_inside:
            state.inside, state.enter_ts = True, state.streak_ts
            state.score_sum, state.score_n = float(sum(state.streak_scores)), len(state.streak_scores)
            event = HandEvent(tid, face.shelf, face.id, "enter", hand, state.streak_ts, 0.0, state.mean_score(),
                              state.first_point)
        else:
            state.inside = False
            event = HandEvent(tid, face.shelf, face.id, "exit", hand, state.streak_ts,
                              max(0.0, state.streak_ts - state.enter_ts), state.mean_score(), state.last_point)
        state.streak, state.streak_scores = 0, []
        return event

    def active_faces(self) -> set[str]:
        """Ids of the shelf faces a hand is inside right now."""
        return {self.faces[f].id for (_, _, f), state in self._states.items() if state.inside}

    def flush(self, ts: float) -> list[HandEvent]:
        """Exit events for every hand still inside a face (end of stream), at time ``ts``."""
        events = []
        for (tid, hand, f), state in sorted(self._states.items()):
            if state.inside:
                face = self.faces[f]
                events.append(HandEvent(tid, face.shelf, face.id, "exit", hand, ts, max(0.0, ts - state.enter_ts),
                                        state.mean_score(), state.last_point))
        self._states.clear()
        return events
