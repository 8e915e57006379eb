"""Floor projection of foot points through the example store's camera calibrations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from storesense.config import Camera, example_store_path, load_store_config
from storesense.edge.camera.detections import Detections
from storesense.edge.camera.projection import FloorProjector


@pytest.fixture(scope="module")
def store():
    return load_store_config(example_store_path())


def _floor_grid(cam: Camera) -> np.ndarray:
    """Floor points of the store that the camera sees inside its image."""
    xs, ys = np.meshgrid(np.linspace(0.5, 11.5, 12), np.linspace(0.5, 7.5, 8))
    pts = np.c_[xs.ravel(), ys.ravel(), np.zeros(xs.size)]
    uv = cam.floor_to_image(pts)
    w, h = cam.resolution
    ok = np.isfinite(uv).all(axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    return pts[ok]


def test_round_trip_through_the_example_store_cameras(store):
    assert len(store.cameras) >= 2
    for cam in store.cameras:
        pts = _floor_grid(cam)
        assert len(pts) >= 6, cam.id
        proj = FloorProjector(cam)
        xy, valid = proj.image_to_floor(cam.floor_to_image(pts))
        assert valid.all(), cam.id
        np.testing.assert_allclose(xy, pts[:, :2], atol=1e-6, err_msg=cam.id)


def _near_and_far(cam: Camera) -> np.ndarray:
    """The visible floor grid points nearest to and farthest from the camera (2×3)."""
    pts = _floor_grid(cam)
    R, t = cam.rotation_translation()
    d = np.linalg.norm(pts[:, :2] - (-R.T @ t)[:2], axis=1)
    return pts[[d.argmin(), d.argmax()]]


def test_detections_are_projected_from_their_foot_point(store):
    cam = store.cameras[0]
    floor = _near_and_far(cam)
    feet = cam.floor_to_image(floor)
    boxes = np.c_[feet[:, 0] - 20, feet[:, 1] - 120, feet[:, 0] + 20, feet[:, 1]]
    points = FloorProjector(cam).project(Detections(boxes, [0.9, 0.9]))
    np.testing.assert_allclose([(p.x, p.y) for p in points], floor[:, :2], atol=1e-6)
    for p in points:
        cov = np.asarray(p.cov)
        assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)


def test_covariance_grows_with_distance_and_box_uncertainty(store):
    cam = store.cameras[0]
    proj = FloorProjector(cam)
    near, far = cam.floor_to_image(_near_and_far(cam))
    boxes = np.array([[near[0] - 20, near[1] - 100, near[0] + 20, near[1]],
                      [far[0] - 20, far[1] - 100, far[0] + 20, far[1]]])
    p_near, p_far = proj.project(Detections(boxes, [0.9, 0.9]))
    assert np.trace(p_far.cov) > 2 * np.trace(p_near.cov)
    # a less certain detection (lower score) or a bigger box at the same place: a larger covariance
    unsure, = proj.project(Detections(boxes[:1], [0.3]))
    big_box = boxes[:1] + [[-30, -100, 30, 0]]
    big, = proj.project(Detections(big_box, [0.9]))
    assert np.trace(unsure.cov) > np.trace(p_near.cov) and np.trace(big.cov) > np.trace(p_near.cov)
    # ankles seen with confidence pin the foot point better than the box bottom
    kp = np.zeros((1, 17, 3))
    kp[0, 15:17, :2] = near
    kp[0, 15:17, 2] = 0.9
    ankles, = proj.project(Detections(boxes[:1], [0.9], kp))
    assert np.trace(ankles.cov) < np.trace(p_near.cov)


def test_points_that_do_not_land_on_the_floor_get_none():
    # a camera looking out almost level: the upper part of its image sees walls and sky, not floor
    cam = Camera(id="low", source="0", resolution=(640, 480),
                 intrinsics={"fx": 420, "fy": 420, "cx": 320, "cy": 240},
                 mount={"position": (0.0, 0.0, 3.0), "look_at": (10.0, 0.0, 2.0)})
    proj = FloorProjector(cam, max_range_m=30.0)
    horizon_row = cam.floor_to_image(np.array([[1e6, 0.0, 0.0]]))[0, 1]
    assert 0 < horizon_row < 480
    rows = np.array([[320.0, horizon_row - 40], [320.0, horizon_row + 2], [320.0, 470.0]])
    xy, valid = proj.image_to_floor(rows)
    assert valid.tolist() == [False, False, True]  # above the horizon; beyond 30 m; on the floor
    dets = Detections(np.array([[300, rows[0, 1] - 50, 340, rows[0, 1]], [300, 300, 340, 470]]), [0.9, 0.9])
    above, floor = proj.project(dets)
    assert above is None and floor is not None and floor.x > 0


def test_lens_distortion_is_removed_before_projection(store):
    base = store.cameras[0]
    dist = [-0.28, 0.09, 0.001, -0.0005, 0.0]
    cam = base.model_copy(update={"intrinsics": base.intrinsics.model_copy(update={"dist": dist})})
    pts = _floor_grid(base)
    R, t = cam.rotation_translation()
    rvec, _ = cv2.Rodrigues(R)
    uv, _ = cv2.projectPoints(pts, rvec, t, cam.intrinsics.matrix(), np.asarray(dist))
    xy, valid = FloorProjector(cam).image_to_floor(uv.reshape(-1, 2))
    assert valid.all()
    np.testing.assert_allclose(xy, pts[:, :2], atol=2e-3)
    # ignoring the distortion would be wrong by far more
    naive, _ = FloorProjector(base).image_to_floor(uv.reshape(-1, 2))
    assert np.abs(naive - pts[:, :2]).max() > 0.05


def test_homography_only_camera(store):
    base = store.cameras[1]
    H = base.image_to_floor_homography()
    cam = Camera(id="h", source="0", resolution=(640, 480), homography=H.tolist())
    pts = _floor_grid(base)
    proj = FloorProjector(cam)
    xy, valid = proj.image_to_floor(base.floor_to_image(pts))
    assert valid.all() and proj.position is None
    np.testing.assert_allclose(xy, pts[:, :2], atol=1e-6)
    # the Jacobian matches finite differences of the mapping
    uv = base.floor_to_image(pts[:1])
    J = proj.jacobian(uv)[0]
    eps = 1e-3
    dx = (proj.image_to_floor(uv + [eps, 0])[0] - proj.image_to_floor(uv - [eps, 0])[0]) / (2 * eps)
    dy = (proj.image_to_floor(uv + [0, eps])[0] - proj.image_to_floor(uv - [0, eps])[0]) / (2 * eps)
    np.testing.assert_allclose(J, np.c_[dx[0], dy[0]], rtol=1e-5, atol=1e-9)
