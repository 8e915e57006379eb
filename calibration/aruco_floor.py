"""Floor correspondences from ArUco markers laid on the floor at known positions.

The marker layout file says which dictionary the markers come from and where
each marker lies (metres, floor frame)::

    dictionary: DICT_4X4_50
    size: 0.30                 # printed side length (black border to border), metres
    markers:
      0: [1.0, 1.0]            # centre; the marker's top edge faces +y
      1: {center: [4.0, 1.0], yaw_deg: 90}     # turned 90° counter-clockwise (top faces -x)
      2: {corners: [[6.0, 2.4], [6.3, 2.4], [6.3, 2.1], [6.0, 2.1]]}  # TL, TR, BR, BL as printed

With ``size`` (or explicit corners) each detected marker gives its four corners;
without, only its centre (the intersection of the detected diagonals, which is
exact under perspective). Markers detected but not in the layout, and markers in
the layout but not detected, are reported in the correspondences' notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import StoresenseError
from .charuco import aruco_dictionary
from .correspondences import Correspondences
from .images import read_image
from .resultfile import parse_yaml, read_text

CORNER_NAMES = ("TL", "TR", "BR", "BL")


@dataclass(frozen=True)
class FloorMarker:
    """One marker's floor position: its four corners (TL, TR, BR, BL) and/or its centre, metres."""

    id: int
    center: tuple[float, float]
    corners: np.ndarray | None  # 4×2, or None when only the centre is known


@dataclass(frozen=True)
class MarkerLayout:
    """Which ArUco dictionary and where each marker lies on the floor."""

    dictionary: str
    markers: dict[int, FloorMarker]
    source: str = "<markers>"


def marker_corners(center: tuple[float, float], size: float, yaw_deg: float = 0.0) -> np.ndarray:
    """Floor corners TL, TR, BR, BL of a square marker of side ``size`` centred at ``center``.

    At yaw 0 the marker's top edge faces +y; yaw turns it counter-clockwise seen from above.
    """
    h = size / 2.0
    local = np.array([[-h, h], [h, h], [h, -h], [-h, -h]])
    a = math.radians(yaw_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return local @ rot.T + np.asarray(center, float)


def _pair(value, where: str) -> tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise StoresenseError(f"{where}: expected [x, y] in metres, got {value!r}")
    return float(value[0]), float(value[1])


def load_marker_layout(path: str | Path) -> MarkerLayout:
    """Read a marker layout YAML file; errors name the file and the marker."""
    path = Path(path)
    data = parse_yaml(read_text(path), path)
    if not isinstance(data, dict) or not isinstance(data.get("markers"), dict) or not data["markers"]:
        raise StoresenseError(f"{path}: expected a mapping with 'dictionary', optional 'size' and "
                              "'markers: {id: [x, y] | {center, yaw_deg} | {corners}}'")
    unknown = set(data) - {"dictionary", "size", "markers"}
    if unknown:
        raise StoresenseError(f"{path}: unknown keys {sorted(unknown)}")
    dictionary = str(data.get("dictionary", "DICT_4X4_50"))
    aruco_dictionary(dictionary)  # fail early on a misspelt dictionary
    size = data.get("size")
    if size is not None and (not isinstance(size, (int, float)) or isinstance(size, bool) or size <= 0):
        raise StoresenseError(f"{path}: size: expected the marker side in metres (> 0), got {size!r}")
    markers: dict[int, FloorMarker] = {}
    for key, spec in data["markers"].items():
        where = f"{path}: markers.{key}"
        if not isinstance(key, int) or key < 0:
            raise StoresenseError(f"{where}: marker ids are non-negative integers")
        if isinstance(spec, list):
            spec = {"center": spec}
        if not isinstance(spec, dict) or not ({"center", "corners"} & set(spec)):
            raise StoresenseError(f"{where}: expected [x, y], {{center: [x, y], yaw_deg: A}} or {{corners: [...]}}")
        bad = set(spec) - {"center", "yaw_deg", "corners"}
        if bad:
            raise StoresenseError(f"{where}: unknown keys {sorted(bad)}")
        corners = None
        if "corners" in spec:
            raw = spec["corners"]
            if not isinstance(raw, list) or len(raw) != 4:
                raise StoresenseError(f"{where}.corners: expected four [x, y] (TL, TR, BR, BL)")
            corners = np.array([_pair(c, f"{where}.corners") for c in raw])
            center = tuple(corners.mean(axis=0))
        else:
            center = _pair(spec["center"], f"{where}.center")
            if size is not None:
                yaw = spec.get("yaw_deg", 0.0)
                if not isinstance(yaw, (int, float)) or isinstance(yaw, bool):
                    raise StoresenseError(f"{where}.yaw_deg: expected degrees, got {yaw!r}")
                corners = marker_corners(center, float(size), float(yaw))
        markers[key] = FloorMarker(key, (float(center[0]), float(center[1])), corners)
    return MarkerLayout(dictionary, markers, str(path))


def _diagonal_intersection(c: np.ndarray) -> np.ndarray:
    """Where the diagonals TL-BR and TR-BL of an image quadrilateral cross."""
    p = np.cross(np.r_[c[0], 1.0], np.r_[c[2], 1.0])
    q = np.cross(np.r_[c[1], 1.0], np.r_[c[3], 1.0])
    x = np.cross(p, q)
    return x[:2] / x[2]


def detect_floor_markers(image: np.ndarray | str | Path, layout: MarkerLayout,
                         name: str | None = None) -> Correspondences:
    """Detect the layout's markers in an image and pair them with their floor positions.

    Raises when a marker id is seen twice (ambiguous). Markers not in the
    layout and layout markers not seen are listed in the result's ``notes``.
    """
    if not isinstance(image, np.ndarray):
        name = name or str(image)
        image = read_image(image)
    name = name or "<image>"
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    detector = cv2.aruco.ArucoDetector(aruco_dictionary(layout.dictionary), params)
    corners, ids, _rejected = detector.detectMarkers(gray)
    ids = [] if ids is None else [int(i) for i in ids.ravel()]
    seen: dict[int, np.ndarray] = {}
    for marker_id, quad in zip(ids, corners):
        if marker_id in seen:
            raise StoresenseError(f"{name}: marker {marker_id} detected twice; each marker id must appear once")
        seen[marker_id] = quad.reshape(4, 2).astype(float)
    image_pts, floor_pts, labels = [], [], []
    for marker_id in sorted(seen):
        marker = layout.markers.get(marker_id)
        if marker is None:
            continue
        quad = seen[marker_id]
        if marker.corners is not None:
            for k in range(4):
                image_pts.append(quad[k])
                floor_pts.append([*marker.corners[k], 0.0])
                labels.append(f"marker {marker_id} {CORNER_NAMES[k]}")
        else:
            image_pts.append(_diagonal_intersection(quad))
            floor_pts.append([*marker.center, 0.0])
            labels.append(f"marker {marker_id}")
    notes = []
    extra = sorted(set(seen) - set(layout.markers))
    missing = sorted(set(layout.markers) - set(seen))
    if extra:
        notes.append(f"markers seen but not in {layout.source}: {extra}")
    if missing:
        notes.append(f"markers in {layout.source} not found in {name}: {missing}")
    if not labels:
        raise StoresenseError(f"{name}: none of the {len(layout.markers)} markers of {layout.source} "
                              f"({layout.dictionary}) was detected" + (f"; saw ids {sorted(seen)}" if seen else ""))
    return Correspondences(np.asarray(image_pts, float).reshape(-1, 2), np.asarray(floor_pts, float).reshape(-1, 3),
                           labels, f"{name} (ArUco)", notes)
