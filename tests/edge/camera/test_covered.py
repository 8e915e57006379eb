"""Covered tracks (detector.regions.carry_frames): a tracked person hidden behind another tracked person, whom the
model draws one box for, is still reported for a few frames, moving as they were last seen."""

from __future__ import annotations

import numpy as np
import pytest

from storesense.config import DetectorSettings, RegionSettings
from storesense.edge.camera.covered import (CARRY_MIN_APART, CARRY_MIN_SEEN, CARRY_VELOCITY_WEIGHT, CoveredTracks,
                                            inside_share)
from storesense.edge.camera.detections import Detections
from storesense.edge.camera.node import MOVENET_TRACKER_PARAMS
from storesense.edge.camera.tiling import TiledDetector
from storesense.edge.camera.tracker import CameraTracker

FRONT = np.array([100.0, 100, 130, 190])
BEHIND = np.array([118.0, 96, 146, 180])  # 0.68 of it inside the pair's box below
PAIR = np.array([100.0, 96, 140, 190])
STEP = np.array([2.0, 0, 2, 0])  # both walk 2 px right per frame


def _dets(*boxes, score=0.6) -> Detections:
    n = len(boxes)
    return Detections(np.array(boxes).reshape(-1, 4), np.full(n, score), np.full((n, 17, 3), 0.5))


def _seen_apart(c: CoveredTracks, frames: int, front_offset: float = 0.0) -> int:
    """Both people matched by detections of their own for ``frames`` frames; returns the frame index reached."""
    for k in range(frames):
        c.note(np.array([FRONT + k * STEP + [front_offset, 0, front_offset, 0], BEHIND + k * STEP]), np.array([1, 2]),
               np.array([0, 0]))
    return frames


def _averaged(moves) -> float:
    """The running average of per-update moves from 0, newest weighing CARRY_VELOCITY_WEIGHT."""
    v = 0.0
    for m in moves:
        v = CARRY_VELOCITY_WEIGHT * m + (1 - CARRY_VELOCITY_WEIGHT) * v
    return v


def test_inside_share_is_the_share_of_the_first_box_inside_the_second():
    a = np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[5.0, 0, 15, 10], [0, 0, 100, 100]])
    assert inside_share(a, b) == pytest.approx(np.array([[0.5, 1.0], [0.0, 1.0]]), abs=1e-12)
    assert inside_share(BEHIND, PAIR)[0, 0] == pytest.approx(22 * 84 / (28 * 84), abs=1e-12)


def test_the_person_behind_is_carried_at_their_box_moved_by_their_velocity():
    c = CoveredTracks(max_frames=5, score=0.1)
    k = _seen_apart(c, 4)
    out = c.carry(_dets(PAIR + k * STEP), (640, 480))
    assert len(out) == 2
    v = _averaged([2, 2, 2])  # three moves of 2 px seen
    assert out.xyxy[1] == pytest.approx(BEHIND + (k - 1) * STEP + [v, 0, v, 0], abs=1e-9)
    assert out.scores[1] == 0.1 and (out.keypoints[1, :, 2] == 0).all()
    # the keypoints were not seen: all at the box centre, score 0
    assert out.keypoints[1, :, :2] == pytest.approx(np.tile([(out.xyxy[1, 0] + out.xyxy[1, 2]) / 2,
                                                             (out.xyxy[1, 1] + out.xyxy[1, 3]) / 2], (17, 1)))
    assert c.carried == 1


def test_the_velocity_is_a_running_average_of_the_box_centre_motion():
    c = CoveredTracks(max_frames=5, score=0.1)
    behind = [BEHIND, BEHIND + STEP, BEHIND + 2 * STEP, BEHIND + 2 * STEP + [4, 0, 4, 0]]  # 2, 2, then 4 px
    for k, b in enumerate(behind):
        c.note(np.array([FRONT + k * STEP, b]), np.array([1, 2]), np.array([0, 0]))
    out = c.carry(_dets(PAIR + 4 * STEP), (640, 480))
    v = _averaged([2, 2, 4])
    assert 0 < CARRY_VELOCITY_WEIGHT < 1 and abs(v - 4) > 0.5 and abs(v - _averaged([4])) > 0.5
    assert out.xyxy[1] == pytest.approx(behind[-1] + [v, 0, v, 0], abs=1e-9)
    # the box centre moves; a box growing on one side moves its centre by half that
    c = CoveredTracks(max_frames=5, score=0.1)
    for k in range(CARRY_MIN_SEEN):
        c.note(np.array([FRONT, BEHIND + [0, 0, 2 * k, 0]]), np.array([1, 2]), np.array([0, 0]))
    out = c.carry(_dets(PAIR + [0, 0, 6, 0]), (640, 480))
    grown = BEHIND + [0, 0, 2 * (CARRY_MIN_SEEN - 1), 0]
    v = _averaged([1] * (CARRY_MIN_SEEN - 1))
    assert out.xyxy[1] == pytest.approx(grown + [v, 0, v, 0], abs=1e-9)


def test_carrying_stops_after_carry_frames():
    c = CoveredTracks(max_frames=3, score=0.1)
    k = _seen_apart(c, 4)
    carried = []
    for j in range(6):
        out = c.carry(_dets(PAIR + (k + j) * STEP), (640, 480))
        carried.append(len(out) - 1)
        if len(out) == 2:  # the tracker matched the carried box to the track behind
            c.note(np.array([PAIR + (k + j) * STEP, out.xyxy[1]]), np.array([1, 2]), np.array([0, 0]))
        else:
            c.note(np.array([PAIR + (k + j) * STEP, out.xyxy[0]]), np.array([1, 2]), np.array([0, 1]))
    assert carried == [1, 1, 1, 0, 0, 0]
    # and the velocity was kept while carried
    c2 = CoveredTracks(max_frames=3, score=0.1)
    k = _seen_apart(c2, 4)
    boxes = []
    for j in range(3):
        out = c2.carry(_dets(PAIR + (k + j) * STEP), (640, 480))
        boxes.append(out.xyxy[1])
        c2.note(np.array([PAIR + (k + j) * STEP, out.xyxy[1]]), np.array([1, 2]), np.array([0, 0]))
    v = _averaged([2, 2, 2])
    assert np.diff(np.array(boxes), axis=0) == pytest.approx(np.tile([v, 0, v, 0], (2, 1)), abs=1e-9)


@pytest.mark.parametrize("case", ["own detection", "missed last update", "just born", "its own wider box",
                                  "barely covered"])
def test_what_is_not_carried(case):
    c = CoveredTracks(max_frames=5, score=0.1)
    # "its own wider box": the front track is 300 px away, so the box over the one behind is their own (they hold it)
    k = _seen_apart(c, CARRY_MIN_SEEN - 1 if case == "just born" else 4,
                    front_offset=300.0 if case == "its own wider box" else 0.0)
    if case == "missed last update":
        c.note(np.array([FRONT + k * STEP, BEHIND + k * STEP]), np.array([1, 2]), np.array([0, 1]))
        k += 1
    dets = {"own detection": _dets(FRONT + k * STEP, BEHIND + k * STEP),
            "barely covered": _dets(FRONT + k * STEP)}.get(case, _dets(PAIR + k * STEP))
    out = c.carry(dets, (640, 480))
    assert len(out) == len(dets), case
    assert c.carried == 0


def test_only_a_track_seen_apart_from_the_one_in_front_is_carried():
    """A second track on one person (never matched by a detection of its own while the first was) is not carried;
    two tracks seen apart in min_apart updates are two people."""
    assert CARRY_MIN_APART >= 1
    frames = max(CARRY_MIN_SEEN, CARRY_MIN_APART) + 2
    # twins: each update matches one of the two tracks by a detection of its own, never both
    c = CoveredTracks(max_frames=5, score=0.1)
    for k in range(2 * frames):
        c.note(np.array([FRONT + k * STEP, BEHIND + k * STEP]), np.array([1, 2]), np.array([k % 2, (k + 1) % 2]))
    assert len(c.carry(_dets(PAIR + 2 * frames * STEP), (640, 480))) == 1 and c.carried == 0
    for apart in (CARRY_MIN_APART - 1, CARRY_MIN_APART):
        c = CoveredTracks(max_frames=5, score=0.1)
        for k in range(frames):  # the one behind seen every update, the one in front apart from it `apart` times
            c.note(np.array([FRONT + k * STEP, BEHIND + k * STEP]), np.array([1, 2]),
                   np.array([0 if k >= frames - apart else 1, 0]))
        out = c.carry(_dets(PAIR + frames * STEP), (640, 480))
        assert len(out) == 1 + (apart >= CARRY_MIN_APART), apart
    # min_apart 0: any covered track is carried, as before the rule
    c = CoveredTracks(max_frames=5, score=0.1, min_apart=0)
    for k in range(2 * frames):
        c.note(np.array([FRONT + k * STEP, BEHIND + k * STEP]), np.array([1, 2]), np.array([k % 2, (k + 1) % 2]))
    assert len(c.carry(_dets(PAIR + 2 * frames * STEP), (640, 480))) == 2


def test_a_carried_detection_extends_the_track_behind_and_never_starts_one():
    tracker = CameraTracker(**{k: v for k, v in MOVENET_TRACKER_PARAMS.items() if k != "max_age_s"},
                            max_age_frames=20)
    c = CoveredTracks(max_frames=3, score=0.1)
    ids_seen = []
    for f in range(12):
        ids, misses = tracker.live_ids()
        c.note(tracker.live_boxes(), ids, misses)
        if f < 5:
            dets = _dets(FRONT + f * STEP, BEHIND + f * STEP)
        else:  # one box for the two of them
            dets = c.carry(_dets(PAIR + f * STEP), (640, 480))
        out = tracker.update(dets, f)
        ids_seen.append(sorted(out.track_id.tolist()))
    assert ids_seen[:5] == [[1, 2]] * 5
    assert ids_seen[5:8] == [[1, 2]] * 3  # carried three frames under its own id
    assert ids_seen[8:] == [[1]] * 4
    # a carried detection scored under the tracker's high threshold cannot start a track of its own
    fresh = CameraTracker(**{k: v for k, v in MOVENET_TRACKER_PARAMS.items() if k != "max_age_s"})
    assert len(fresh.update(_dets(BEHIND, score=0.1), 0)) == 0 and fresh.track_count == 0


def test_the_tiled_detector_carries_only_with_carry_frames_and_track_ids():
    from .test_tiling import BrightBlobs, _frame_with

    front, behind = np.array([100.0, 150, 120, 210]), np.array([112.0, 160, 128, 210])
    frame = _frame_with((100, 150, 120, 210), (112, 160, 128, 210))  # the fake model draws one box for the two
    for carry, with_ids in ((0, True), (3, False), (3, True)):
        det = TiledDetector(BrightBlobs(), DetectorSettings(regions=RegionSettings(carry_frames=carry, track_looks=0)))
        assert len(det.detect(frame)) == 1
        for _ in range(CARRY_MIN_SEEN):  # both tracked apart for a while
            det.note_tracks(np.array([front, behind]), *((np.array([1, 2]), np.array([0, 0])) if with_ids else ()))
        out = det.detect(frame)
        carried = bool((np.abs(out.xyxy - behind).max(axis=1) <= 1e-9).any())
        assert carried == (carry > 0 and with_ids), (carry, with_ids)
        assert len(out) == 1 + carried and det.counters.get("carried", 0) == int(carried)
