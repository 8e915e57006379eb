"""The steps behind ``storesense calibrate floor``, kept out of the CLI so they can be tested.

:func:`calibrate_camera_floor` loads the store and the camera, takes intrinsics
from a result file or the config, gets correspondences from a point file or
from ArUco markers in an image, fits the camera to the floor and (unless
``write=False``) writes the result into the store YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import Camera, Intrinsics, load_store_config
from ..errors import StoresenseError
from .aruco_floor import detect_floor_markers, load_marker_layout
from .correspondences import Correspondences, load_points
from .floor_fit import FloorFit, Method, fit_floor
from .images import read_image
from .intrinsics import IntrinsicsResult
from .store_writer import write_camera_calibration


@dataclass
class FloorCalibration:
    """What :func:`calibrate_camera_floor` did."""

    fit: FloorFit
    written: bool
    removed: list[str] = field(default_factory=list)
    intrinsics_written: bool = False


def _camera(config_path: Path, camera_id: str) -> Camera:
    cfg = load_store_config(config_path)
    try:
        return cfg.camera(camera_id)
    except KeyError:
        known = ", ".join(c.id for c in cfg.cameras) or "none"
        raise StoresenseError(f"{config_path}: no camera {camera_id!r} (cameras: {known})") from None


def intrinsics_from_file(path: str | Path, camera: Camera) -> Intrinsics:
    """Intrinsics from a calibration result file, refused when its image size differs from the camera's."""
    result = IntrinsicsResult.load(path)
    if tuple(result.image_size) != tuple(camera.resolution):
        raise StoresenseError(f"{path}: calibrated at {result.image_size[0]}x{result.image_size[1]} but camera "
                              f"{camera.id} has resolution {camera.resolution[0]}x{camera.resolution[1]}")
    return result.intrinsics()


def _correspondences(camera: Camera, points: Path | None, aruco: Path | None,
                     markers: Path | None) -> Correspondences:
    if (points is None) == (aruco is None):
        raise StoresenseError("give either --points FILE or --aruco IMAGE --markers FILE")
    if points is not None:
        return load_points(points)
    if markers is None:
        raise StoresenseError("--aruco IMAGE needs --markers FILE (marker id -> floor position)")
    layout = load_marker_layout(markers)
    image = read_image(aruco)
    if (image.shape[1], image.shape[0]) != tuple(camera.resolution):
        raise StoresenseError(f"{aruco}: image is {image.shape[1]}x{image.shape[0]} but camera {camera.id} "
                              f"has resolution {camera.resolution[0]}x{camera.resolution[1]}")
    return detect_floor_markers(image, layout, name=str(aruco))


def calibrate_camera_floor(config_path: str | Path, camera_id: str, *, points: str | Path | None = None,
                           aruco: str | Path | None = None, markers: str | Path | None = None,
                           intrinsics_file: str | Path | None = None, method: Method = "auto",
                           threshold_px: float = 4.0, write: bool = True) -> FloorCalibration:
    """Fit one camera of a store to the floor and write the result into the store file."""
    config_path = Path(config_path)
    camera = _camera(config_path, camera_id)
    from_file = intrinsics_from_file(intrinsics_file, camera) if intrinsics_file else None
    intrinsics = from_file or camera.intrinsics
    corr = _correspondences(camera, Path(points) if points else None, Path(aruco) if aruco else None,
                            Path(markers) if markers else None)
    fit = fit_floor(corr, intrinsics, method=method, threshold_px=threshold_px, camera=camera_id,
                    image_size=tuple(camera.resolution))
    if not write:
        return FloorCalibration(fit, written=False)
    if fit.method == "pnp":
        _, removed = write_camera_calibration(config_path, camera_id, intrinsics=from_file, extrinsics=fit.extrinsics())
    else:
        _, removed = write_camera_calibration(config_path, camera_id, intrinsics=from_file, homography=fit.homography)
    return FloorCalibration(fit, written=True, removed=removed, intrinsics_written=from_file is not None)
