"""MOTChallenge sequence folders: ``seqinfo.ini``, ``gt/gt.txt``, ``det/det.txt``, frames, results.

A sequence folder as distributed by motchallenge.net::

    ADL-Rundle-6/
        seqinfo.ini        [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
        gt/gt.txt          frame, id, x, y, w, h, conf (0 = ignore), class/world..., ...
        det/det.txt        frame, -1, x, y, w, h, score, -1, -1, -1
        img1/000001.jpg    the frames (or, in our shared data, one video file in the folder)

Rows are kept as float64 arrays of 6+ columns (frame and id are whole numbers);
:func:`detections_per_frame` turns them into one :class:`~storesense.edge.camera.detections.Detections`
per frame, and :func:`write_results` writes a tracker's output in the same text format,
which TrackEval and the MOTChallenge server read.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ...edge.camera.detections import Detections
from ...errors import StoresenseError

#: Video file suffixes looked for in a sequence folder when it has no image folder.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class MotFormatError(StoresenseError):
    """A MOTChallenge file or folder is missing or malformed."""


@dataclass(frozen=True)
class MotSequence:
    """One MOTChallenge sequence folder and the facts of its ``seqinfo.ini``."""

    path: Path
    name: str
    frame_rate: float
    length: int
    width: int
    height: int
    image_dir: str = "img1"
    image_ext: str = ".jpg"

    @property
    def gt_path(self) -> Path:
        """``gt/gt.txt`` of the sequence."""
        return self.path / "gt" / "gt.txt"

    @property
    def det_path(self) -> Path:
        """``det/det.txt`` (the public detections) of the sequence."""
        return self.path / "det" / "det.txt"

    def ground_truth(self) -> np.ndarray:
        """The ground-truth rows (N×≥7), frames outside 1..length rejected."""
        return load_mot_rows(self.gt_path, min_columns=7, length=self.length)

    def public_detections(self) -> np.ndarray:
        """The public detection rows (N×≥7)."""
        return load_mot_rows(self.det_path, min_columns=7, length=self.length)

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_number, bgr_image)`` from ``img1/`` or else a video file in the folder."""
        return iter_frames(self)


def read_sequence(path: str | Path) -> MotSequence:
    """Read a sequence folder's ``seqinfo.ini``; raises :class:`MotFormatError` naming the file."""
    folder = Path(path)
    if not folder.is_dir():
        raise MotFormatError(f"{folder}: not a MOTChallenge sequence folder (no such directory)")
    ini = folder / "seqinfo.ini"
    if not ini.is_file():
        raise MotFormatError(f"{ini}: missing (a MOTChallenge sequence folder needs seqinfo.ini)")
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
        section = parser["Sequence"]
    except (configparser.Error, KeyError, UnicodeDecodeError) as exc:
        raise MotFormatError(f"{ini}: no readable [Sequence] section ({exc})") from None

    def field(key: str, kind, default=None):
        if key not in section:
            if default is not None:
                return default
            raise MotFormatError(f"{ini}: Sequence.{key}: missing")
        try:
            value = kind(section[key])
        except ValueError:
            raise MotFormatError(f"{ini}: Sequence.{key}: expected {kind.__name__}, got {section[key]!r}") from None
        if kind in (int, float) and value <= 0:
            raise MotFormatError(f"{ini}: Sequence.{key}: must be positive, got {value}")
        return value

    return MotSequence(
        path=folder, name=field("name", str, folder.name), frame_rate=field("frameRate", float),
        length=field("seqLength", int), width=field("imWidth", int), height=field("imHeight", int),
        image_dir=field("imDir", str, "img1"), image_ext=field("imExt", str, ".jpg"),
    )


def load_mot_rows(path: str | Path, *, min_columns: int = 6, length: int | None = None) -> np.ndarray:
    """Load a MOTChallenge text file (comma- or whitespace-separated) as an N×C float array.

    Raises :class:`MotFormatError` naming the file and line when a row is short,
    not numeric, or (when ``length`` is given) outside frames 1..length.
    """
    path = Path(path)
    if not path.is_file():
        raise MotFormatError(f"{path}: missing")
    rows: list[list[float]] = []
    width = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.replace(",", " ").split()
            try:
                values = [float(p) for p in parts]
            except ValueError:
                raise MotFormatError(f"{path}:{lineno}: not numbers: {line[:60]!r}") from None
            if len(values) < min_columns:
                raise MotFormatError(f"{path}:{lineno}: {len(values)} columns, expected at least {min_columns}")
            width = len(values) if width is None else width
            if len(values) != width:
                values = (values + [-1.0] * width)[:width]
            frame = values[0]
            if frame != int(frame) or frame < 1 or (length is not None and frame > length):
                limit = f"1..{length}" if length is not None else ">= 1"
                raise MotFormatError(f"{path}:{lineno}: frame {frame:g} outside {limit}")
            rows.append(values)
    if not rows:
        return np.zeros((0, max(min_columns, 10)))
    return np.asarray(rows, dtype=np.float64)


def rows_per_frame(rows: np.ndarray, length: int) -> list[np.ndarray]:
    """Split rows by frame: element ``t`` holds the rows of frame ``t + 1`` (possibly none)."""
    rows = np.asarray(rows, dtype=np.float64)
    out = [rows[:0] for _ in range(length)]
    if len(rows) == 0:
        return out
    frames = rows[:, 0].astype(np.int64)
    order = np.argsort(frames, kind="stable")
    frames, rows = frames[order], rows[order]
    starts = np.searchsorted(frames, np.arange(1, length + 2))
    for t in range(length):
        out[t] = rows[starts[t]:starts[t + 1]]
    return out


def detections_per_frame(rows: np.ndarray, length: int) -> list[Detections]:
    """One :class:`Detections` per frame (``[t]`` is frame ``t + 1``) from ``det.txt`` rows."""
    return [Detections.from_mot(r) for r in rows_per_frame(rows, length)]


def tracks_to_rows(per_frame: Iterable[tuple[int, Detections]]) -> np.ndarray:
    """MOTChallenge result rows (frame, id, x, y, w, h, score, -1, -1, -1) from tracked detections."""
    chunks = []
    for frame, dets in per_frame:
        keep = dets.track_id >= 0
        if not keep.any():
            continue
        n = int(keep.sum())
        chunks.append(np.c_[np.full(n, frame), dets.track_id[keep], dets.xywh[keep], dets.scores[keep],
                            -np.ones((n, 3))])
    return np.concatenate(chunks) if chunks else np.zeros((0, 10))


def write_results(path: str | Path, rows: np.ndarray) -> Path:
    """Write result rows in the MOTChallenge text format (the one TrackEval reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in np.asarray(rows).reshape(-1, 10):
            fh.write(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{r[6]:.4f},-1,-1,-1\n")
    return path


def iter_frames(seq: MotSequence) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_number, bgr_image)`` for the sequence.

    Reads ``<imDir>/000001<imExt>``... when that folder exists, else the one video
    file in the sequence folder. Raises :class:`MotFormatError` when there are no frames.
    """
    import cv2

    image_dir = seq.path / seq.image_dir
    if image_dir.is_dir():
        for frame in range(1, seq.length + 1):
            file = image_dir / f"{frame:06d}{seq.image_ext}"
            image = cv2.imread(str(file))
            if image is None:
                raise MotFormatError(f"{file}: missing or unreadable frame")
            yield frame, image
        return
    videos = sorted(p for p in seq.path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise MotFormatError(f"{seq.path}: no {seq.image_dir}/ folder and no video file: the model needs frames")
    capture = cv2.VideoCapture(str(videos[0]))
    if not capture.isOpened():
        raise MotFormatError(f"{videos[0]}: cannot open video")
    try:
        frame = 0
        while frame < seq.length:
            ok, image = capture.read()
            if not ok:
                break
            frame += 1
            yield frame, image
    finally:
        capture.release()
    if frame == 0:
        raise MotFormatError(f"{videos[0]}: no readable frames")
