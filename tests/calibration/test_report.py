"""The calibration report: floor coverage counts and the PNG plots."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from storesense.calibration.correspondences import Correspondences
from storesense.calibration.coverage import camera_sees, floor_coverage
from storesense.calibration.floor_fit import fit_floor
from storesense.calibration.intrinsics import IntrinsicsResult, ViewResult
from storesense.calibration.report import write_report
from storesense.config import Camera, Intrinsics, Mount, example_store_path, load_store_config
from storesense.errors import StoresenseError

EXAMPLE = load_store_config(example_store_path())
# four corner cameras fixed here, so the expected coverage does not move when the example store is edited
STORE = EXAMPLE.model_copy(update={"cameras": [
    Camera(id=f"cam{i + 1}", source="0", resolution=(640, 480),
           intrinsics=Intrinsics(fx=420, fy=420, cx=320, cy=240), mount=Mount(position=pos, look_at=at))
    for i, (pos, at) in enumerate([((1, 1, 3.2), (4.5, 4.5, 0)), ((11, 1, 3.2), (7.5, 4.5, 0)),
                                   ((1, 7, 3.2), (4.5, 3.5, 0)), ((11, 7, 3.2), (7.5, 3.5, 0))])]})
PNG = b"\x89PNG\r\n\x1a\n"


def _cell(cov, x, y):
    return int(cov.counts[np.argmin(np.abs(cov.ys - y)), np.argmin(np.abs(cov.xs - x))])


def test_example_store_coverage_adds_up():
    cov = floor_coverage(EXAMPLE, cell=0.25)
    assert cov.counts.shape == (32, 48) and not cov.skipped and len(cov.seen_by) == len(EXAMPLE.cameras)
    assert sum(cov.fractions().values()) == pytest.approx(1.0)
    assert np.array_equal(cov.counts, sum(seen.astype(int) for seen in cov.seen_by.values()))


def test_corner_cameras_cover_the_floor_and_gaps_show_when_cameras_are_missing():
    cov = floor_coverage(STORE, cell=0.25)
    assert cov.counts.shape == (32, 48) and not cov.skipped
    assert cov.counts[cov.walkable].min() >= 1  # every walkable cell of the demo shop is seen
    assert _cell(cov, 6.0, 4.5) == 4 and cov.fractions()["0"] == 0.0
    front_only = STORE.model_copy(update={"cameras": STORE.cameras[:2]})
    cov = floor_coverage(front_only, cell=0.25)
    assert _cell(cov, 0.1, 0.1) == 0 and _cell(cov, 11.9, 0.1) == 0  # under and behind the cameras
    assert _cell(cov, 4.5, 4.5) == 2
    assert 0.0 < cov.fractions()["0"] < 0.5
    uncalibrated = STORE.model_copy(update={"cameras": [STORE.cameras[0].model_copy(update={"mount": None})]})
    assert floor_coverage(uncalibrated).skipped == ["cam1"]


def test_homography_camera_sees_what_the_posed_camera_sees():
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-15, 25, (4000, 2)), np.zeros(4000)]
    for camera in STORE.cameras:
        as_homography = camera.model_copy(update={"mount": None, "intrinsics": None,
                                                  "homography": camera.image_to_floor_homography().tolist()})
        posed, mapped = camera_sees(camera, points), camera_sees(as_homography, points)
        assert posed.sum() > 300 and np.array_equal(posed, mapped)  # including points behind the camera
    with pytest.raises(StoresenseError, match="only maps the floor plane"):
        camera_sees(as_homography, np.array([[1.0, 1.0, 1.0]]))


def test_lens_distortion_does_not_fold_far_points_into_the_image():
    import cv2

    camera = STORE.camera("cam1")
    # k1 < 0 alone: the radial polynomial r(1 + k1 r^2) turns back beyond r ~ 1.8, so cv2.projectPoints lands
    # points ~70 degrees off the axis inside the image; the camera cannot see them.
    wide = camera.model_copy(update={"intrinsics": camera.intrinsics.model_copy(update={"dist": [-0.1, 0, 0, 0, 0]})})
    rng = np.random.default_rng(3)
    points = np.c_[rng.uniform(-30, 30, (20000, 2)), np.zeros(20000)]
    R, t = wide.rotation_translation()
    cam = points @ R.T + t
    front = cam[:, 2] > 0
    radius = np.linalg.norm(cam[front, :2] / cam[front, 2:3], axis=1)
    uv, _ = cv2.projectPoints(points[front], cv2.Rodrigues(R)[0], t, wide.intrinsics.matrix(),
                              np.asarray(wide.intrinsics.dist))
    uv = uv.reshape(-1, 2)
    lands_inside = (uv[:, 0] >= 0) & (uv[:, 0] <= 640) & (uv[:, 1] >= 0) & (uv[:, 1] <= 480)
    folded = lands_inside & (radius > 2.0)
    assert folded.sum() > 10  # the trap exists for this lens
    sees = camera_sees(wide, points[front])
    assert not sees[folded].any()
    genuine = lands_inside & (radius < 1.0)
    assert sees[genuine].all() and genuine.sum() > 1000


def _intrinsics_result() -> IntrinsicsResult:
    rng = np.random.default_rng(1)
    views = []
    for i in range(6):
        pts = np.c_[rng.uniform(50, 590, 54), rng.uniform(40, 440, 54)]
        res = rng.normal(0, 0.2 + 0.1 * i, (54, 2))
        views.append(ViewResult(name=f"view{i}.png", error_px=float(np.sqrt((res ** 2).sum() / 54)),
                                rvec=(0.1, 0.0, 0.0), tvec=(0.0, 0.0, 0.5), points=pts.tolist(),
                                residuals=res.tolist()))
    rms = float(np.sqrt(np.mean([v.error_px ** 2 for v in views])))
    return IntrinsicsResult(source="/nonexistent/board-shots", image_size=(640, 480),
                            camera_matrix=[[420, 0, 320], [0, 420, 240], [0, 0, 1]], dist=[-0.1, 0.01, 0, 0, 0],
                            rms=rms, flags=["fix_aspect_ratio=1"], board={"type": "chessboard"}, views=views,
                            rejected=["blurry.png", "no-board.png"])


def test_report_writes_every_plot(tmp_path):
    camera = STORE.camera("cam3")
    rng = np.random.default_rng(5)
    floor = np.c_[rng.uniform(0, 12, 600), rng.uniform(0, 8, 600), np.zeros(600)]
    uv = camera.floor_to_image(floor)
    ok = np.isfinite(uv).all(axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 480)
    uv, floor = uv[ok][:25] + rng.normal(0, 0.6, (25, 2)), floor[ok][:25]
    uv[[3, 9]] += [[60, -40], [-35, 50]]
    fit = fit_floor(Correspondences(uv, floor, [f"p{i}" for i in range(25)], "cam3.csv"), camera.intrinsics,
                    camera="cam3", image_size=(640, 480))
    front_only = STORE.model_copy(update={"cameras": STORE.cameras[:3]})
    written = write_report(front_only, tmp_path / "report", intrinsics=[_intrinsics_result()], floor_fits=[fit])
    names = sorted(p.name for p in written)
    assert names == ["board-shots_residuals.png", "board-shots_view_errors.png", "cam3_floor_fit.png",
                     "coverage.png", "coverage_per_camera.png", "report.md"]
    for path in written:
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(PNG) and len(data) > 20_000, path
    md = (tmp_path / "report" / "report.md").read_text()
    assert "board not found in: blurry.png, no-board.png" in md and "23/25 inliers" in md
    assert "seen by 0 cameras: " in md and "![coverage](coverage.png)" in md


def test_report_command(tmp_path, monkeypatch, capsys):
    from storesense import cli

    import yaml

    _intrinsics_result().save(tmp_path / "cam.yaml")
    store = yaml.safe_load(example_store_path().read_text())
    store["cameras"] = store["cameras"][:1]  # one camera: the command's wiring, quickly
    (tmp_path / "store.yaml").write_text(yaml.safe_dump(store))
    monkeypatch.setattr(sys, "argv", ["storesense", "calibrate", "report", "--config", str(tmp_path / "store.yaml"),
                                      "--intrinsics", str(tmp_path / "cam.yaml"), "--out", str(tmp_path / "out"),
                                      "--cell", "0.5", "--height", "1.0"])
    cli.main()
    assert "coverage.png" in capsys.readouterr().out
    assert (tmp_path / "out" / "board-shots_view_errors.png").stat().st_size > 10_000
