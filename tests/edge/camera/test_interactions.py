"""Hand-shelf interactions: enter/exit with hysteresis, dwell, keypoint confidence, elbows."""

from __future__ import annotations

import numpy as np
import pytest

from storesense.config import HandSettings, ShelfFace
from storesense.edge.camera.detections import LEFT_ELBOW, LEFT_WRIST, RIGHT_WRIST, Detections
from storesense.edge.camera.interactions import HandShelfMonitor

FACE = ShelfFace(id="A-front", shelf="A", polygon=[(100, 100), (200, 100), (200, 200), (100, 200)])
OTHER = ShelfFace(id="B-front", shelf="B", polygon=[(300, 100), (400, 100), (400, 200), (300, 200)])


def person(track_id: int, left=None, right=None, left_elbow=None) -> Detections:
    """One tracked person with the given (x, y, score) wrists (others at score 0)."""
    kp = np.zeros((1, 17, 3))
    if left is not None:
        kp[0, LEFT_WRIST] = left
    if right is not None:
        kp[0, RIGHT_WRIST] = right
    if left_elbow is not None:
        kp[0, LEFT_ELBOW] = left_elbow
    return Detections(np.array([[0, 0, 250, 400]]), [0.9], kp, [track_id])


def run(monitor: HandShelfMonitor, positions, dt: float = 0.1, track_id: int = 7):
    """Feed left-wrist positions (x, y, score or None for not seen); returns all events."""
    events = []
    for i, pos in enumerate(positions):
        dets = person(track_id, left=pos) if pos is not None else Detections.empty(with_keypoints=True)
        events += monitor.update(dets, i * dt)
    return events


def settings(**kw) -> HandSettings:
    return HandSettings(**{"enter_frames": 2, "exit_frames": 3, "hand_extension": 0.0, **kw})


def test_enter_and_exit_with_dwell_time_and_keypoint_score():
    mon = HandShelfMonitor([FACE, OTHER], settings())
    inside, outside = (150, 150, 0.8), (50, 50, 0.9)
    events = run(mon, [outside, inside, inside, inside, inside, outside, outside, outside, outside])
    assert [(e.phase, e.face, e.shelf, e.hand, e.track_id) for e in events] == [
        ("enter", "A-front", "A", "left", 7), ("exit", "A-front", "A", "left", 7)]
    enter, leave = events
    assert enter.ts == pytest.approx(0.1) and enter.dwell_s == 0.0  # time of the first inside frame
    assert leave.ts == pytest.approx(0.5) and leave.dwell_s == pytest.approx(0.4)  # first outside frame
    assert enter.keypoint_score == pytest.approx(0.8) and leave.keypoint_score == pytest.approx(0.8)


def test_a_single_frame_inside_or_outside_does_not_flicker():
    mon = HandShelfMonitor([FACE], settings())
    inside, outside = (150, 150, 0.8), (50, 50, 0.9)
    assert run(mon, [outside, inside, outside, inside, outside, outside]) == []  # never 2 inside in a row
    mon = HandShelfMonitor([FACE], settings())
    events = run(mon, [inside, inside, outside, inside, outside, outside, inside, inside])
    assert [e.phase for e in events] == ["enter"]  # never 3 outside in a row


def test_wrist_jittering_on_the_polygon_edge_stays_inside():
    mon = HandShelfMonitor([FACE], settings(exit_frames=1), edge_margin_px=4.0)
    jitter = [(199, 150, 0.8), (199, 150, 0.8), (202, 150, 0.8), (198, 150, 0.8), (203, 150, 0.8), (201, 150, 0.8)]
    assert [e.phase for e in run(mon, jitter)] == ["enter"]
    assert [e.phase for e in run(mon, [(210, 150, 0.8)])] == ["exit"]  # clearly out


def test_low_confidence_wrists_are_ignored():
    mon = HandShelfMonitor([FACE], settings(min_keypoint_score=0.5))
    assert run(mon, [(150, 150, 0.3)] * 5) == []
    events = run(mon, [(150, 150, 0.6)] * 3 + [(150, 150, 0.2)] * 3)  # unseen counts as outside
    assert [e.phase for e in events] == ["enter", "exit"]


def test_hand_extends_beyond_the_wrist_along_the_forearm():
    # wrist just below the face; the elbow further below: the hand reaches up into the face
    mon = HandShelfMonitor([FACE], settings(hand_extension=0.5))
    frames = [person(3, left=(150, 215, 0.9), left_elbow=(150, 255, 0.9))] * 2
    events = [e for i, d in enumerate(frames) for e in mon.update(d, i * 0.1)]
    assert [e.phase for e in events] == ["enter"]
    mon = HandShelfMonitor([FACE], settings(hand_extension=0.0))
    assert [e for i, d in enumerate(frames) for e in mon.update(d, i * 0.1)] == []


def test_both_hands_faces_and_untracked_people():
    mon = HandShelfMonitor([FACE, OTHER], settings())
    both = person(1, left=(150, 150, 0.9), right=(350, 150, 0.7))
    untracked = Detections(both.xyxy, both.scores, both.keypoints, [-1])
    events = mon.update(both, 0.0) + mon.update(both, 0.1) + mon.update(untracked, 0.2)
    assert sorted((e.phase, e.hand, e.face) for e in events) == [
        ("enter", "left", "A-front"), ("enter", "right", "B-front")]
    assert mon.active_faces() == {"A-front", "B-front"}
    flushed = mon.flush(1.0)
    assert sorted((e.phase, e.hand, e.dwell_s) for e in flushed) == [("exit", "left", 1.0), ("exit", "right", 1.0)]
    assert mon.active_faces() == set()


def test_detections_without_keypoints_produce_nothing():
    mon = HandShelfMonitor([FACE], settings())
    dets = Detections(np.array([[100, 100, 200, 200]]), [0.9], None, [1])
    assert mon.update(dets, 0.0) == [] and mon.update(dets, 0.1) == []
