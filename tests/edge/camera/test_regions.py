"""Gated detection (detector.regions): between full scans the model runs only on tiles over motion, recently
detected people and live tracks, at a larger scale; full scans find the people who never moved."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from storesense.config import DetectorSettings, RegionSettings, example_store_path, load_store_config, parse_store_config
from storesense.edge.camera.detections import Detections
from storesense.edge.camera.tiling import TiledDetector, plan_for_camera
from storesense.errors import ConfigError

from .test_tiling import BrightBlobs, _best_scale, _people_of

#: The fake model finds a bright blob only at this many model pixels tall or more (a real model misses small people).
MIN_MODEL_PX = 40


class SizeAwareBlobs(BrightBlobs):
    """BrightBlobs that misses blobs shown under MIN_MODEL_PX model pixels tall, and counts its passes."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def detect_at(self, frame, input_size, score_threshold=None) -> Detections:
        self.calls.append(tuple(input_size))
        dets = super().detect_at(frame, input_size, score_threshold)
        scale = min(input_size[0] / frame.shape[0], input_size[1] / frame.shape[1])
        return dets[(dets.xyxy[:, 3] - dets.xyxy[:, 1]) * scale >= MIN_MODEL_PX] if len(dets) else dets


def _detector(**regions) -> tuple[TiledDetector, SizeAwareBlobs]:
    base = SizeAwareBlobs()
    return TiledDetector(base, DetectorSettings(regions=RegionSettings(enabled=True, **regions))), base


def _scene(people, value=255) -> np.ndarray:
    """A 600x400 grey scene with 16x50 px people (x, y top-left) of brightness ``value``."""
    frame = np.full((400, 600, 3), 60, np.uint8)
    for x, y in people:
        frame[y:y + 50, x:x + 16] = value
    return frame


def _found(dets: Detections, x: int, y: int) -> bool:
    return bool(len(dets)) and bool((np.abs(dets.xyxy[:, :2] - [x, y]).max(axis=1) <= 2).any())


def test_the_full_frame_pass_alone_misses_the_small_person():
    # the premise of the tests below: only a tile at a larger scale than the full-frame pass sees them
    det, _ = _detector()
    det.plan_for((600, 400))
    full = next(p for p in det.plan.passes if p.full_frame)
    assert 50 * full.scale < MIN_MODEL_PX


@pytest.mark.parametrize("memory", ["held detections", "live tracks", "none"])
def test_a_person_who_stops_keeps_being_detected(memory):
    det, _ = _detector(full_scan_frames=1000, hold_frames=0 if memory != "held detections" else 10)
    x = 100
    seen = []
    for i in range(100):  # walks for 10 frames, then stands still for 90 (the background takes them in)
        x = 100 + 6 * min(i, 10)
        dets = det.detect(_scene([(x, 200)]))
        seen.append(_found(dets, x, 200))
        if memory == "live tracks":
            det.note_tracks(dets.xyxy)
    assert det.counters["full_scans"] == 1 and det.counters["gated_frames"] == 99
    if memory == "none":  # without held detections or tracks the person is lost once the background takes them in
        assert not all(seen[1:])
    else:
        assert all(seen[1:]), np.flatnonzero(~np.array(seen))


def test_a_person_appearing_without_motion_is_found_by_the_next_full_scan():
    # motion cannot fire (threshold above the person's contrast): only the periodic full scan can find them
    det, _ = _detector(full_scan_frames=5, motion_threshold=250)
    seen = [_found(det.detect(_scene([(300, 120)] if i >= 2 else [], value=210)), 300, 120) for i in range(8)]
    assert seen == [False, False, False, False, False, True, True, True]


def test_a_static_empty_scene_runs_only_the_full_frame_pass_between_full_scans():
    det, base = _detector(full_scan_frames=10)
    per_frame = []
    for i in range(20):
        n = len(base.calls)
        det.detect(_scene([]))
        per_frame.append(len(base.calls) - n)
    full_scan = len(det.plan_for((600, 400)).passes)
    assert full_scan > 2
    assert per_frame == [full_scan] + [1] * 9 + [full_scan] + [1] * 9
    assert det.counters == {"full_scans": 2, "gated_frames": 18, "over_budget": 0, "region_passes": 0, "carried": 0}


def test_a_camera_move_is_a_full_scan_and_a_light_change_is_not():
    det, _ = _detector(full_scan_frames=1000)
    texture = np.random.default_rng(0).integers(0, 200, (40, 60, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1)
    det.detect(texture)
    det.detect(texture)
    det.detect(texture + 40)  # the light goes up evenly: not motion, no full scan
    assert det.counters == {"full_scans": 1, "gated_frames": 2, "over_budget": 0, "region_passes": 0, "carried": 0}
    det.detect(np.roll(texture, 45, axis=1))  # the camera turned: most of the frame changes
    assert det.counters["full_scans"] == 2


def test_moving_people_across_region_tiles_are_one_detection_each():
    det, _ = _detector(full_scan_frames=1000)
    for i in range(6):
        people = [(40 + 70 * k + 4 * i, 180) for k in range(7)]
        dets = det.detect(_scene(people))
    assert det.counters["gated_frames"] == 5
    assert len(det.plan.passes) > 2  # the region needs several tiles
    assert len(dets) == 7, dets.xyxy
    assert all(_found(dets, x, y) for x, y in people)
    assert det.plan.cost_px <= det.settings.max_input_px


def test_the_example_stores_cameras_are_covered_at_full_scan():
    store = load_store_config(example_store_path())
    settings = DetectorSettings(regions=RegionSettings(enabled=True))
    for cam in store.cameras:
        w, h = cam.resolution
        det = TiledDetector(SizeAwareBlobs(), settings, cam, floor_outline=store.floor.outline)
        det.detect(np.zeros((h, w, 3), np.uint8))
        static = plan_for_camera(cam, (w, h), settings, floor_outline=store.floor.outline)
        assert det.plan.passes == static.passes
        # a plan of one pass (a bigger full frame instead of tiles) has nothing to gate
        assert det.counters["full_scans"] == (len(static.passes) > 1)
        feet, heads = _people_of(cam, store.floor.outline)
        seen = np.array([_best_scale(det.plan, f, hd) for f, hd in zip(feet, heads)])
        assert (seen >= 0.9 * (settings.person_px[0] if not static.missed else 64)).all()
        assert ("gating:" in det.plan.describe()) == (len(static.passes) > 1)


def test_bad_region_settings_are_one_line():
    data = yaml.safe_load(example_store_path().read_text())
    data["cameras"][0]["detector"] = {"regions": {"enabled": True, "full_scan_frames": 0}}
    with pytest.raises(ConfigError) as err:
        parse_store_config(data, "store.yaml")
    assert "\n" not in str(err.value) and "detector.regions.full_scan_frames" in str(err.value)
    data["cameras"][0]["detector"] = {"regions": {"enable": True}}
    with pytest.raises(ConfigError, match="regions.enable: Extra inputs are not permitted"):
        parse_store_config(data, "store.yaml")


def test_the_debug_drawing_shows_the_active_regions():
    from storesense.edge.camera.drawing import draw_debug

    det, _ = _detector(full_scan_frames=1000)
    for i in range(3):
        det.detect(_scene([(100 + 6 * i, 200)]))
    assert det.regions is not None and len(det.regions) == 1
    image = draw_debug(_scene([]), Detections.empty(with_keypoints=True), plan=det.plan, regions=det.regions)
    yellow = (image[:, :, 0] == 0) & (image[:, :, 1] == 220) & (image[:, :, 2] == 255)
    x1, y1, x2, y2 = det.regions[0].astype(int)
    assert yellow[y1, x1:x2].all() and not yellow[y1 + 5:y2 - 5, x1 + 5:x2 - 5].any()


class LargestOnly(BrightBlobs):
    """A model that sees one person per pass, the one it sees most of (as MoveNet often draws one box for two
    people when one walks just behind the other)."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def detect_at(self, frame, input_size, score_threshold=None) -> Detections:
        self.calls.append(tuple(input_size))
        dets = super().detect_at(frame, input_size, score_threshold)
        if len(dets) < 2:
            return dets
        area = (dets.xyxy[:, 2] - dets.xyxy[:, 0]) * (dets.xyxy[:, 3] - dets.xyxy[:, 1])
        return dets[int(np.argmax(area))]


#: The person in front (20x60 px) and the one just behind them (16x50 px, 6 px to the right).
FRONT, BEHIND = np.array([100.0, 150, 120, 210]), np.array([126.0, 160, 142, 210])


def _pair() -> np.ndarray:
    frame = np.full((400, 600, 3), 60, np.uint8)
    for x1, y1, x2, y2 in (FRONT, BEHIND):
        frame[int(y1):int(y2), int(x1):int(x2)] = 255
    return frame


def _looks(tracks, spare_px=10 ** 6, **regions):
    from storesense.edge.camera.tiling import track_looks

    base = LargestOnly()
    frame = _pair()
    merged = base.detect_at(frame, (400, 600))
    assert len(merged) == 1 and np.allclose(merged.xyxy[0], FRONT)  # the premise: the pass sees the front one only
    counters = {}
    out = track_looks(base, frame, merged, np.asarray(tracks, float), RegionSettings(**regions), spare_px, 0.1,
                      counters)
    return out, counters


def test_a_tracked_person_behind_another_is_found_by_a_look_of_their_own():
    out, counters = _looks([FRONT, BEHIND], track_looks=4)
    assert counters == {"track_looks": 1, "track_look_finds": 1}  # the front one is matched: no look for them
    assert len(out) == 2 and np.abs(out.xyxy[1] - BEHIND).max() <= 1
    assert out.keypoints is not None and out.keypoints.shape == (2, 17, 3)


@pytest.mark.parametrize("why", ["off", "no pixels left", "already tall enough"])
def test_no_look_when_off_over_budget_or_for_a_tall_track(why):
    kwargs = {"off": dict(track_looks=0), "no pixels left": dict(track_looks=4, spare_px=1000),
              "already tall enough": dict(track_looks=4, track_look_px=48)}[why]
    out, counters = _looks([FRONT, BEHIND], **kwargs)
    assert len(out) == 1 and counters["track_looks"] == 0


def test_a_look_keeps_only_people_scored_at_least_look_min_score(monkeypatch):
    from storesense.edge.camera import tiling

    out, counters = _looks([FRONT, BEHIND], track_looks=4)
    assert counters["track_look_finds"] == 1  # LargestOnly scores 0.8
    monkeypatch.setattr(tiling, "LOOK_MIN_SCORE", 0.85)
    monkeypatch.setattr(LargestOnly, "detect_at", _thresholded(LargestOnly.detect_at))
    out, counters = _looks([FRONT, BEHIND], track_looks=4)
    assert counters == {"track_looks": 1, "track_look_finds": 0} and len(out) == 1


def _thresholded(detect_at):
    def run(self, frame, input_size, score_threshold=None):
        dets = detect_at(self, frame, input_size, score_threshold)
        return dets[dets.scores >= (score_threshold or 0.0)] if len(dets) else dets
    return run


def test_a_look_that_sees_the_person_in_front_again_adds_nothing():
    # a stale track over the front person (IoU 0.6 with their detection: not matched, so it gets a look); the look
    # finds the front person, who overlaps the detection already made more than the track
    stale = FRONT + [4, 4, 4, 4]
    out, counters = _looks([stale], track_looks=4)
    assert counters == {"track_looks": 1, "track_look_finds": 0} and len(out) == 1


def test_looks_go_to_the_smallest_tracks_first_and_stop_at_the_limit():
    small = np.array([300.0, 100, 310, 130])  # nobody there: the look finds nothing
    out, counters = _looks([BEHIND, small], track_looks=1)
    assert counters == {"track_looks": 1, "track_look_finds": 0} and len(out) == 1
    out, counters = _looks([BEHIND, small], track_looks=2)
    assert counters == {"track_looks": 2, "track_look_finds": 1} and len(out) == 2


def test_the_gated_detector_looks_at_its_live_tracks():
    for looks in (0, 4):
        base = LargestOnly()
        det = TiledDetector(base, DetectorSettings(regions=RegionSettings(track_looks=looks, full_scan_frames=1000)))
        found = []
        for _ in range(2):  # a full scan, then a gated frame
            det.note_tracks(np.array([FRONT, BEHIND]))
            n = len(base.calls)
            dets = det.detect(_pair())
            found.append(bool(len(dets)) and bool((np.abs(dets.xyxy - BEHIND).max(axis=1) <= 1).any()))
            # never more model pixels in a frame than detector.max_input_px
            assert sum(h * w for h, w in base.calls[n:]) <= det.settings.max_input_px
        assert found == ([False, False] if looks == 0 else [True, True]), (looks, det.counters)
        assert det.counters.get("track_looks", 0) == (0 if looks == 0 else 2)


def test_the_debug_drawing_shows_the_crops_of_the_track_looks():
    from storesense.edge.camera.drawing import draw_debug

    det = TiledDetector(LargestOnly(), DetectorSettings(regions=RegionSettings(track_looks=4, full_scan_frames=1000)))
    for _ in range(2):  # a full scan, then a gated frame that looks at the track behind
        det.note_tracks(np.array([FRONT, BEHIND]))
        det.detect(_pair())
    assert len(det.looks) == 1
    p = det.looks[0]
    assert p.x <= BEHIND[0] and p.y <= BEHIND[1] and p.x + p.w >= BEHIND[2] and p.y + p.h >= BEHIND[3]
    image = draw_debug(_pair(), Detections.empty(with_keypoints=True), plan=det.plan, regions=det.regions,
                       looks=det.looks)
    magenta = (image[:, :, 0] == 255) & (image[:, :, 1] == 0) & (image[:, :, 2] == 255)
    assert magenta[p.y, p.x:p.x + p.w].all() and not magenta[p.y + 3:p.y + p.h - 3, p.x + 3:p.x + p.w - 3].any()
    det.note_tracks(np.zeros((0, 4)))
    det.detect(_pair())  # no live track: no look, and none left over from the last frame
    assert det.looks == []
