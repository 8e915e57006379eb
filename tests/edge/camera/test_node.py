"""The camera node loop: frame skipping, messages, heartbeats, reconnects, privacy, ZeroMQ and the CLI.

The per-camera tracker is injected as a trivial stand-in (ids by row order) so
these tests exercise the node, not the tracker; the MoveNet model runs on real
MOT15 frames where the shared data is present.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from storesense.cli import app, main
from storesense.config import example_store_path, load_store_config
from storesense.contracts import HandShelfInteraction, NodeStatus, PersonObservation, decode, encode
from storesense.edge.camera.node import SOURCE_STATES, CameraNode
from storesense.edge.camera.detections import LEFT_ELBOW, LEFT_WRIST, Detections
from storesense.edge.camera.detector import Detector
from storesense.edge.camera.privacy import VideoRecorder, blur_heads, head_boxes
from storesense.edge.camera.sources import Backoff, LiveSource
from storesense.errors import StoresenseError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mot15"


@pytest.fixture(scope="module")
def store():
    return load_store_config(example_store_path())


@pytest.fixture(scope="module")
def cam(store) -> str:
    """A camera of the example store that sees shelf faces."""
    return next(c.id for c in store.cameras if c.shelf_faces)


class StandInTracker:
    """Gives row i the id i + 1 (the real CameraTracker is tested on its own)."""

    def __init__(self):
        self.frames: list[int | None] = []

    def update(self, dets: Detections, frame=None) -> Detections:
        self.frames.append(frame)
        return Detections(dets.xyxy, dets.scores, dets.keypoints, np.arange(1, len(dets) + 1))

    def reset(self) -> None:
        self.frames.clear()


class ScriptedDetector(Detector):
    """One person whose left wrist is inside the camera's first shelf face for frames 3 to 8 (grey level)."""

    name = "scripted"
    input_size = (0, 0)

    def __init__(self, store, camera_id: str, fail_on: set[int] = frozenset()):
        faces = [np.asarray(f.polygon, np.float32) for f in store.camera(camera_id).shelf_faces]
        # a pixel inside the first face and well outside the others (faces may overlap in the image)
        self.inside = next((x, y) for y in range(0, 480, 4) for x in range(0, 640, 4)
                           if cv2.pointPolygonTest(faces[0], (x, y), True) > 8
                           and all(cv2.pointPolygonTest(f, (x, y), True) < -8 for f in faces[1:]))
        self.fail_on = fail_on
        self.calls = 0

    def detect(self, frame: np.ndarray) -> Detections:
        self.calls += 1
        level = int(frame[0, 0, 0]) // 10
        if level in self.fail_on:
            raise RuntimeError("model blew up")
        kp = np.zeros((1, 17, 3))
        kp[0, :, :2] = [630, 470]  # a corner outside every shelf face
        kp[0, :, 2] = 0.9
        kp[0, LEFT_WRIST] = [*self.inside, 0.8] if 3 <= level < 9 else [600, 450, 0.8]
        kp[0, LEFT_ELBOW, 2] = 0.0  # elbow unseen: the hand is the wrist itself
        return Detections(np.array([[280, 150, 360, 470]]), [0.8], kp)


def _video(path: Path, frames: int = 20, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for i in range(frames):
        writer.write(np.full((480, 640, 3), i * 10 + 5, np.uint8))  # the grey level encodes the frame
    writer.release()
    return path


def test_node_emits_observations_interactions_and_status(store, cam, tmp_path):
    msgs = []
    tracker = StandInTracker()
    face = store.camera(cam).shelf_faces[0]
    node = CameraNode(store, cam, emit=msgs.append, detector=ScriptedDetector(store, cam), tracker=tracker,
                      processing_fps=5.0, run_id="t")
    summary = node.run(str(_video(tmp_path / "clip.avi")))
    assert summary.frames_read == 20 and summary.frames_processed == 10  # 10 fps file processed at 5 fps
    assert tracker.frames == list(range(0, 20, 2))  # the tracker is told the source frame numbers
    obs = [m for m in msgs if isinstance(m, PersonObservation)]
    assert len(obs) == 10 and {o.track_id for o in obs} == {1}
    assert [o.frame for o in obs] == list(range(0, 20, 2))
    np.testing.assert_allclose([o.ts for o in obs], np.arange(0, 20, 2) / 10.0, atol=1e-6)
    o = obs[0]
    assert o.camera == cam and o.bbox == (280.0, 150.0, 80.0, 320.0) and len(o.keypoints) == 17
    assert o.floor is not None and 0 < o.floor.x < 12 and 0 < o.floor.y < 8
    hands = [m for m in msgs if isinstance(m, HandShelfInteraction)]
    assert [(h.phase, h.face, h.shelf, h.hand) for h in hands] == [("enter", face.id, face.shelf, "left"),
                                                                   ("exit", face.id, face.shelf, "left")]
    assert hands[0].ts == pytest.approx(0.4) and hands[1].ts == pytest.approx(1.0)
    assert hands[1].dwell_s == pytest.approx(0.6) and hands[1].keypoint_score == pytest.approx(0.8)
    statuses = [m for m in msgs if isinstance(m, NodeStatus)]
    assert statuses[0].state == "online" and statuses[-1].state == "offline" and msgs[-1] is statuses[-1]
    final = statuses[-1].counters
    assert final["frames_read"] == 20 and final["frames_processed"] == 10 and final["frames_skipped"] == 10
    assert final["observations"] == 10 and final["interactions"] == 2
    assert final["source_state"] == SOURCE_STATES["ended"]
    for m in msgs:  # every message is a valid contract message, and carries no pixels
        assert decode(encode(m)) == m
        assert len(encode(m)) < 4000
    assert [m.seq for m in msgs] == list(range(1, len(msgs) + 1))


def test_a_failing_detector_frame_is_counted_and_the_node_goes_on(store, cam, tmp_path, caplog):
    msgs = []
    node = CameraNode(store, cam, emit=msgs.append, detector=ScriptedDetector(store, cam, fail_on={1, 2}),
                      tracker=StandInTracker(), processing_fps=0)
    summary = node.run(str(_video(tmp_path / "clip.avi", frames=6)))
    assert summary.frames_processed == 6 and summary.counters["detector_errors"] == 2
    assert sum(isinstance(m, PersonObservation) for m in msgs) == 4
    assert "detector failed on frame 1" in caplog.text


def test_unknown_camera_is_a_clear_error(store, cam):
    with pytest.raises(StoresenseError, match="no camera 'cam99'.*cam1, cam2"):
        CameraNode(store, "cam99", detector=ScriptedDetector(store, cam), tracker=StandInTracker())


class _FakeCapture:
    def __init__(self, frames):
        self.frames = list(frames)

    def isOpened(self):
        return True

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def get(self, prop):
        return 0.0

    def release(self):
        pass


def test_live_stream_drop_keeps_heartbeats_going_and_reports_the_state(store, cam):
    frame = np.full((480, 640, 3), 45, np.uint8)
    opens = iter([_FakeCapture([frame] * 3), cv2.VideoCapture(), _FakeCapture([frame] * 2)])
    factory = lambda spec, timeout: next(opens, cv2.VideoCapture())  # noqa: E731 - then it stays down
    msgs = []
    src = LiveSource("rtsp://cam1.local/stream1", backoff=Backoff(0.01, 1.0, 0.01), max_retries=2,
                     sleep=lambda s: None, capture_factory=factory)
    node = CameraNode(store, cam, emit=msgs.append, detector=ScriptedDetector(store, cam),
                      tracker=StandInTracker(), processing_fps=0, status_interval_s=0.0)
    with pytest.raises(StoresenseError, match="rtsp://cam1.local/stream1: cannot open stream"):
        node.run(src)
    assert sum(isinstance(m, PersonObservation) for m in msgs) == 5  # frames before and after the drop
    statuses = [m for m in msgs if isinstance(m, NodeStatus)]
    states = [s.counters.get("source_state") for s in statuses]
    assert SOURCE_STATES["reconnecting"] in states and statuses[-1].state == "offline"
    assert statuses[-1].counters["source_reconnects"] == 2  # dropped after 3 frames, and after the last 2
    assert statuses[-1].counters["source_state"] == SOURCE_STATES["failed"]


def test_head_blur_hides_faces_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    kp = np.zeros((2, 17, 3))
    kp[0, 0:5] = [[100, 60, 0.9], [95, 55, 0.9], [105, 55, 0.9], [90, 58, 0.8], [110, 58, 0.8]]
    dets = Detections(np.array([[70, 40, 130, 200], [200, 50, 260, 230]]), [0.9, 0.8], kp)
    heads = head_boxes(dets, frame.shape)
    assert heads[0, 0] < 90 < 110 < heads[0, 2] and heads[0, 1] < 55 < 60 < heads[0, 3]  # around the face points
    assert heads[1, 1] <= 50 < heads[1, 3] < 140  # no face keypoints: the top of the box
    out = blur_heads(frame, dets)
    for x1, y1, x2, y2 in heads.astype(int):
        assert out[y1:y2, x1:x2].std() < 0.5 * frame[y1:y2, x1:x2].std()  # detail gone
    mask = np.ones(frame.shape[:2], bool)
    for x1, y1, x2, y2 in heads.astype(int):
        mask[y1:y2, x1:x2] = False
    assert (out[mask] == frame[mask]).all()


def test_local_recording_blurs_heads_by_default(tmp_path):
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    dets = Detections(np.array([[100, 40, 160, 220]]), [0.9])
    path = tmp_path / "rec.avi"
    rec = VideoRecorder(path, 10.0)
    for _ in range(3):
        rec.write(frame, dets)
    rec.close()
    cap = cv2.VideoCapture(str(path))
    ok, back = cap.read()
    cap.release()
    assert ok and rec.frames == 3
    x1, y1, x2, y2 = head_boxes(dets, frame.shape)[0].astype(int)
    assert back[y1:y2, x1:x2].astype(float).std() < 0.5 * frame[y1:y2, x1:x2].std()
    with pytest.raises(StoresenseError, match="cannot write a video"):
        VideoRecorder(tmp_path / "no" / "such" / "\0bad.avi", 10.0).write(frame, dets)


def _tud_video() -> Path:
    video = DATA / "TUD-Campus" / "TUD-Campus.mp4"
    if not video.is_file():
        pytest.skip(f"MOT15 TUD-Campus video not found under {DATA} (shared data absent)")
    return video


def test_real_video_through_the_node_and_zeromq(store):
    from storesense.transport import ZmqPublisher, ZmqSubscriber

    video = _tud_video()
    sub = ZmqSubscriber("tcp://127.0.0.1:*", bind=True)
    pub = ZmqPublisher(sub.endpoint, store=store.store.id)
    received: list = []
    done = threading.Event()

    def receive():
        while not done.is_set() or len(received) < expected[0]:
            msg = sub.recv(0.2)
            if msg is not None:
                received.append(msg)
            elif done.is_set():
                break

    expected = [10 ** 9]
    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        assert pub.wait_for_subscriber(5.0)
        sent = []

        def emit(msg):
            sent.append(msg)
            pub.publish(msg)

        node = CameraNode(store, "cam1", emit=emit, tracker=StandInTracker(), processing_fps=0, run_id="z")
        summary = node.run(str(video), max_frames=4)
        expected[0] = len(sent)
        done.set()
        thread.join(10)
    finally:
        pub.close()
        sub.close()
    assert summary.frames_processed == 4
    obs = [m for m in sent if isinstance(m, PersonObservation)]
    assert len(obs) >= 8  # TUD-Campus shows 3+ people from the first frame on
    assert all(o.keypoints is not None and len(o.keypoints) == 17 and o.floor is not None for o in obs)
    assert {m.event_id for m in received} == {m.event_id for m in sent}


@pytest.mark.skipif(importlib.util.find_spec("storesense.edge.camera.tracker") is None,
                    reason="the per-camera tracker (edge/tracker.py) has not landed yet")
def test_cli_replays_a_video_and_writes_debug_video_and_recording(tmp_path):
    video = _tud_video()
    out, debug = tmp_path / "cam1.jsonl", tmp_path / "debug.mp4"
    result = CliRunner().invoke(app, ["edge", "camera", "--camera", "cam1", "--source", str(video),
                                      "--max-frames", "6", "--fps", "0", "--debug-video", str(debug),
                                      "--output", str(out), "--to", "tcp://127.0.0.1:1"])
    assert result.exit_code == 0, result.output
    assert "6 of 6 frames processed" in result.output
    lines = out.read_text().splitlines()
    assert any('"person_observation"' in line for line in lines) and '"offline"' in lines[-1]
    cap = cv2.VideoCapture(str(debug))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 6
    cap.release()


def test_cli_bad_source_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["storesense", "edge", "camera", "--camera", "cam1",
                                      "--source", str(tmp_path / "x.mp4")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "error:" in err and "x.mp4: no such video file" in err and "Traceback" not in err


def test_the_node_hands_a_tracking_detector_its_live_tracks_with_ids_and_misses(store, cam, tmp_path):
    from storesense.edge.camera.tracker import CameraTracker

    class Noting(ScriptedDetector):
        def __init__(self, *a):
            super().__init__(*a)
            self.noted = []

        def note_tracks(self, boxes, ids=None, misses=None):
            self.noted.append((np.array(boxes), ids, misses))

    det = Noting(store, cam)
    node = CameraNode(store, cam, emit=lambda m: None, detector=det, tracker=CameraTracker(min_hits=1),
                      processing_fps=0, run_id="t")
    node.run(str(_video(tmp_path / "clip.avi", frames=4)))
    assert len(det.noted) == 4
    for boxes, ids, misses in det.noted:  # one person, the same track all along, matched every frame
        np.testing.assert_allclose(boxes, [[280, 150, 360, 470]], atol=1e-6)
        assert ids.tolist() == [1] and misses.tolist() == [0]
