"""CameraTracker: ids through occlusion and crossings, the low-confidence stage, birth and death,
the injectable filter (vectorised filter == filterpy filter)."""

from pathlib import Path

import numpy as np
import pytest

from storesense.edge.camera.detections import Detections, box_iou
from storesense.edge.camera.kalman import BoxFilter, ConstantVelocityFilter, FilterpyFilter
from storesense.edge.camera.tracker import CameraTracker

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mot15"


def box(cx, cy, w=40.0, h=100.0):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def frame_of(boxes, scores=None, keypoints=None):
    if not boxes:
        return Detections.empty()
    return Detections(np.array(boxes, dtype=float), np.ones(len(boxes)) if scores is None else scores, keypoints)


def ids_by_person(tracker, frames):
    """Run frames of [(person, box, score)] and return {person: [id per frame seen]}."""
    seen = {}
    for t, people in enumerate(frames, 1):
        dets = frame_of([b for _, b, _ in people], np.array([s for _, _, s in people]))
        out = tracker.update(dets, t)
        for name, b, _ in people:
            hit = np.flatnonzero(np.all(np.isclose(out.xyxy, b), axis=1))
            seen.setdefault(name, []).append(int(out.track_id[hit[0]]) if len(hit) else None)
    return seen


def test_ids_survive_a_short_occlusion():
    frames = []
    for t in range(40):
        a = ("a", box(100 + 6 * t, 200), 0.9)
        b = ("b", box(600, 200 + 2 * t), 0.9)
        frames.append([b] if 15 <= t < 23 else [a, b])  # a hidden for 8 frames while walking on
    seen = ids_by_person(CameraTracker(max_age_frames=30, min_hits=2), frames)
    # a is seen in 32 frames: unconfirmed in the first, then one id before and after the gap
    assert len(seen["a"]) == 32 and seen["a"][0] is None
    assert None not in seen["a"][1:] and len(set(seen["a"][1:])) == 1, seen["a"]
    assert None not in seen["b"][1:] and len(set(seen["b"][1:])) == 1
    assert seen["a"][1] != seen["b"][1]


def test_ids_survive_crossing_tracks_even_when_one_hides_the_other():
    frames = []
    for t in range(50):
        a = ("a", box(100 + 10 * t, 300), 0.95)               # walks right
        b = ("b", box(590 - 10 * t, 310, 44, 110), 0.95)      # walks left, a little lower and bigger
        hidden = 23 <= t <= 26                                 # b behind a while they cross
        frames.append([a] if hidden else [a, b])
    seen = ids_by_person(CameraTracker(), frames)
    a_ids = set(i for i in seen["a"] if i is not None)
    b_ids = set(i for i in seen["b"] if i is not None)
    assert len(a_ids) == 1 and len(b_ids) == 1 and a_ids != b_ids, seen
    # both boxes overlap a lot at the crossing: the association really was ambiguous by IoU alone
    assert box_iou([box(330, 300)], [box(340, 310, 44, 110)])[0, 0] > 0.5


def test_low_confidence_second_stage_keeps_the_track():
    def frames(low_score):
        out = []
        for t in range(30):
            score = low_score if 10 <= t < 16 else 0.9   # partly hidden: the detector is unsure
            out.append([("a", box(100 + 5 * t, 200), score)])
        return out

    with_second = ids_by_person(CameraTracker(high_thresh=0.5, low_thresh=0.1), frames(0.3))["a"]
    assert None not in with_second[2:] and len(set(with_second[2:])) == 1
    # without the second stage (everything below 0.5 dropped) those frames are lost
    without = ids_by_person(CameraTracker(high_thresh=0.5, low_thresh=0.5), frames(0.3))["a"]
    assert without[10:16] == [None] * 6
    # a low-confidence detection alone never starts a track
    alone = ids_by_person(CameraTracker(min_hits=1), [[("x", box(50, 50), 0.3)]] * 5)["x"]
    assert alone == [None] * 5


def test_birth_needs_min_hits_and_death_after_max_age():
    tracker = CameraTracker(min_hits=3, max_age_frames=5)
    d = frame_of([box(100, 100)])
    assert len(tracker.update(d, 1)) == 0 and len(tracker.update(d, 2)) == 0
    first = tracker.update(d, 3)
    assert list(first.track_id) == [1]
    for f in range(4, 10):             # 6 frames without it: more than max_age
        assert len(tracker.update(Detections.empty(), f)) == 0
    assert tracker.track_count == 0
    again = [tracker.update(d, f) for f in range(10, 13)]
    assert list(again[-1].track_id) == [2]
    tracker.reset()
    assert tracker.track_count == 0
    assert [list(tracker.update(d, f).track_id) for f in (1, 2, 3)] == [[], [], [1]]


def test_frame_gaps_predict_several_steps():
    # a person walking 8 px/frame, seen every frame, then only every 5th frame (40 px apart,
    # wider than their 30 px box): the id is kept because the filter predicts 5 steps ahead
    # when the frame number jumps by 5
    frames = list(range(10)) + list(range(10, 60, 5))

    def ids(pass_frame_numbers):
        tracker = CameraTracker(min_hits=2)
        out = [tracker.update(frame_of([box(100 + 8 * t, 200, 30, 80)]), t if pass_frame_numbers else None)
               for t in frames]
        return [i for o in out for i in o.track_id.tolist()]

    with_numbers = ids(True)
    assert len(with_numbers) == len(frames) - 1 and set(with_numbers) == {1}
    assert len(ids(False)) == 10   # one step per update: lost at the first jump


def test_keypoints_and_rows_follow_their_detection():
    tracker = CameraTracker(min_hits=1)
    rng = np.random.default_rng(3)
    for t in range(5):
        boxes = [box(100 + 3 * t, 200), box(400, 200 - 3 * t), box(700, 300)]
        kps = rng.uniform(0, 1, (3, 17, 3))
        order = rng.permutation(3)
        dets = Detections(np.array(boxes)[order], np.array([0.9, 0.8, 0.7])[order], kps[order])
        out = tracker.update(dets, t)
        assert len(out) == 3 and out.keypoints is not None
        for i in range(3):
            j = np.flatnonzero(np.all(dets.xyxy == out.xyxy[i], axis=1))[0]
            assert np.array_equal(out.keypoints[i], dets.keypoints[j])
            assert out.scores[i] == dets.scores[j]
    # each person's id depends on who they are, not on the row order
    assert sorted(out.track_id.tolist()) == [1, 2, 3]


def test_empty_frames_degenerate_boxes_and_bad_parameters():
    tracker = CameraTracker(min_hits=1)
    out = tracker.update(Detections.empty(with_keypoints=True), 1)
    assert len(out) == 0 and out.track_id.dtype == np.int64
    junk = Detections(np.array([[10, 10, 10, 50], [5, 5, 1, 1], [np.nan, 0, 5, 5]]), np.ones(3))
    assert len(tracker.update(junk, 2)) == 0 and tracker.track_count == 0
    with pytest.raises(ValueError):
        CameraTracker(high_thresh=0.2, low_thresh=0.4)
    with pytest.raises(ValueError):
        CameraTracker(match_iou=0)
    with pytest.raises(ValueError):
        CameraTracker(min_hits=0)


class CountingFilter(ConstantVelocityFilter):
    """A filter that records what the tracker asks of it."""

    def __init__(self):
        super().__init__()
        self.calls = {"add": 0, "predict": 0, "update": 0, "boxes": 0, "keep": 0}

    def add(self, boxes):
        self.calls["add"] += 1
        super().add(boxes)

    def predict(self, steps=1):
        self.calls["predict"] += 1
        super().predict(steps)

    def update(self, rows, boxes):
        self.calls["update"] += 1
        super().update(rows, boxes)

    def boxes(self):
        self.calls["boxes"] += 1
        return super().boxes()

    def keep(self, mask):
        self.calls["keep"] += 1
        super().keep(mask)


class StandStillFilter:
    """No motion model at all: a track is where it was last seen (a filter written from scratch)."""

    def __init__(self):
        self.b = np.zeros((0, 4))

    def __len__(self):
        return len(self.b)

    def add(self, boxes):
        self.b = np.concatenate([self.b, np.asarray(boxes, float).reshape(-1, 4)])

    def predict(self, steps=1):
        pass

    def update(self, rows, boxes):
        self.b[rows] = boxes

    def boxes(self):
        return self.b.copy()

    def keep(self, mask):
        self.b = self.b[mask]


def test_the_filter_factory_is_used():
    made = []

    def factory():
        made.append(CountingFilter())
        return made[-1]

    tracker = CameraTracker(filter_factory=factory, max_age_frames=2)
    for t in range(10):
        tracker.update(frame_of([box(100 + 4 * t, 100)] if t < 6 else []), t)
    assert len(made) == 1 and isinstance(made[0], BoxFilter)
    assert all(n > 0 for n in made[0].calls.values()), made[0].calls
    tracker.reset()
    assert len(made) == 2

    # a person speeding up to 25 px/frame with a 30 px wide box: only a motion model keeps up
    def walk(tracker):
        x = np.cumsum(np.minimum(np.arange(40), 25)) + 100.0
        ids = [tracker.update(frame_of([box(x[t], 100, 30, 80)]), t).track_id.tolist() for t in range(40)]
        return [i for f in ids for i in f]

    moving = walk(CameraTracker(filter_factory=ConstantVelocityFilter, match_iou=0.3))
    assert len(moving) == 39 and set(moving) == {1}
    assert len(walk(CameraTracker(filter_factory=StandStillFilter, match_iou=0.3))) < 25


def test_vectorised_filter_equals_filterpy():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (6, 2))
    boxes = np.c_[xy, xy + np.c_[rng.uniform(30, 60, 6), rng.uniform(80, 160, 6)]]
    fast, ref = ConstantVelocityFilter(), FilterpyFilter()
    fast.add(boxes)
    ref.add(boxes)
    for t in range(40):
        steps = 2 if t % 3 == 0 else 1
        fast.predict(steps)
        ref.predict(steps)
        np.testing.assert_allclose(fast.boxes(), ref.boxes(), rtol=1e-9, atol=1e-9)
        rows = np.flatnonzero(rng.random(len(fast)) < 0.7)
        z = fast.boxes()[rows] + rng.normal(0, 2, (len(rows), 4))
        fast.update(rows, z)
        ref.update(rows, z)
        if t == 10:
            keep = np.array([1, 0, 1, 1, 1, 0], bool)
            fast.keep(keep)
            ref.keep(keep)
            fast.add(boxes[:2])
            ref.add(boxes[:2])
    assert len(fast) == len(ref) == 6
    np.testing.assert_allclose(fast.x, np.stack([kf.x.ravel() for kf in ref.filters]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast.covariance(), np.stack([kf.P for kf in ref.filters]), rtol=1e-9, atol=1e-9)


def test_tracker_gives_the_same_tracks_with_either_filter():
    seq = DATA / "TUD-Campus"
    if not seq.is_dir():
        pytest.skip(f"MOT15 data not found at {seq}")
    from storesense.datasets.loaders.mot import detections_per_frame, read_sequence

    s = read_sequence(seq)
    frames = detections_per_frame(s.public_detections(), s.length)
    fast, ref = CameraTracker(ConstantVelocityFilter), CameraTracker(FilterpyFilter)
    total = 0
    for t, dets in enumerate(frames, 1):
        a, b = fast.update(dets, t), ref.update(dets, t)
        assert np.array_equal(a.track_id, b.track_id) and np.array_equal(a.xyxy, b.xyxy)
        total += len(a)
    assert total > 200


def test_live_ids_are_row_aligned_with_live_boxes_and_count_frames_since_the_last_match():
    t = CameraTracker(min_hits=2, max_age_frames=5)
    a, b = [10.0, 10, 30, 60], [100.0, 10, 120, 60]
    two = Detections(np.array([a, b]), [0.9, 0.9])
    t.update(two, 0)
    assert t.live_boxes().shape == (0, 4) and t.live_ids()[0].size == 0  # tentative tracks are not live
    t.update(two, 1)
    t.update(Detections(np.array([b]), [0.9]), 2)  # a missed once
    t.update(Detections(np.array([b]), [0.9]), 3)  # a missed twice
    ids, misses = t.live_ids()
    boxes = t.live_boxes()
    assert len(ids) == len(misses) == len(boxes) == 2
    assert dict(zip(ids.tolist(), misses.tolist())) == {1: 2, 2: 0}
    np.testing.assert_allclose(boxes[ids.tolist().index(2)], b, atol=1e-6)
