"""Floor mapping: pose and homography from correspondences with known truth, ArUco floor markers,
degenerate input, and writing the result into the store YAML."""

from __future__ import annotations

import shutil
import sys

import cv2
import numpy as np
import pytest

from storesense.calibration.aruco_floor import detect_floor_markers, load_marker_layout, marker_corners
from storesense.calibration.correspondences import Correspondences, check_correspondences, load_points
from storesense.calibration.floor_fit import FloorFit, fit_floor
from storesense.calibration.homography import apply_homography, pose_from_homography
from storesense.calibration.store_writer import write_camera_calibration
from storesense.calibration.workflow import calibrate_camera_floor
from storesense.config import Camera, Extrinsics, Intrinsics, Mount, example_store_path, load_store_config
from storesense.errors import ConfigError, StoresenseError

# What "recovered" means (measured on 160 trials, 4 cameras x 40 seeds, 30 points, 0.5 px noise, 6 gross
# outliers: PnP max 0.16 deg / 2.1 cm, homography max 0.25 deg / 4.8 cm, floor mapping max 8 cm).
PNP_ROT_DEG, PNP_POS_CM = 0.5, 3.0
HOMOGRAPHY_ROT_DEG, HOMOGRAPHY_POS_CM = 0.5, 6.0  # the homography does not use K, so it pins the pose less
FLOOR_MAP_CM = 10.0  # worst floor error anywhere in the store's visible floor, up to ~12 m from the camera

W, H = 640, 480
# Four ceiling cameras at the corners of the example shop, 3.2 m up, looking into the aisles: fixed here
# so these tests do not move when the example store's own camera layout is edited.
MOUNTS = {"cam1": ((1.0, 1.0), (4.5, 4.5)), "cam2": ((11.0, 1.0), (7.5, 4.5)),
          "cam3": ((1.0, 7.0), (4.5, 3.5)), "cam4": ((11.0, 7.0), (7.5, 3.5))}
_EXAMPLE = load_store_config(example_store_path())
STORE = _EXAMPLE.model_copy(update={"cameras": [
    Camera(id=cam_id, source=f"rtsp://{cam_id}.local/stream1", resolution=(W, H),
           intrinsics=Intrinsics(fx=420, fy=420, cx=320, cy=240, dist=[0, 0, 0, 0, 0]),
           mount=Mount(position=(*xy, 3.2), look_at=(*at, 0.0)))
    for cam_id, (xy, at) in MOUNTS.items()]})


def _pose_error(camera, rvec, tvec) -> tuple[float, float]:
    """(rotation error in degrees, camera-centre error in cm) against the config's pose."""
    R_true, t_true = camera.rotation_translation()
    R, _ = cv2.Rodrigues(np.asarray(rvec, float))
    angle = np.degrees(np.arccos(np.clip((np.trace(R.T @ R_true) - 1) / 2, -1, 1)))
    centre = -R.T @ np.asarray(tvec, float)
    return float(angle), float(np.linalg.norm(centre - (-R_true.T @ t_true)) * 100)


def _floor_map_error_cm(camera, H_image_to_floor) -> float:
    grid = np.mgrid[0:W:20, 0:H:20].reshape(2, -1).T.astype(float)
    truth = apply_homography(camera.image_to_floor_homography(), grid)
    in_store = (truth[:, 0] >= 0) & (truth[:, 0] <= 12) & (truth[:, 1] >= 0) & (truth[:, 1] <= 8)
    return float(np.max(np.linalg.norm(apply_homography(H_image_to_floor, grid[in_store]) - truth[in_store], axis=1))
                 * 100)


def _synthetic(camera, seed: int, n: int = 30, noise_px: float = 0.5, outliers: int = 6):
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0, 12, 800), rng.uniform(0, 8, 800), np.zeros(800)]
    uv = camera.floor_to_image(floor)
    visible = np.isfinite(uv).all(axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    floor, uv = floor[visible][:n], uv[visible][:n]
    uv = uv + rng.normal(0, noise_px, uv.shape)
    bad = rng.choice(n, outliers, replace=False)
    uv[bad] += rng.uniform(20, 100, (outliers, 2)) * rng.choice([-1, 1], (outliers, 2))
    return Correspondences(uv, floor, [f"p{i}" for i in range(n)], f"seed {seed}"), set(bad.tolist())


@pytest.mark.parametrize("camera_id", ["cam1", "cam2", "cam3", "cam4"])
def test_pnp_and_homography_recover_a_known_camera_despite_outliers(camera_id):
    camera = STORE.camera(camera_id)
    K = camera.intrinsics.matrix()
    worst = {"pnp": [0.0, 0.0, 0.0], "homography": [0.0, 0.0, 0.0]}
    for seed in range(5):
        corr, bad = _synthetic(camera, seed)
        pnp = fit_floor(corr, camera.intrinsics)  # auto: intrinsics known -> pose
        homography = fit_floor(corr, None)  # auto: no intrinsics -> homography
        assert pnp.method == "pnp" and homography.method == "homography"
        for fit in (pnp, homography):
            assert {i for i, p in enumerate(fit.points) if not p.inlier} == bad
            assert fit.rms_px() < 1.0
        R, _ = cv2.Rodrigues(np.asarray(pnp.rvec))
        pnp_H = np.linalg.inv(K @ np.c_[R[:, 0], R[:, 1], pnp.tvec])
        results = {"pnp": (*_pose_error(camera, pnp.rvec, pnp.tvec), _floor_map_error_cm(camera, pnp_H)),
                   "homography": (*_pose_error(camera, *pose_from_homography(np.asarray(homography.homography), K)),
                                  _floor_map_error_cm(camera, np.asarray(homography.homography)))}
        for method, values in results.items():
            worst[method] = [max(a, b) for a, b in zip(worst[method], values)]
    assert worst["pnp"][0] < PNP_ROT_DEG and worst["pnp"][1] < PNP_POS_CM, worst
    assert worst["homography"][0] < HOMOGRAPHY_ROT_DEG and worst["homography"][1] < HOMOGRAPHY_POS_CM, worst
    assert worst["pnp"][2] < FLOOR_MAP_CM and worst["homography"][2] < FLOOR_MAP_CM, worst


def test_residuals_are_reported_per_point_in_pixels_and_centimetres():
    camera = STORE.camera("cam1")
    corr, bad = _synthetic(camera, 11)
    fit = fit_floor(corr, camera.intrinsics)
    inliers = [p for p in fit.points if p.inlier]
    assert all(p.residual_px < fit.threshold_px for p in inliers)
    assert all(p.residual_cm is not None and p.residual_cm < 10 for p in inliers)
    assert all(fit.points[i].residual_px > fit.threshold_px for i in bad)
    assert 0.2 < fit.rms_px() < 1.0 and fit.rms_cm() < 5.0


def test_non_planar_points_work_for_pnp_but_not_for_a_homography():
    camera = STORE.camera("cam3")
    rng = np.random.default_rng(2)
    floor = np.c_[rng.uniform(1, 8, 400), rng.uniform(0.5, 6, 400), rng.uniform(0, 1.8, 400)]
    uv = camera.floor_to_image(floor)
    ok = np.isfinite(uv).all(axis=1) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    corr = Correspondences(uv[ok][:20] + rng.normal(0, 0.3, (20, 2)), floor[ok][:20], [f"q{i}" for i in range(20)])
    fit = fit_floor(corr, camera.intrinsics)
    rot, pos = _pose_error(camera, fit.rvec, fit.tvec)
    assert rot < PNP_ROT_DEG and pos < PNP_POS_CM
    with pytest.raises(StoresenseError, match="z != 0"):
        fit_floor(corr, camera.intrinsics, method="homography")


# ----------------------------------------------------------------------------- degenerate input

SQUARE = np.array([[100, 100], [500, 110], [520, 400], [90, 380], [300, 250]], float)
FLOOR = np.array([[1, 1, 0], [5, 1, 0], [5, 4, 0], [1, 4, 0], [3, 2.5, 0]], float)


def _corr(image, floor):
    return Correspondences(np.asarray(image, float), np.asarray(floor, float),
                           [f"r{i}" for i in range(len(image))], "pts.csv")


@pytest.mark.parametrize("image, floor, message", [
    (SQUARE[:3], FLOOR[:3], r"pts\.csv: 3 correspondence\(s\); at least 4"),
    (np.r_[SQUARE[:4], SQUARE[:1] + 0.1], FLOOR, r"r0 and r4 are the same image point"),
    (SQUARE, np.r_[FLOOR[:4], FLOOR[1:2]], r"r1 and r4 are the same floor point"),
    (SQUARE, [[0, 0, 0], [1, 1, 0], [2, 2, 0], [3, 3, 0], [5, 5, 0]], r"floor points lie on one line"),
    ([[0, 0], [10, 10], [20, 20], [30, 30], [50, 50]], FLOOR, r"image points lie on one line"),
    (SQUARE, [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [1, 3, 0]], r"all but one of the 5 floor points"),
])
def test_degenerate_correspondences_are_clear_errors(image, floor, message):
    with pytest.raises(StoresenseError, match=message):
        check_correspondences(_corr(image, floor))
    with pytest.raises(StoresenseError, match=message):
        fit_floor(_corr(image, floor), STORE.camera("cam1").intrinsics)


def test_pose_needs_intrinsics_and_a_sensible_threshold():
    with pytest.raises(StoresenseError, match="needs intrinsics"):
        fit_floor(_corr(SQUARE, FLOOR), None, method="pnp", camera="cam9")
    with pytest.raises(StoresenseError, match="must be positive"):
        fit_floor(_corr(SQUARE, FLOOR), None, threshold_px=0)


def test_mirrored_floor_coordinates_are_caught():
    camera = STORE.camera("cam2")
    corr, _ = _synthetic(camera, 3, outliers=0)
    mirrored = Correspondences(corr.image, corr.floor * [1, -1, 1], corr.labels, "mirrored.csv")
    with pytest.raises(StoresenseError, match="mirrored|behind|no camera pose"):
        fit_floor(mirrored, camera.intrinsics)


# ----------------------------------------------------------------------------- point files


def test_point_files_csv_and_yaml(tmp_path):
    csv_file = tmp_path / "pts.csv"
    csv_file.write_text("# clicked in the cam1 snapshot\nname,u,v,x,y,z\ndoor,10,20,0.5,0.25,0\n"
                        "pillar,30.5,40,1,2,\nshelf-top,50,60,3,4,1.6\n")
    corr = load_points(csv_file)
    assert corr.labels == ["door", "pillar", "shelf-top"]
    assert np.allclose(corr.floor[:, 2], [0, 0, 1.6]) and corr.image[1, 0] == 30.5
    yaml_file = tmp_path / "pts.yaml"
    yaml_file.write_text("points:\n  - {name: a, u: 1, v: 2, x: 3, y: 4}\n  - [5, 6, 7, 8, 0.5]\n")
    corr = load_points(yaml_file)
    assert corr.labels == ["a", "points[1]"] and np.allclose(corr.floor, [[3, 4, 0], [7, 8, 0.5]])


@pytest.mark.parametrize("name, text, message", [
    ("a.csv", "u,v,x\n1,2,3\n", "header naming the columns u, v, x, y"),
    ("b.csv", "u,v,x,y\n1,2,3,four\n", r"b\.csv: point line 2: y: expected a number, got 'four'"),
    ("c.csv", "u,v,x,y\n1,2,3\n", r"c\.csv: line 2: 3 columns, the header has 4"),
    ("d.yaml", "points:\n  - {u: 1, v: 2, x: 3}\n", r"d\.yaml: points\[0\]: missing \['y'\]"),
    ("e.yaml", "points: [[1, 2, 3]]\n", r"expected u, v, x, y\[, z\], got 3 values"),
])
def test_bad_point_files_name_the_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(StoresenseError, match=message):
        load_points(tmp_path / name)


# ----------------------------------------------------------------------------- ArUco markers on the floor

MARKERS = {0: (2.2, 3.5), 1: (4.5, 1.8), 2: (4.5, 4.5), 3: (2.0, 6.3), 4: (7.5, 2.0), 5: (7.2, 4.6), 7: (4.6, 6.8)}
MARKER_SIZE = 0.5


def _render_floor(camera, markers: dict, size: float, ppm: float = 200.0, seed: int = 0) -> np.ndarray:
    """What the camera sees of a light floor with ArUco markers lying on it (top edge towards +y)."""
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    texture = np.full((int(8 * ppm), int(12 * ppm)), 215, np.uint8)
    side = int(round(size * ppm))
    for marker_id, (cx, cy) in markers.items():
        tile = np.flipud(cv2.aruco.generateImageMarker(dictionary, marker_id, side, borderBits=1))
        x0, y0 = int(round((cx - size / 2) * ppm)), int(round((cy - size / 2) * ppm))
        texture[y0:y0 + side, x0:x0 + side] = tile
    # texture pixel (px, py) covers floor [px, px + 1] / ppm: texture -> floor -> image
    texture_to_floor = np.array([[1 / ppm, 0, 0.5 / ppm], [0, 1 / ppm, 0.5 / ppm], [0, 0, 1]])
    floor_to_image = np.linalg.inv(camera.image_to_floor_homography())
    image = cv2.warpPerspective(texture, floor_to_image @ texture_to_floor, (W, H), flags=cv2.INTER_LINEAR,
                                borderValue=120)
    noise = np.random.default_rng(seed).normal(0, 2.0, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def marker_image():
    return _render_floor(STORE.camera("cam1"), MARKERS, MARKER_SIZE)


def _layout_file(tmp_path, markers=MARKERS, size=MARKER_SIZE, extra: str = ""):
    lines = ["dictionary: DICT_4X4_50", f"size: {size}" if size else "", "markers:"]
    lines += [f"  {k}: [{x}, {y}]" for k, (x, y) in markers.items()]
    path = tmp_path / "markers.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def test_aruco_markers_on_the_floor_give_the_camera_pose(tmp_path, marker_image):
    camera = STORE.camera("cam1")
    layout = load_marker_layout(_layout_file(tmp_path))
    corr = detect_floor_markers(marker_image, layout, name="cam1.png")
    assert len(corr) == 4 * len(MARKERS) and corr.notes == []
    assert corr.labels[0] == "marker 0 TL"
    fit = fit_floor(corr, camera.intrinsics)
    rot, pos = _pose_error(camera, fit.rvec, fit.tvec)
    assert rot < PNP_ROT_DEG and pos < PNP_POS_CM, (rot, pos)
    assert fit.inlier_count() == len(corr) and fit.rms_px() < 1.0  # far, foreshortened markers: ~2 px corners
    hom = fit_floor(corr, None)
    rot, pos = _pose_error(camera, *pose_from_homography(np.asarray(hom.homography), camera.intrinsics.matrix()))
    assert rot < HOMOGRAPHY_ROT_DEG and pos < HOMOGRAPHY_POS_CM, (rot, pos)


def test_aruco_centres_only_and_missing_or_unknown_markers_are_noted(tmp_path, marker_image):
    known = {k: v for k, v in MARKERS.items() if k != 5}
    known[9] = (10.0, 7.0)
    layout = load_marker_layout(_layout_file(tmp_path, known, size=None))
    corr = detect_floor_markers(marker_image, layout, name="cam1.png")
    assert corr.labels == [f"marker {k}" for k in (0, 1, 2, 3, 4, 7)]
    assert any("not in" in n and "[5]" in n for n in corr.notes)
    assert any("not found" in n and "[9]" in n for n in corr.notes)
    # centres (diagonal intersections) are exact under perspective: the pose is still good
    fit = fit_floor(corr, STORE.camera("cam1").intrinsics)
    rot, pos = _pose_error(STORE.camera("cam1"), fit.rvec, fit.tvec)
    assert rot < 1.0 and pos < 5.0, (rot, pos)


def test_marker_layout_errors_and_corner_geometry(tmp_path):
    assert np.allclose(marker_corners((1, 1), 0.2), [[0.9, 1.1], [1.1, 1.1], [1.1, 0.9], [0.9, 0.9]])
    assert np.allclose(marker_corners((0, 0), 2, 90)[0], [-1, -1])  # TL turned to face -x
    bad = tmp_path / "bad.yaml"
    bad.write_text("dictionary: DICT_4X4_50\nmarkers:\n  3: [1.0]\n")
    with pytest.raises(StoresenseError, match=r"bad\.yaml: markers\.3\.center: expected \[x, y\]"):
        load_marker_layout(bad)
    bad.write_text("dictionary: DICT_5X5_3\nmarkers:\n  3: [1.0, 2.0]\n")
    with pytest.raises(StoresenseError, match="unknown ArUco dictionary"):
        load_marker_layout(bad)
    blank = np.full((H, W), 200, np.uint8)
    with pytest.raises(StoresenseError, match="none of the 7 markers"):
        detect_floor_markers(blank, load_marker_layout(_layout_file(tmp_path)), name="blank.png")


# ----------------------------------------------------------------------------- writing the store file


@pytest.fixture
def store_copy(tmp_path):
    """The example store file (comments and all) with its cameras section replaced by this module's."""
    lines = example_store_path().read_text().splitlines(keepends=True)
    start = lines.index("cameras:\n")
    end = next(i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "\n", "#"))
    cameras = ["cameras:\n"]
    for c in STORE.cameras:
        cameras += [f"  - id: {c.id}   # a corner camera\n", f"    source: {c.source}\n",
                    f"    resolution: [{W}, {H}]\n", "    fps: 10\n",
                    "    intrinsics: {fx: 420, fy: 420, cx: 320, cy: 240, dist: [0, 0, 0, 0, 0]}\n",
                    f"    mount: {{position: {list(c.mount.position)}, look_at: {list(c.mount.look_at)}}}\n"]
    path = tmp_path / "store.yaml"
    path.write_text("".join(lines[:start] + cameras + ["\n"] + lines[end:]))
    assert load_store_config(path).cameras == STORE.cameras
    return path


def test_pose_written_into_the_store_round_trips_and_keeps_the_rest(store_copy):
    before = store_copy.read_text()
    camera = STORE.camera("cam1")
    fit = fit_floor(_synthetic(camera, 4)[0], camera.intrinsics)
    cfg, removed = write_camera_calibration(store_copy, "cam1", extrinsics=fit.extrinsics())
    assert removed == ["mount"]
    after = store_copy.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(before.splitlines()) == len(after.splitlines()) and len(changed) == 1
    assert "mount:" in changed[0][0] and changed[0][1].strip().startswith("extrinsics: {rvec: [")
    assert before.splitlines()[0] == after.splitlines()[0]  # the header comment survives
    assert after.count("# a corner camera") == 4  # and so do comments on the camera's own lines
    loaded = load_store_config(store_copy).camera("cam1")
    assert np.allclose(loaded.extrinsics.rvec, fit.rvec, atol=1e-8)
    assert np.allclose(loaded.extrinsics.tvec, fit.tvec, atol=1e-6)
    assert load_store_config(store_copy).camera("cam2") == STORE.camera("cam2")
    # the written pose projects like the original mount (the fit's error only)
    probe = np.array([[3.0, 2.0, 0.0], [4.5, 4.5, 0.0], [7.0, 6.5, 0.0]])
    assert np.abs(loaded.floor_to_image(probe) - camera.floor_to_image(probe)).max() < 2.0
    assert cfg.camera("cam1") == loaded


def test_homography_and_intrinsics_written_into_the_store(store_copy):
    camera = STORE.camera("cam4")
    fit = fit_floor(_synthetic(camera, 5)[0], None)
    intrinsics = camera.intrinsics.model_copy(update={"fx": 421.5, "dist": [0.01, 0.0, 0.0, 0.0, 0.0]})
    _, removed = write_camera_calibration(store_copy, "cam4", intrinsics=intrinsics, homography=fit.homography)
    assert removed == ["mount"]
    loaded = load_store_config(store_copy).camera("cam4")
    assert np.allclose(loaded.homography, fit.homography, rtol=1e-8, atol=1e-12)
    assert loaded.intrinsics.fx == 421.5 and loaded.intrinsics.dist[0] == 0.01
    assert loaded.mount is None and loaded.extrinsics is None
    uv = loaded.floor_to_image(np.array([[8.0, 4.0, 0.0]]))
    assert np.allclose(uv, camera.floor_to_image(np.array([[8.0, 4.0, 0.0]])), atol=2.0)


def test_an_invalid_write_leaves_the_store_file_untouched(store_copy, tmp_path):
    import yaml

    data = yaml.safe_load(store_copy.read_text())
    del data["cameras"][3]["intrinsics"], data["cameras"][3]["mount"]  # cam4 uncalibrated: still valid
    store_copy.write_text(yaml.safe_dump(data, sort_keys=False))
    before = store_copy.read_text()
    load_store_config(store_copy)
    with pytest.raises(ConfigError, match=r"store\.yaml: .*needs intrinsics.*file left unchanged"):
        write_camera_calibration(store_copy, "cam4", extrinsics=Extrinsics(rvec=(0, 0, 0), tvec=(0, 0, 3)))
    assert store_copy.read_text() == before
    with pytest.raises(ConfigError, match="no camera 'cam7'"):
        write_camera_calibration(store_copy, "cam7", extrinsics=Extrinsics(rvec=(0, 0, 0), tvec=(0, 0, 3)))
    assert not list(tmp_path.glob(".store.yaml.*"))  # no temporary file left behind


# ----------------------------------------------------------------------------- the command


def test_floor_workflow_with_aruco_and_an_intrinsics_file(store_copy, tmp_path, marker_image):
    from storesense.calibration.intrinsics import IntrinsicsResult

    image = tmp_path / "cam1.png"
    cv2.imwrite(str(image), marker_image)
    intrinsics = IntrinsicsResult(source="synthetic", image_size=(W, H), camera_matrix=STORE.camera("cam1")
                                  .intrinsics.matrix().tolist(), dist=[0.0] * 5, rms=0.2, flags=[], board={},
                                  views=[], rejected=[])
    intrinsics.save(tmp_path / "intrinsics.yaml")
    done = calibrate_camera_floor(store_copy, "cam1", aruco=image, markers=_layout_file(tmp_path),
                                  intrinsics_file=tmp_path / "intrinsics.yaml")
    assert done.written and done.intrinsics_written and done.removed == ["mount"]
    rot, pos = _pose_error(STORE.camera("cam1"), *load_store_config(store_copy).camera("cam1")
                           .extrinsics.model_dump().values())
    assert rot < PNP_ROT_DEG and pos < PNP_POS_CM
    done.fit.save(tmp_path / "fit.yaml")
    assert FloorFit.load(tmp_path / "fit.yaml") == done.fit
    wrong = intrinsics.model_copy(update={"image_size": (1280, 720)})
    wrong.save(tmp_path / "hd.yaml")
    with pytest.raises(StoresenseError, match=r"hd\.yaml: calibrated at 1280x720 but camera cam1 has resolution 640x480"):
        calibrate_camera_floor(store_copy, "cam1", aruco=image, markers=_layout_file(tmp_path),
                               intrinsics_file=tmp_path / "hd.yaml")


def test_cli_floor_writes_the_store_and_reports_errors_in_one_line(store_copy, tmp_path, monkeypatch, capsys):
    from storesense import cli

    corr, _ = _synthetic(STORE.camera("cam2"), 8)
    points = tmp_path / "pts.csv"
    points.write_text("name,u,v,x,y\n" + "".join(f"{n},{u:.3f},{v:.3f},{x:.4f},{y:.4f}\n" for n, (u, v), (x, y, _)
                                                 in zip(corr.labels, corr.image, corr.floor)))
    monkeypatch.setattr(sys, "argv", ["storesense", "calibrate", "floor", "--config", str(store_copy),
                                      "--camera", "cam2", "--points", str(points), "-o", str(tmp_path / "fit.yaml")])
    cli.main()  # returns normally on success
    out = capsys.readouterr().out
    assert "24/30 inliers" in out and "wrote extrinsics (removed mount) for cam2" in out
    assert load_store_config(store_copy).camera("cam2").extrinsics is not None
    monkeypatch.setattr(sys, "argv", ["storesense", "calibrate", "floor", "--config", str(store_copy),
                                      "--camera", "nope", "--points", str(points)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines at the console width
    assert err.startswith("error:") and "no camera 'nope'" in err and "Traceback" not in err


def test_near_vertical_mount_gives_a_proper_rotation():
    """config.Camera.rotation_translation for a camera looking (almost) straight down (fixed in config.py)."""
    for look_at in [(5.05, 5.0, 0.0), (5.0, 5.0, 0.0), (4.99, 5.02, 0.0)]:
        camera = Camera(id="down", source="0", resolution=(W, H), intrinsics=Intrinsics(fx=400, fy=400, cx=320, cy=240),
                        mount=Mount(position=(5.0, 5.0, 3.0), look_at=look_at))
        R, _ = camera.rotation_translation()
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12) and np.linalg.det(R) == pytest.approx(1.0)
        assert np.allclose(camera.floor_to_image(np.array([look_at])), [[320.0, 240.0]], atol=1e-9)
