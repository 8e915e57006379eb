"""Video sources for the camera node: files, live streams, USB cameras and image folders.

:func:`open_source` picks the right one for a spec string and returns a
:class:`FrameSource`, an iterable of :class:`Frame` (index, timestamp, BGR image):

* a video file - frame indices and timestamps are the recording's own (the
  container's presentation time, ``CAP_PROP_POS_MSEC``; frame index / fps when
  the container has none), so a frame the reader drops does not shift the ones
  after it; corrupt or truncated frames are skipped and counted (one warning
  at the end), and the file ends cleanly;
* an RTSP / HTTP(S) / RTMP / UDP URL or a USB camera (``"0"``, ``/dev/video0``) -
  live, wall-clock timestamps; a stream that cannot be opened or drops is
  reopened with exponential backoff, the source reporting its state through an
  ``on_state`` callback and calling ``on_idle`` while it waits, so the node keeps
  sending heartbeats; after ``max_retries`` failed attempts in a row (default:
  never give up) it raises :class:`~storesense.errors.StoresenseError`;
* a MOTChallenge sequence folder (``img1/`` + ``seqinfo.ini``, or a video
  beside ``seqinfo.ini``) or any folder of images - timestamps from
  ``frameRate`` in ``seqinfo.ini`` (or the ``fps`` given).

A source that cannot be read at all raises one StoresenseError naming it.
"""

from __future__ import annotations

import configparser
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...errors import StoresenseError

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mjpeg", ".mjpg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Consecutive failed reads after which a video file is taken to have ended.
MAX_CONSECUTIVE_FILE_FAILURES = 50


@dataclass
class Frame:
    """One frame: its index in the source, its timestamp in seconds and the BGR image."""

    index: int
    ts: float
    image: np.ndarray


@dataclass
class SourceStats:
    """Counters a source keeps; the camera node publishes them in its NodeStatus."""

    frames: int = 0
    corrupt: int = 0
    reconnects: int = 0
    open_failures: int = 0
    state: str = "starting"

    def counters(self) -> dict[str, int]:
        """The integer counters by name, prefixed ``source_``."""
        return {"source_frames": self.frames, "source_corrupt": self.corrupt,
                "source_reconnects": self.reconnects, "source_open_failures": self.open_failures}


@dataclass
class Backoff:
    """Exponential backoff between reconnect attempts: initial, ×factor each time, capped at maximum."""

    initial_s: float = 0.5
    factor: float = 2.0
    maximum_s: float = 30.0
    _attempt: int = field(default=0, repr=False)

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt."""
        delay = min(self.maximum_s, self.initial_s * self.factor ** self._attempt)
        self._attempt += 1
        return delay

    def reset(self) -> None:
        """Back to the initial delay (after a successful open)."""
        self._attempt = 0


class FrameSource(ABC):
    """An iterable of :class:`Frame` with a name, a frame rate, counters and a state."""

    #: Human-readable name of the source (path or URL) used in messages.
    name: str = ""
    #: True for live streams and cameras (wall-clock timestamps, reconnects).
    live: bool = False
    #: Nominal frames per second (0 when unknown).
    fps: float = 0.0

    def __init__(self) -> None:
        self.stats = SourceStats()

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield frames until the source ends (files) or is closed (live)."""

    def close(self) -> None:
        """Release the underlying capture."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- files


class VideoFileSource(FrameSource):
    """A recorded video file read with OpenCV, with the file's own timestamps."""

    def __init__(self, path: str | Path, fps: float | None = None):
        super().__init__()
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise StoresenseError(f"{self.path}: no such video file")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise StoresenseError(f"{self.path}: cannot open as a video (not a video file, truncated header "
                                  "or unsupported codec)")
        container_fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (container_fps if 0 < container_fps < 1000 else 0.0) or 25.0)
        self.expected_frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise StoresenseError(f"{self.path}: contains no readable video frame")
        self._first = first
        self._first_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)

    def __iter__(self) -> Iterator[Frame]:
        self.stats.state = "streaming"
        last_index, last_ts, failures = -1, -math.inf, 0
        pending: tuple[np.ndarray, float] | None = (self._first, self._first_ms)
        reached_end = False
        try:
            while True:
                if pending is not None:
                    image, pos_ms = pending
                    pending = None
                else:
                    ok, image = self._cap.read()
                    pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                    if not ok or image is None:
                        if self._past_end(last_index + 1 + failures, failures):
                            reached_end = True
                            break
                        failures += 1
                        continue
                index, ts = self._position(pos_ms, last_index, last_ts, failures)
                self.stats.corrupt += index - last_index - 1  # frames the reader failed on or dropped silently
                failures = 0
                last_index, last_ts = index, ts
                self.stats.frames += 1
                yield Frame(index, ts, image)
        finally:
            self.stats.state = "ended"
            self._report(reached_end)

    def _past_end(self, index: int, failures: int) -> bool:
        """Whether a failed read means the end: past the container's frame count, or too many in a row."""
        if self.expected_frames and index >= self.expected_frames:
            return True
        if not self.expected_frames:
            return True
        return failures >= MAX_CONSECUTIVE_FILE_FAILURES

    def _position(self, pos_ms: float, last_index: int, last_ts: float, failures: int) -> tuple[int, float]:
        """The frame's index and timestamp from the container's own clock, not from a count of reads.

        A reader that drops a damaged frame, with or without reporting a failed
        read, still stamps the next frame with its presentation time; the index is
        that time x fps. Containers without timing (position 0 or going
        backwards) fall back to the previous index + 1 + the failed reads since.
        """
        counted = last_index + 1 + failures
        if math.isfinite(pos_ms) and (pos_ms > 0 or last_index < 0):
            first_ms = self._first_ms if math.isfinite(self._first_ms) and self._first_ms > 0 else 0.0
            index = round((pos_ms - first_ms) / 1000.0 * self.fps)
            ts = pos_ms / 1000.0
            if index > last_index and ts > last_ts and abs(ts - counted / self.fps) <= 60.0:
                return index, ts
        ts = max(counted / self.fps, last_ts + 1e-6)
        return counted, ts

    def _report(self, reached_end: bool) -> None:
        if reached_end:  # frames the container announces but that never came (a truncated file) count too
            self.stats.corrupt += max(0, self.expected_frames - self.stats.frames - self.stats.corrupt)
        if self.stats.corrupt:
            log.warning("%s: skipped %d corrupt or missing frame(s); read %d of the %d frames the container "
                        "announces", self.name, self.stats.corrupt, self.stats.frames, self.expected_frames)

    def close(self) -> None:
        """Release the capture."""
        self._cap.release()


def read_seqinfo(folder: Path) -> dict[str, str]:
    """The ``[Sequence]`` section of a MOTChallenge ``seqinfo.ini`` (empty when absent)."""
    ini = Path(folder) / "seqinfo.ini"
    if not ini.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
    except configparser.Error as exc:
        raise StoresenseError(f"{ini}: invalid seqinfo.ini: {exc}") from None
    return dict(parser["Sequence"]) if parser.has_section("Sequence") else {}


class ImageFolderSource(FrameSource):
    """A folder of images in name order (MOTChallenge ``img1/``); frame index from the file number."""

    def __init__(self, folder: str | Path, fps: float | None = None):
        super().__init__()
        self.folder = Path(folder)
        self.name = str(self.folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise StoresenseError(f"{self.folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        info = read_seqinfo(self.folder.parent) or read_seqinfo(self.folder)
        self.fps = float(fps or _float(info.get("framerate")) or 25.0)

    def __iter__(self) -> Iterator[Frame]:
        self.stats.state = "streaming"
        try:
            for i, path in enumerate(self.files):
                number = re.findall(r"\d+", path.stem)
                index = int(number[-1]) - 1 if number else i  # MOT images are numbered from 1
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    self.stats.corrupt += 1
                    continue
                self.stats.frames += 1
                yield Frame(index, index / self.fps, image)
        finally:
            self.stats.state = "ended"
            if self.stats.corrupt:
                log.warning("%s: skipped %d unreadable image(s) of %d", self.name, self.stats.corrupt, len(self.files))


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- live


def _open_capture(spec: str, timeout_s: float):
    """Open a live capture: a USB index, a device path or a URL (FFmpeg with open/read timeouts)."""
    if spec.isdigit():
        return cv2.VideoCapture(int(spec))
    if spec.startswith("/dev/"):
        return cv2.VideoCapture(spec)
    ms = int(timeout_s * 1000)
    return cv2.VideoCapture(spec, cv2.CAP_FFMPEG,
                            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])


class LiveSource(FrameSource):
    """A live stream (RTSP/HTTP/...) or USB camera, reopened with backoff when it fails or drops.

    ``on_state(state, stats)`` is called on every state change (``connecting``,
    ``streaming``, ``reconnecting``, ``failed``, ``closed``); ``on_idle()`` is
    called about once a second while waiting to reconnect. ``max_retries``
    failed attempts in a row raise StoresenseError naming the stream (None:
    retry forever). ``sleep``, ``clock`` and ``capture_factory(spec, timeout_s)``
    are injectable for tests.
    """

    live = True

    def __init__(self, spec: str, *, timeout_s: float = 5.0, backoff: Backoff | None = None,
                 max_retries: int | None = None, on_state: Callable[[str, SourceStats], None] | None = None,
                 on_idle: Callable[[], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, capture_factory=_open_capture):
        super().__init__()
        self.spec = spec
        self.name = _redact(spec)
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        self.max_retries = max_retries
        self.on_state = on_state
        self.on_idle = on_idle
        self._sleep, self._clock, self._factory = sleep, clock, capture_factory
        self._cap = None
        self._closed = False

    def _set_state(self, state: str) -> None:
        if state != self.stats.state:
            self.stats.state = state
            if self.on_state is not None:
                self.on_state(state, self.stats)

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` in steps of at most 1 s, calling ``on_idle`` between them."""
        left = seconds
        while not self._closed:
            if self.on_idle is not None:
                self.on_idle()
            if left <= 0:
                break
            step = min(1.0, left)
            self._sleep(step)
            left -= step

    def _connect(self) -> bool:
        """Open the capture, retrying with backoff; False when closed meanwhile."""
        failures = 0
        while not self._closed:
            cap = self._factory(self.spec, self.timeout_s)
            if cap is not None and cap.isOpened():
                self._cap = cap
                fps = cap.get(cv2.CAP_PROP_FPS)
                self.fps = float(fps) if fps and 0 < fps < 1000 else self.fps
                self.backoff.reset()
                self._set_state("streaming")
                return True
            if cap is not None:
                cap.release()
            failures += 1
            self.stats.open_failures += 1
            if self.max_retries is not None and failures > self.max_retries:
                self._set_state("failed")
                raise StoresenseError(f"{self.name}: cannot open stream (gave up after {failures} attempts; "
                                      "is the camera reachable and the URL right?)")
            delay = self.backoff.next_delay()
            log.warning("%s: cannot open stream (attempt %d); retrying in %.1f s", self.name, failures, delay)
            self._set_state("reconnecting")
            self._wait(delay)
        return False

    def __iter__(self) -> Iterator[Frame]:
        self._set_state("connecting")
        index = 0
        try:
            while not self._closed:
                if self._cap is None and not self._connect():
                    break
                ok, image = self._cap.read()
                if not ok or image is None:
                    log.warning("%s: stream dropped after frame %d; reconnecting", self.name, index)
                    self._cap.release()
                    self._cap = None
                    self.stats.reconnects += 1
                    self._set_state("reconnecting")
                    continue
                self.stats.frames += 1
                yield Frame(index, self._clock(), image)
                index += 1
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            if self.stats.state != "failed":
                self._set_state("closed")

    def close(self) -> None:
        """Stop: the iterator ends at its next step and the capture is released."""
        self._closed = True


def _redact(url: str) -> str:
    """The URL without a password (rtsp://user:secret@host -> rtsp://user:***@host)."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


# --------------------------------------------------------------------------- choosing


def is_live(spec: str) -> bool:
    """True for a stream URL, a USB camera index or a video device path."""
    return spec.isdigit() or spec.startswith("/dev/video") or spec.lower().startswith(STREAM_SCHEMES)


def open_source(spec: str | Path, *, fps: float | None = None, **live_options) -> FrameSource:
    """Open the source ``spec`` names: a URL or USB index (live), a video file, a MOT sequence or image folder.

    ``fps`` overrides the nominal frame rate of a recording (used for timestamps
    when the file has none); ``live_options`` go to :class:`LiveSource`. Raises
    StoresenseError naming ``spec`` when it is not there or cannot be read.
    """
    text = str(spec).strip()
    if not text:
        raise StoresenseError("no video source given (empty source)")
    if is_live(text):
        return LiveSource(text, **live_options)
    if "://" in text:
        raise StoresenseError(f"{_redact(text)}: unsupported stream scheme "
                              f"(expected one of {', '.join(s[:-3] for s in STREAM_SCHEMES)})")
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "img1").is_dir():
            return ImageFolderSource(path / "img1", fps)
        info = read_seqinfo(path)
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if videos:
            named = [v for v in videos if v.stem == info.get("name", path.name)]
            return VideoFileSource((named or videos)[0], fps or _float(info.get("framerate")))
        return ImageFolderSource(path, fps)
    if path.is_file():
        return VideoFileSource(path, fps)
    raise StoresenseError(f"{path}: no such video file, image folder or stream")
