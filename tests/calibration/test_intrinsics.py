"""Intrinsics calibration: OpenCV's published result reproduced, ChArUco on rendered views, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from storesense.calibration.charuco import CharucoPattern
from storesense.calibration.chessboard import Chessboard
from storesense.calibration.intrinsics import CalibrationFlags, IntrinsicsResult, calibrate_intrinsics
from storesense.errors import StoresenseError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LEFT = DATA / "calib" / "opencv-left"

# OpenCV's samples/data/left_intrinsics.yml (flags: 2 = CALIB_FIX_ASPECT_RATIO), from its calibration sample.
OPENCV_LEFT = {"fx": 535.91573396163199, "fy": 535.91573396163199, "cx": 342.28315473308373,
               "cy": 235.57082909788173, "rms": 0.39259098975581364}
OPENCV_LEFT_VIEW_ERRORS = [0.192965463, 1.18204820, 0.173180386, 0.193417311, 0.159574091, 0.179683909,
                           0.230989486, 0.241952404, 0.296267658, 0.167184874, 0.202002615, 0.381039530,
                           0.174401343]

needs_left = pytest.mark.skipif(not LEFT.is_dir(), reason=f"OpenCV left*.jpg calibration images not found at {LEFT}")


@pytest.fixture(scope="module")
def left_result() -> IntrinsicsResult:
    if not LEFT.is_dir():
        pytest.skip(f"OpenCV left*.jpg calibration images not found at {LEFT}")
    return calibrate_intrinsics(LEFT, Chessboard(9, 6, 0.025), CalibrationFlags(fix_aspect=True))


@needs_left
def test_reproduces_opencv_left_intrinsics_within_0_1_percent(left_result):
    K = left_result.matrix()
    measured = {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "rms": left_result.rms}
    for key, expected in OPENCV_LEFT.items():
        assert measured[key] == pytest.approx(expected, rel=1e-3), key
    assert K[0, 0] == K[1, 1]  # fixed aspect ratio
    assert left_result.rejected == []
    assert [v.name for v in left_result.views] == sorted(p.name for p in LEFT.glob("*.jpg"))
    errors = [v.error_px for v in left_result.views]
    assert np.allclose(errors, OPENCV_LEFT_VIEW_ERRORS, rtol=0.01, atol=0.005)
    # the overall RMS is the corner-weighted mean of the per-view errors, as in OpenCV's sample
    n = np.array([len(v.points) for v in left_result.views])
    assert np.sqrt(np.sum(n * np.square(errors)) / n.sum()) == pytest.approx(left_result.rms, rel=1e-5)
    assert left_result.flags == ["fix_aspect_ratio=1"]


@needs_left
def test_result_file_round_trips_and_feeds_the_store_config(left_result, tmp_path):
    path = left_result.save(tmp_path / "left.yaml")
    back = IntrinsicsResult.load(path)
    assert np.allclose(back.matrix(), left_result.matrix())
    assert back.intrinsics().fx == pytest.approx(left_result.matrix()[0, 0])
    assert len(back.views[0].residuals) == 54
    (tmp_path / "fit.yaml").write_text("kind: storesense-floor-fit\n")
    with pytest.raises(StoresenseError, match="not a storesense-intrinsics file"):
        IntrinsicsResult.load(tmp_path / "fit.yaml")


@needs_left
def test_views_without_the_board_are_listed_by_name(tmp_path):
    for name in ("left01.jpg", "left03.jpg", "left05.jpg", "left06.jpg"):
        shutil.copy(LEFT / name, tmp_path / name)
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((480, 640), 128, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image, ignored")
    result = calibrate_intrinsics(tmp_path, Chessboard(9, 6, 0.025))
    assert result.rejected == ["wall.png"]
    assert len(result.views) == 4


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoresenseError, match="no such folder"):
        calibrate_intrinsics(tmp_path / "nope", Chessboard(9, 6, 0.025))
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(StoresenseError, match=r"no images"):
        calibrate_intrinsics(tmp_path, Chessboard(9, 6, 0.025))


def test_unreadable_image_is_named(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((48, 64), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    with pytest.raises(StoresenseError, match=r"b\.jpg: not a readable image"):
        calibrate_intrinsics(tmp_path, Chessboard(9, 6, 0.025))


def test_too_few_views_names_the_rejected_images(tmp_path):
    for name in ("x.png", "y.png"):
        cv2.imwrite(str(tmp_path / name), np.full((48, 64), 200, np.uint8))
    with pytest.raises(StoresenseError, match=r"board found in only 0 of 2 images.*x\.png, y\.png"):
        calibrate_intrinsics(tmp_path, Chessboard(9, 6, 0.025))


def test_images_of_different_sizes_are_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((60, 80), np.uint8))
    with pytest.raises(StoresenseError, match=r"b\.png: image is 80x60 but a\.png is 64x48"):
        calibrate_intrinsics(tmp_path, Chessboard(9, 6, 0.025))


def test_flags_map_to_opencv():
    flags = CalibrationFlags(fix_aspect=True, zero_tangent=True, rational=True, fix_principal_point=True)
    assert flags.to_cv() == (cv2.CALIB_FIX_ASPECT_RATIO | cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_RATIONAL_MODEL
                             | cv2.CALIB_FIX_PRINCIPAL_POINT)
    assert CalibrationFlags().to_cv() == 0


# ----------------------------------------------------------------------------- ChArUco on rendered views

TRUE_K = np.array([[600.0, 0, 330.0], [0, 600.0, 235.0], [0, 0, 1]])
TRUE_DIST = np.array([-0.15, 0.05, 0.0, 0.0, 0.0])
SIZE = (640, 480)


def _pixel_rays() -> np.ndarray:
    """Ideal normalized coordinates of every pixel of a TRUE_K / TRUE_DIST camera (row-major)."""
    u, v = np.meshgrid(np.arange(SIZE[0], dtype=np.float64), np.arange(SIZE[1], dtype=np.float64))
    pix = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    return cv2.undistortPoints(pix, TRUE_K, TRUE_DIST).reshape(-1, 2)


def _render_view(norm: np.ndarray, board_img: np.ndarray, ppm: float, margin: int, rvec, tvec) -> np.ndarray:
    """What the camera (pixel rays ``norm``) sees of a flat board at pose (rvec, tvec)."""
    R, _ = cv2.Rodrigues(np.asarray(rvec, float))
    board_to_norm = np.c_[R[:, 0], R[:, 1], np.asarray(tvec, float)]
    xy = np.c_[norm, np.ones(len(norm))] @ np.linalg.inv(board_to_norm).T
    xy = xy[:, :2] / xy[:, 2:3]
    map_x = (xy[:, 0] * ppm + margin - 0.5).reshape(SIZE[1], SIZE[0]).astype(np.float32)
    map_y = (xy[:, 1] * ppm + margin - 0.5).reshape(SIZE[1], SIZE[0]).astype(np.float32)
    return cv2.remap(board_img, map_x, map_y, cv2.INTER_LINEAR, borderValue=200)


def test_charuco_calibration_recovers_rendered_camera(tmp_path):
    pattern = CharucoPattern(7, 5, 0.04, 0.03, "DICT_4X4_50")
    ppm, margin = 4000.0, 40
    board_img = pattern.render(int(0.28 * ppm) + 2 * margin, int(0.20 * ppm) + 2 * margin, margin)
    centre = np.array([0.14, 0.10, 0.0])
    rng = np.random.default_rng(7)
    rays = _pixel_rays()
    poses = [(0.0, 0.0, 0.0), (0.5, 0.0, 0.1), (-0.5, 0.1, -0.1), (0.0, 0.5, 0.2), (0.1, -0.5, 0.0),
             (0.4, 0.4, -0.3), (-0.4, -0.4, 0.3), (0.3, -0.3, 1.2)]
    offsets = [(0, 0), (-0.08, -0.05), (0.08, 0.05), (0.08, -0.06), (-0.08, 0.06), (0.0, 0.07), (0.0, -0.07),
               (-0.05, 0.0)]
    for i, (rot, off) in enumerate(zip(poses, offsets)):
        R, _ = cv2.Rodrigues(np.asarray(rot, float))
        tvec = np.array([off[0], off[1], 0.55]) - R @ centre  # board centre at (off, 0.55 m) in front
        image = _render_view(rays, board_img, ppm, margin, rot, tvec)
        image = np.clip(image + rng.normal(0, 2.0, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"view{i:02d}.png"), image)
    cv2.imwrite(str(tmp_path / "view99_floor.png"), np.full((SIZE[1], SIZE[0]), 90, np.uint8))
    result = calibrate_intrinsics(tmp_path, pattern, CalibrationFlags())
    assert result.rejected == ["view99_floor.png"]
    assert len(result.views) == 8
    K = result.matrix()
    assert K[0, 0] == pytest.approx(600.0, rel=0.01) and K[1, 1] == pytest.approx(600.0, rel=0.01)
    assert K[0, 2] == pytest.approx(330.0, abs=5.0) and K[1, 2] == pytest.approx(235.0, abs=5.0)
    assert result.dist[0] == pytest.approx(-0.15, abs=0.03)
    assert result.rms < 0.5
    assert result.board["type"] == "charuco"


def test_charuco_arguments_are_checked():
    with pytest.raises(StoresenseError, match="smaller than the square"):
        CharucoPattern(5, 5, 0.03, 0.04)
    with pytest.raises(StoresenseError, match="unknown ArUco dictionary"):
        CharucoPattern(5, 5, 0.04, 0.03, "DICT_9X9_7")
    with pytest.raises(StoresenseError, match="needs 55"):
        CharucoPattern(11, 10, 0.04, 0.03, "DICT_4X4_50")
