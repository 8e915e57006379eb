"""Scale-aware tiled detection: merging across tile borders, the auto plan from calibration and from frame size,
and the calibration fitted to (or refusing) a source of another frame size."""

from __future__ import annotations

import numpy as np
import pytest

from storesense.config import DetectorSettings, example_store_path, load_store_config
from storesense.edge.camera.detections import Detections
from storesense.edge.camera.detector import Detector
from storesense.edge.camera.tiling import TiledDetector, make_plan, person_heights, plan_for_camera
from storesense.errors import ConfigError

#: Person heights in model pixels the shipped MoveNet still finds most people at (75 % recall measured at
#: 60-80 px on the rescaled MOT proxy); the plan aims at DetectorSettings.person_px[0] (80) when its budget allows.
MODEL_FLOOR_PX = 64


class BrightBlobs(Detector):
    """Finds white rectangles: one box per connected bright column run, clipped to what it is shown."""

    name = "blobs"
    input_size = (192, 256)
    dynamic_input = True

    def detect_at(self, frame: np.ndarray, input_size, score_threshold=None) -> Detections:
        bright = frame[:, :, 0] > 200
        cols = np.flatnonzero(bright.any(axis=0))
        if not len(cols):
            return Detections.empty(with_keypoints=True)
        runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        boxes = []
        for run in runs:
            rows = np.flatnonzero(bright[:, run].any(axis=1))
            boxes.append([run[0], rows[0], run[-1] + 1, rows[-1] + 1])
        kp = np.zeros((len(boxes), 17, 3))
        kp[:, :, 0] = [[(b[0] + b[2]) / 2] * 17 for b in boxes]
        kp[:, :, 1] = [[(b[1] + b[3]) / 2] * 17 for b in boxes]
        kp[:, :, 2] = 0.9
        return Detections(np.asarray(boxes, float), np.full(len(boxes), 0.8), kp)

    def detect(self, frame: np.ndarray) -> Detections:
        return self.detect_at(frame, self.input_size)


def _frame_with(*boxes) -> np.ndarray:
    frame = np.zeros((400, 600, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        frame[y1:y2, x1:x2] = 255
    return frame


def test_a_person_straddling_a_tile_border_is_one_detection():
    # two tiles overlapping at x 260..340; the person (x 300..330) is cut by tile 0's right edge (x 320)
    settings = DetectorSettings(tiling="explicit", tiles=[(0, 0, 320, 400), (260, 0, 340, 400)])
    det = TiledDetector(BrightBlobs(), settings)
    dets = det.detect(_frame_with((300, 100, 330, 220)))
    assert len(dets) == 1
    np.testing.assert_allclose(dets.xyxy[0], [300, 100, 330, 220], atol=1)
    # keypoints travel with their box, in frame pixels
    np.testing.assert_allclose(dets.keypoints[0, 0, :2], [315, 160], atol=1)
    # two people side by side, one on the border, stay two
    dets = det.detect(_frame_with((300, 100, 330, 220), (400, 100, 430, 220)))
    assert len(dets) == 2
    np.testing.assert_allclose(sorted(dets.xyxy[:, 0]), [300, 400], atol=1)


@pytest.fixture(scope="module")
def store():
    return load_store_config(example_store_path())


def _people_of(camera, outline, step=0.25):
    """(foot u, v, head u, v) of a 1.7 m person at floor points inside the outline whose box is in the image."""
    xs, ys = np.meshgrid(np.arange(0, 13, step), np.arange(0, 9, step))
    pts = np.c_[xs.ravel(), ys.ravel()]
    import cv2

    poly = np.asarray(outline, np.float32).reshape(-1, 1, 2)
    pts = pts[[cv2.pointPolygonTest(poly, (float(x), float(y)), False) > 0 for x, y in pts]]
    feet = camera.floor_to_image(np.c_[pts, np.zeros(len(pts))])
    heads = camera.floor_to_image(np.c_[pts, np.full(len(pts), 1.7)])
    w, h = camera.resolution
    ok = np.isfinite(feet).all(1) & np.isfinite(heads).all(1)
    ok &= (feet[:, 0] >= 0) & (feet[:, 0] < w) & (feet[:, 1] >= 0) & (feet[:, 1] < h)
    ok &= (heads[:, 1] >= 0) & (heads[:, 0] >= 0) & (heads[:, 0] < w)
    return feet[ok], heads[ok]


def _best_scale(plan, foot, head):
    """The largest model-pixel height any pass sees this person at whole, 0 when none does."""
    height = float(np.linalg.norm(foot - head))
    x1, x2 = min(foot[0], head[0]) - 0.2 * height, max(foot[0], head[0]) + 0.2 * height
    y1, y2 = head[1], foot[1]
    w, h = plan.frame_size
    best = 0.0
    for p in plan.passes:
        inside = (max(x1, 0) >= p.x - 1 and min(x2, w) <= p.x + p.w + 1 and max(y1, 0) >= p.y - 1
                  and min(y2, h) <= p.y + p.h + 1)
        if inside:
            best = max(best, height * p.scale)
    return best


@pytest.mark.parametrize("budget", [None, 3_000_000])
def test_auto_plan_of_a_calibrated_camera_covers_every_visible_floor_point(store, budget):
    settings = DetectorSettings() if budget is None else DetectorSettings(max_input_px=budget)
    for cam in store.cameras:
        plan = plan_for_camera(cam, tuple(cam.resolution), settings, floor_outline=store.floor.outline)
        assert plan.source == "calibration"
        assert plan.cost_px <= settings.max_input_px * 1.05
        feet, heads = _people_of(cam, store.floor.outline)
        assert len(feet) > 50, cam.id
        seen = np.array([_best_scale(plan, f, hd) for f, hd in zip(feet, heads)])
        floor = settings.person_px[0] if not plan.missed else MODEL_FLOOR_PX
        # a person between two height samples (8 px apart) or at a tile's side may fall a little short;
        # without the plan's tiles or its larger full frame they would be seen at half the size
        assert (seen >= 0.9 * floor).all(), (cam.id, plan.describe(), seen.min())


def test_calibrated_heights_grow_towards_the_camera(store):
    cam = store.cameras[0]
    s = person_heights(cam, tuple(cam.resolution), store.floor.outline)
    top, bottom = s[s[:, 1] < 160], s[s[:, 1] > 320]
    assert bottom[:, 2].max() > 1.5 * top[:, 2].max()


def test_an_uncalibrated_camera_still_gets_a_plan_within_its_budget():
    for size in ((768, 576), (1280, 720)):
        plan = plan_for_camera(None, size, DetectorSettings())
        assert plan.source == "frame size"
        tiles = [p for p in plan.passes if not p.full_frame]
        assert tiles and plan.passes[0].full_frame
        assert plan.cost_px <= DetectorSettings().max_input_px * 1.05
        # the tiles together cover the whole frame, each at a larger scale than the full-frame pass
        covered = np.zeros(size[::-1], bool)
        for p in tiles:
            covered[p.y:p.y + p.h, p.x:p.x + p.w] = True
            assert p.scale > plan.passes[0].scale * 1.2
        assert covered.all()
        assert "pass 1: tile" in plan.describe()
    # a larger budget buys a larger scale
    small = min(p.scale for p in make_plan((768, 576), DetectorSettings(max_input_px=300_000)).passes[1:])
    large = min(p.scale for p in make_plan((768, 576), DetectorSettings()).passes[1:])
    assert large > 1.4 * small


def test_tiling_off_is_one_pass():
    plan = make_plan((768, 576), DetectorSettings(tiling="off"))
    assert len(plan.passes) == 1 and plan.passes[0].full_frame


def test_calibration_is_scaled_to_a_source_of_the_same_aspect_and_refused_otherwise(store):
    cam = next(c for c in store.cameras if c.shelf_faces)
    big = cam.scaled_to(1280, 960)
    foot = np.array([[4.0, 3.0, 0.0]])
    np.testing.assert_allclose(big.floor_to_image(foot), cam.floor_to_image(foot) * 2, atol=1e-6)
    np.testing.assert_allclose(big.shelf_faces[0].polygon, np.asarray(cam.shelf_faces[0].polygon) * 2)
    with pytest.raises(ConfigError, match=r"768x432 frames .* resolution 640x480"):
        cam.scaled_to(768, 432)


def test_debug_drawing_shows_the_tiles():
    from storesense.edge.camera.drawing import draw_debug

    plan = make_plan((768, 576), DetectorSettings())
    image = draw_debug(np.zeros((576, 768, 3), np.uint8), Detections.empty(), plan=plan)
    for p in plan.passes[1:]:
        assert image[p.y + p.h // 2, p.x].any() and image[p.y, p.x + p.w // 2].any()  # left and top edges drawn
    assert not image[560:570, 20:30].any()  # outlines only: the frame's inside stays untouched


class ThresholdRecorder(BrightBlobs):
    """BrightBlobs that records the score threshold each pass was run with."""

    def __init__(self):
        self.calls: list[tuple[bool, float | None]] = []

    def detect_at(self, frame, input_size, score_threshold=None):
        self.calls.append((frame.shape[:2] == (400, 600), score_threshold))
        return super().detect_at(frame, input_size, score_threshold)


def test_every_pass_of_a_tiled_plan_takes_the_tile_threshold_and_a_single_pass_its_own():
    tiled = ThresholdRecorder()
    settings = DetectorSettings(tiling="explicit", tiles=[(0, 0, 320, 400)], tile_score_threshold=0.07)
    TiledDetector(tiled, settings).detect(_frame_with((300, 100, 330, 220)))
    # the full-frame pass (the whole 600x400 frame) and the tile: both at tile_score_threshold
    assert sorted(tiled.calls) == [(False, 0.07), (True, 0.07)]
    single = ThresholdRecorder()
    TiledDetector(single, DetectorSettings(tiling="explicit", tiles=[], tile_score_threshold=0.07)).detect(
        _frame_with((300, 100, 330, 220)))
    assert single.calls == [(True, None)]  # None: the detector's own score_threshold


def test_a_box_much_narrower_than_a_person_is_dropped():
    from storesense.edge.camera.tiling import MIN_BOX_ASPECT

    # a sliver just under MIN_BOX_ASPECT of its height wide, a side-on person at 0.25 and one just over the limit
    height = 100
    sliver_w = int(MIN_BOX_ASPECT * height) - 1
    edge_w = int(MIN_BOX_ASPECT * height) + 1
    boxes = [(50, 100, 50 + sliver_w, 100 + height), (200, 100, 225, 100 + height), (400, 100, 400 + edge_w, 100 + height)]
    settings = DetectorSettings(tiling="explicit", tiles=[(0, 0, 600, 400)])
    det = TiledDetector(BrightBlobs(), settings)
    out = det.detect(_frame_with(*boxes))
    np.testing.assert_allclose(np.sort(out.xyxy[:, 0]), [200, 400])
    det.min_aspect = 0  # every box kept
    assert len(det.detect(_frame_with(*boxes))) == 3
