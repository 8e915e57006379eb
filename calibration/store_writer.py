"""Write a camera's calibration into the store YAML, keeping the rest of the file as it was.

The file is edited with ruamel.yaml's round-trip mode, so comments, key order
and flow-style lists elsewhere survive; only the camera's calibration keys
change. The edited text is validated with
:func:`storesense.config.load_store_config` before it replaces the original,
so a write never leaves an invalid store file behind.

A pose (``extrinsics``) replaces a ``mount`` and drops a stale ``homography``;
a ``homography`` drops ``extrinsics`` and ``mount`` (otherwise the camera's
two mappings would disagree). What was removed is returned so the CLI can say so.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter

from ..config import Extrinsics, Intrinsics, StoreConfig, load_store_config
from ..errors import ConfigError, StoresenseError


def _flow_list(values) -> CommentedSeq:
    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def _flow_map(items: dict) -> CommentedMap:
    m = CommentedMap(items)
    m.fa.set_flow_style()
    return m


def _round(values, digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


class _Representer(RoundTripRepresenter):
    """Round-trip representer that writes ``null`` as ``null`` (ruamel's default leaves it empty)."""


_Representer.add_representer(type(None), lambda r, _data: r.represent_scalar("tag:yaml.org,2002:null", "null"))


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.Representer = _Representer
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _set_key(cam: CommentedMap, key: str, value, after: tuple[str, ...]) -> None:
    """Set ``cam[key]``; a new key goes right after the last of ``after`` that is present."""
    if key in cam:
        cam[key] = value
        return
    keys = list(cam.keys())
    pos = max((keys.index(k) + 1 for k in after if k in keys), default=len(keys))
    cam.insert(pos, key, value)


def write_camera_calibration(config_path: str | Path, camera_id: str, *, intrinsics: Intrinsics | None = None,
                             extrinsics: Extrinsics | None = None,
                             homography: list[list[float]] | None = None) -> tuple[StoreConfig, list[str]]:
    """Write a camera's intrinsics and pose or homography into the store file.

    Returns the re-validated config and the keys that were removed from the
    camera. Raises :class:`ConfigError` when the file or camera is missing or
    the result would not be a valid store config (the original is then untouched).
    """
    if extrinsics is not None and homography is not None:
        raise StoresenseError("write either a pose (extrinsics) or a homography, not both")
    path = Path(config_path)
    load_store_config(path)  # the file must be valid before we touch it
    y = _yaml()
    try:
        data = y.load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # ruamel raises many types; the file parsed as YAML above, so this is rare
        raise ConfigError(f"{path}: cannot edit: {exc}") from None
    cameras = data.get("cameras") or []
    cam = next((c for c in cameras if isinstance(c, dict) and c.get("id") == camera_id), None)
    if cam is None:
        known = [c.get("id") for c in cameras if isinstance(c, dict)]
        raise ConfigError(f"{path}: cameras: no camera {camera_id!r} (cameras: {', '.join(map(str, known)) or 'none'})")
    removed: list[str] = []
    if intrinsics is not None:
        _set_key(cam, "intrinsics", _flow_map({
            "fx": round(intrinsics.fx, 4), "fy": round(intrinsics.fy, 4), "cx": round(intrinsics.cx, 4),
            "cy": round(intrinsics.cy, 4), "dist": _flow_list(_round(intrinsics.dist, 8))}), ("fps", "resolution"))
    if extrinsics is not None:
        for key in ("mount", "homography"):
            if key in cam:
                del cam[key]
                removed.append(key)
        _set_key(cam, "extrinsics", _flow_map({"rvec": _flow_list(_round(extrinsics.rvec, 8)),
                                               "tvec": _flow_list(_round(extrinsics.tvec, 6))}),
                 ("intrinsics", "fps", "resolution"))
    if homography is not None:
        for key in ("extrinsics", "mount"):
            if key in cam:
                del cam[key]
                removed.append(key)
        rows = CommentedSeq([_flow_list([float(f"{v:.10g}") for v in row]) for row in homography])
        rows.fa.set_flow_style()
        _set_key(cam, "homography", rows, ("intrinsics", "fps", "resolution"))
    buf = io.StringIO()
    y.dump(data, buf)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(buf.getvalue())
        try:
            cfg = load_store_config(tmp)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(tmp, str(path)) + " (file left unchanged)") from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return cfg, removed
