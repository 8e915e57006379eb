"""Video sources: files (good, truncated, corrupt), unreadable paths, dead and dropping streams, image folders."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from storesense.edge.camera.sources import Backoff, ImageFolderSource, LiveSource, VideoFileSource, open_source
from storesense.errors import StoresenseError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mot15"


def _write_video(path: Path, fourcc: str, frames: int = 40, fps: float = 10.0) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (160, 120))
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((120, 160, 3), (i * 5) % 255, np.uint8)
        cv2.putText(img, str(i), (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(img)
    writer.release()
    return path.read_bytes()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_video_file_frames_carry_the_files_own_timestamps(tmp_path):
    path = tmp_path / "clip.avi"
    _write_video(path, "MJPG", frames=20, fps=10.0)
    with open_source(str(path)) as src:
        assert isinstance(src, VideoFileSource) and src.fps == pytest.approx(10.0) and not src.live
        frames = list(src)
    assert [f.index for f in frames] == list(range(20))
    np.testing.assert_allclose([f.ts for f in frames], np.arange(20) / 10.0, atol=1e-6)
    assert src.stats.frames == 20 and src.stats.corrupt == 0 and src.stats.state == "ended"


def test_truncated_video_skips_the_missing_frames_with_a_counted_warning(tmp_path, caplog):
    data = _write_video(tmp_path / "full.avi", "MJPG", frames=40)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])  # cut in the middle of a frame, index lost
    with caplog.at_level(logging.WARNING, logger="storesense.edge.camera.sources"):
        src = open_source(str(cut))
        frames = list(src)  # ends cleanly, no exception
    assert 10 < len(frames) < 40
    assert src.stats.corrupt == 40 - len(frames)
    assert f"skipped {src.stats.corrupt} corrupt or missing frame(s)" in caplog.text and "cut.avi" in caplog.text


def _avi_frame_chunks(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each video frame's data in an AVI: the ``##dc`` chunks of the ``movi`` list."""
    pos, chunks = data.index(b"movi") + 4, []
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"idx1":
            break
        if tag[2:] == b"dc":
            chunks.append((pos + 8, size))
        pos += 8 + size + (size & 1)
    return chunks


def _grey_index(image: np.ndarray) -> float:
    """The frame number _write_video drew into a frame: its background grey level is 5 x the number."""
    return float(image[5, 5, 0]) / 5.0


@pytest.mark.parametrize("damage", ["zeros", "noise"])
def test_a_corrupt_frame_in_the_middle_is_skipped_and_later_frames_keep_their_own_numbers(tmp_path, damage):
    data = bytearray(_write_video(tmp_path / "full.avi", "MJPG", frames=40))
    chunks = _avi_frame_chunks(bytes(data))
    assert len(chunks) == 40
    offset, size = chunks[20]  # damage frame 20's picture, chunk header and index intact
    data[offset:offset + size] = (b"\0" * size if damage == "zeros"
                                  else np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    src = open_source(str(bad))
    frames = list(src)
    assert [f.index for f in frames] == [i for i in range(40) if i != 20]
    assert src.stats.frames == 39 and src.stats.corrupt == 1
    # each frame is the picture its index says (grey levels of neighbours are 5 apart; MJPEG moves them by about 2)
    assert all(abs(_grey_index(f.image) - f.index) < 0.5 for f in frames), \
        [(f.index, _grey_index(f.image)) for f in frames if abs(_grey_index(f.image) - f.index) >= 0.5]
    np.testing.assert_allclose([f.ts for f in frames], [f.index / 10.0 for f in frames], atol=1e-6)


_REAL_CAPTURE = cv2.VideoCapture


class _DroppingCapture:
    """A reader that silently drops frame ``drop`` (as some OpenCV builds do with a damaged frame):
    read() hands over the next frame instead, stamped with that frame's own presentation time."""

    def __init__(self, path: Path, drop: int):
        self._cap, self._drop, self._next = _REAL_CAPTURE(str(path)), drop, 0
        self._ms = 0.0

    def read(self):
        ok, image = self._cap.read()
        self._ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if self._next == self._drop:
            ok, image = self._cap.read()
            self._ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            self._next += 1
        self._next += 1
        return ok, image

    def get(self, prop):
        return self._ms if prop == cv2.CAP_PROP_POS_MSEC else self._cap.get(prop)

    def isOpened(self):
        return self._cap.isOpened()

    def release(self):
        self._cap.release()


def test_a_frame_the_reader_drops_silently_does_not_shift_the_frames_after_it(tmp_path, monkeypatch):
    path = tmp_path / "clip.avi"
    _write_video(path, "MJPG", frames=40)
    monkeypatch.setattr("storesense.edge.camera.sources.cv2.VideoCapture",
                        lambda *a: _DroppingCapture(path, drop=20))
    src = VideoFileSource(path)
    frames = list(src)
    assert [f.index for f in frames] == [i for i in range(40) if i != 20]
    assert all(abs(_grey_index(f.image) - f.index) < 0.5 for f in frames)
    np.testing.assert_allclose([f.ts for f in frames], [f.index / 10.0 for f in frames], atol=1e-6)
    assert src.stats.corrupt == 1 and src.stats.frames == 39  # the drop is counted where it happened


def test_a_damaged_chunk_header_still_ends_cleanly_with_every_loss_counted(tmp_path):
    data = bytearray(_write_video(tmp_path / "full.avi", "MJPG", frames=40))
    mid = len(data) // 2
    data[mid:mid + 2000] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    src = open_source(str(bad))
    frames = list(src)
    assert 30 <= len(frames) < 40 and src.stats.corrupt == 40 - len(frames)
    assert [f.index for f in frames] == sorted({f.index for f in frames})  # increasing, no duplicates


def test_truncated_mp4_whose_index_is_gone_is_one_clear_error(tmp_path):
    data = _write_video(tmp_path / "full.mp4", "mp4v", frames=20)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # mp4v writes its index (moov) at the end
    with pytest.raises(StoresenseError, match=r"cut\.mp4: cannot open as a video"):
        open_source(str(cut))


def test_unreadable_paths_give_one_error_naming_them(tmp_path):
    with pytest.raises(StoresenseError, match=r"nope\.mp4: no such video file, image folder or stream"):
        open_source(str(tmp_path / "nope.mp4"))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    with pytest.raises(StoresenseError, match=r"notes\.mp4: cannot open as a video"):
        open_source(str(text))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoresenseError, match="no images"):
        open_source(str(empty))
    with pytest.raises(StoresenseError, match="unsupported stream scheme"):
        open_source("ftp://user:pw@cam/x")
    with pytest.raises(StoresenseError, match="empty source"):
        open_source("  ")


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_dead_stream_url_is_retried_with_backoff_then_named_in_the_error(scheme):
    url = f"{scheme}://127.0.0.1:{_closed_port()}/stream"
    states, idles, sleeps = [], [], []
    src = open_source(url, timeout_s=1.0, backoff=Backoff(0.2, 2.0, 0.5), max_retries=3,
                      on_state=lambda state, stats: states.append(state), on_idle=lambda: idles.append(1),
                      sleep=sleeps.append)
    assert isinstance(src, LiveSource) and src.live
    t0 = time.monotonic()
    with pytest.raises(StoresenseError, match=rf"{scheme}://127.0.0.1:\d+/stream: cannot open stream "
                                              r"\(gave up after 4 attempts"):
        list(src)
    assert time.monotonic() - t0 < 10
    assert states == ["connecting", "reconnecting", "failed"]
    assert src.stats.open_failures == 4 and idles  # the node got idle callbacks to send heartbeats
    assert sum(sleeps) >= 0.2 + 0.4 + 0.5 - 1e-6  # backoff 0.2, 0.4, then capped at 0.5


def test_password_is_not_shown_in_messages():
    src = LiveSource(f"rtsp://admin:secret@127.0.0.1:{_closed_port()}/x", max_retries=0, sleep=lambda s: None)
    with pytest.raises(StoresenseError) as err:
        list(src)
    assert "secret" not in str(err.value) and "admin:***@" in str(err.value)


class _MjpegHandler(BaseHTTPRequestHandler):
    frames_per_connection = 6

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(self.frames_per_connection):
                jpg = cv2.imencode(".jpg", np.full((120, 160, 3), 30 * i, np.uint8))[1].tobytes()
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                 + jpg + b"\r\n")
                self.wfile.flush()
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up; the connection then drops, as a flaky camera's would


def test_live_stream_that_drops_is_reopened_and_keeps_going():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MjpegHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.mjpg"
        states = []
        src = open_source(url, timeout_s=3.0, backoff=Backoff(0.01, 2.0, 0.05), max_retries=5,
                          on_state=lambda state, stats: states.append(state))
        got = []
        for frame in src:
            got.append(frame)
            if len(got) >= 14:
                src.close()
        assert len(got) == 14 and src.stats.reconnects >= 2
        assert states[:4] == ["connecting", "streaming", "reconnecting", "streaming"] and states[-1] == "closed"
        assert all(f.image.shape == (120, 160, 3) for f in got)
        assert all(b.ts >= a.ts for a, b in zip(got, got[1:]))  # wall clock for live sources
    finally:
        server.shutdown()
        server.server_close()


def test_mot_style_image_folder_uses_seqinfo_frame_rate(tmp_path):
    seq = tmp_path / "SEQ-01"
    (seq / "img1").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text("[Sequence]\nname=SEQ-01\nimDir=img1\nframeRate=5\nseqLength=4\n")
    for i in range(1, 5):
        cv2.imwrite(str(seq / "img1" / f"{i:06d}.jpg"), np.full((48, 64, 3), i * 40, np.uint8))
    (seq / "img1" / "000005.jpg").write_bytes(b"broken jpeg")
    src = open_source(str(seq))
    assert isinstance(src, ImageFolderSource) and src.fps == 5.0
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3] and [f.ts for f in frames] == [0.0, 0.2, 0.4, 0.6]
    assert src.stats.corrupt == 1


def test_mot_sequence_folder_with_a_video_reads_the_video():
    seq = DATA / "TUD-Campus"
    if not (seq / "TUD-Campus.mp4").is_file():
        pytest.skip(f"MOT15 TUD-Campus video not found under {DATA} (shared data absent)")
    with open_source(str(seq)) as src:
        assert isinstance(src, VideoFileSource) and src.fps == pytest.approx(25.0)
        first = [f for _, f in zip(range(3), src)]
    assert first[0].image.shape == (480, 640, 3)
    np.testing.assert_allclose([f.ts for f in first], [0.0, 0.04, 0.08], atol=1e-3)


def test_usb_index_is_live_and_a_missing_camera_is_retried_then_reported():
    src = open_source("7", max_retries=1, sleep=lambda s: None,
                      capture_factory=lambda spec, timeout: cv2.VideoCapture())  # an unopened capture
    assert src.live
    with pytest.raises(StoresenseError, match="7: cannot open stream"):
        list(src)
    assert src.stats.open_failures == 2 and src.stats.state == "failed"
