"""Image <-> floor point correspondences: reading them and refusing degenerate sets.

A correspondence file lists, per point, the pixel (u, v) and where that point is
on the floor (x, y[, z]) in metres. CSV with a header row::

    name,u,v,x,y,z
    door-left,102.5,388.0,0.30,0.00,0
    ...

(``name`` and ``z`` are optional), or YAML::

    points:
      - {name: door-left, u: 102.5, v: 388.0, x: 0.30, y: 0.0}
      - [410.0, 402.5, 4.0, 1.0]          # u, v, x, y[, z]
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StoresenseError
from .resultfile import parse_yaml, read_text

MIN_POINTS = 4
DUPLICATE_PX = 0.5  # two image points closer than this are the same point
DUPLICATE_M = 0.005  # two floor points closer than this are the same point
COLLINEAR_RATIO = 1e-3  # second / first singular value of the centred points below this: on one line


@dataclass(frozen=True)
class Correspondences:
    """Matched points: ``image`` N×2 pixels, ``floor`` N×3 metres, one label each."""

    image: np.ndarray
    floor: np.ndarray
    labels: list[str]
    source: str = "<points>"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def planar(self) -> bool:
        """True when every floor point has z = 0."""
        return bool(np.all(np.abs(self.floor[:, 2]) < 1e-9))


def _number(value, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise StoresenseError(f"{where}: expected a number, got {value!r}") from None
    if not np.isfinite(out):
        raise StoresenseError(f"{where}: expected a finite number, got {value!r}")
    return out


def _from_rows(rows: list[tuple[str, list]], source: str) -> Correspondences:
    image, floor, labels = [], [], []
    for label, values in rows:
        where = f"{source}: point {label}"
        if len(values) not in (4, 5):
            raise StoresenseError(f"{where}: expected u, v, x, y[, z], got {len(values)} values")
        nums = [_number(v, f"{where}: {k}") for v, k in zip(values, "uvxyz")]
        image.append(nums[:2])
        floor.append(nums[2:4] + [nums[4] if len(nums) == 5 else 0.0])
        labels.append(label)
    return Correspondences(np.asarray(image, float).reshape(-1, 2), np.asarray(floor, float).reshape(-1, 3),
                           labels, source)


def _read_csv(path: Path, text: str) -> Correspondences:
    reader = csv.reader(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    rows = list(reader)
    if not rows:
        raise StoresenseError(f"{path}: no points")
    header = [h.strip().lower() for h in rows[0]]
    if not {"u", "v", "x", "y"} <= set(header):
        raise StoresenseError(f"{path}: the first row must be a header naming the columns u, v, x, y "
                              f"(and optionally z, name); got {rows[0]}")
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise StoresenseError(f"{path}: line {line_no}: {len(row)} columns, the header has {len(header)}")
        rec = dict(zip(header, (c.strip() for c in row)))
        label = rec.get("name") or f"line {line_no}"
        values = [rec["u"], rec["v"], rec["x"], rec["y"]] + ([rec["z"]] if rec.get("z", "") != "" else [])
        out.append((label, values))
    return _from_rows(out, str(path))


def _read_yaml(path: Path, text: str) -> Correspondences:
    data = parse_yaml(text, path)
    if isinstance(data, dict):
        data = data.get("points")
    if not isinstance(data, list):
        raise StoresenseError(f"{path}: expected a list of points (or a mapping with 'points:')")
    out = []
    for i, item in enumerate(data):
        if isinstance(item, dict):
            unknown = set(item) - {"name", "u", "v", "x", "y", "z"}
            missing = {"u", "v", "x", "y"} - set(item)
            if unknown or missing:
                raise StoresenseError(f"{path}: points[{i}]: "
                                      + (f"unknown keys {sorted(unknown)}" if unknown else f"missing {sorted(missing)}"))
            values = [item["u"], item["v"], item["x"], item["y"]] + ([item["z"]] if "z" in item else [])
            out.append((str(item.get("name", f"points[{i}]")), values))
        elif isinstance(item, list):
            out.append((f"points[{i}]", item))
        else:
            raise StoresenseError(f"{path}: points[{i}]: expected a mapping or [u, v, x, y[, z]], got {item!r}")
    return _from_rows(out, str(path))


def load_points(path: str | Path) -> Correspondences:
    """Read a CSV or YAML correspondence file; errors name the file and the line or point."""
    path = Path(path)
    text = read_text(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(path, text)
    return _read_csv(path, text)


def _collinear(points: np.ndarray) -> bool:
    centred = points - points.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return s[0] < 1e-12 or s[1] < COLLINEAR_RATIO * s[0]


def _all_but_one_collinear(points: np.ndarray) -> bool:
    """True when dropping some single point leaves the rest on one line.

    Then every choice of four points has three on a line, so no homography
    (and no planar pose) can be fitted, although the whole set is not collinear.
    """
    if len(points) <= 3:
        return True
    return any(_collinear(np.delete(points, i, axis=0)) for i in range(len(points)))


def _duplicates(points: np.ndarray, tol: float) -> tuple[int, int] | None:
    d = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    d[np.tril_indices(len(points))] = np.inf
    i, j = np.unravel_index(np.argmin(d), d.shape)
    return (int(i), int(j)) if d[i, j] < tol else None


def check_correspondences(corr: Correspondences, *, planar_required: bool = False) -> None:
    """Raise :class:`StoresenseError` for a set no pose or homography can be fitted to.

    Fewer than four points, two points at the same pixel or the same floor
    position, image or floor points all on one line, and (for a homography)
    points off the floor plane are refused with a message naming the points.
    """
    n = len(corr)
    if n < MIN_POINTS:
        raise StoresenseError(f"{corr.source}: {n} correspondence(s); at least {MIN_POINTS} are needed")
    for pts, tol, what, unit in ((corr.image, DUPLICATE_PX, "image", "px"), (corr.floor, DUPLICATE_M, "floor", "m")):
        dup = _duplicates(pts, tol)
        if dup:
            i, j = dup
            raise StoresenseError(f"{corr.source}: points {corr.labels[i]} and {corr.labels[j]} are the same "
                                  f"{what} point (closer than {tol} {unit}); remove the duplicate")
    floor = corr.floor[:, :2] if corr.planar else corr.floor
    for pts, what, where in ((corr.image, "image", "the image"), (floor, "floor", "the floor")):
        if _collinear(pts):
            raise StoresenseError(f"{corr.source}: the {n} {what} points lie on one line; spread them over {where}")
        if _all_but_one_collinear(pts):
            raise StoresenseError(f"{corr.source}: all but one of the {n} {what} points lie on one line; "
                                  f"at least four points with no three on a line are needed")
    if planar_required and not corr.planar:
        off = [corr.labels[i] for i in np.flatnonzero(np.abs(corr.floor[:, 2]) > 1e-9)]
        raise StoresenseError(f"{corr.source}: a homography maps the floor plane only, but points "
                              f"{', '.join(off[:5])}{' ...' if len(off) > 5 else ''} have z != 0")
