"""The camera node: video source -> detector -> tracker -> floor projection -> hand-shelf events -> publish.

One :class:`CameraNode` serves one configured camera. For each frame it is due
to process (frames are skipped down to the camera's configured ``fps``) it

1. runs the detector (MoveNet MultiPose by default; see :mod:`.detector`),
2. gives the people to the per-camera tracker (:class:`~storesense.edge.camera.tracker.CameraTracker`),
3. projects each tracked person's foot point to the floor (:mod:`.projection`),
4. turns wrists in shelf faces into enter/exit events (:mod:`.interactions`),
5. emits a ``PersonObservation`` per tracked person and a ``HandShelfInteraction``
   per event, and every ``status_interval_s`` a ``NodeStatus`` heartbeat with its counters.

Frames never leave the node: only those messages do. Optional local videos
(:class:`~storesense.edge.camera.privacy.VideoRecorder`: a plain recording and/or a
debug video with boxes, skeletons, ids and shelf faces) blur heads by default.
A frame the detector fails on is counted and skipped; a live source that drops
is reopened while heartbeats keep going (state ``reconnecting`` in the counters).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ...config import StoreConfig
from ...contracts import Envelope, HandShelfInteraction, Keypoint, NodeStatus, PersonObservation, Stamper
from ...errors import StoresenseError
from .appearance import describe_person
from .detections import Detections
from .detector import Detector
from .detectors import load_detector
from .interactions import HandShelfMonitor
from .projection import FloorProjector
from .tiling import build_detector
from .sources import Frame, FrameSource, LiveSource, SourceStats, open_source

log = logging.getLogger(__name__)

#: Source states reported as a numeric counter in NodeStatus (counters are ints).
SOURCE_STATES = {"starting": 0, "connecting": 1, "streaming": 2, "reconnecting": 3, "failed": 4,
                 "closed": 5, "ended": 6}


class Tracker(Protocol):
    """What the node needs of a per-camera tracker (``CameraTracker`` is one)."""

    def update(self, dets: Detections, frame: int | None = None) -> Detections:
        """Detections of this frame on confirmed tracks, ``track_id`` filled."""

    def reset(self) -> None:
        """Forget all tracks."""


#: CameraTracker parameters paired with MoveNet (``max_age_s`` in seconds), chosen by leave-one-sequence-out
#: cross-validation of ``bench/tune_tracker.py --cv --detections model`` over TUD-Campus, TUD-Stadtmitte and
#: their rescaled small-people proxies (docs/benchmarks.md, "Camera tracker"): MoveNet scores small people
#: 0.1-0.3, so tracks start from 0.15.
MOVENET_TRACKER_PARAMS = {"high_thresh": 0.15, "low_thresh": 0.1, "match_iou": 0.4, "min_hits": 1, "max_age_s": 0.8,
                          "low_match_iou": 0.5, "lost_match_iou": 0.3, "tentative_match_iou": 0.3}


def default_tracker(detector: Detector, fps: float | None = None) -> Tracker:
    """The project's ``CameraTracker`` with parameters suited to the detector's scores.

    MoveNet's person scores run lower than YOLO's (a clearly visible person often
    scores 0.3-0.6, a small one 0.1-0.3): it gets :data:`MOVENET_TRACKER_PARAMS`,
    lost tracks kept ``max_age_s`` at ``fps`` processed frames per second (30 frames
    when ``fps`` is not given).
    """
    try:
        from .tracker import CameraTracker
    except ImportError as exc:
        raise StoresenseError(f"the per-camera tracker (storesense.edge.camera.tracker) cannot be imported: {exc}") from None
    if detector.name.startswith("movenet"):
        params = dict(MOVENET_TRACKER_PARAMS)
        max_age_s = params.pop("max_age_s")
        return CameraTracker(max_age_frames=max(1, round(max_age_s * fps)) if fps else 30, **params)
    return CameraTracker()


@dataclass
class RunSummary:
    """What a run did: frame counts, wall time, throughput and per-frame latency."""

    frames_read: int = 0
    frames_processed: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """Processed frames per wall-clock second."""
        return self.frames_processed / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of per-frame processing latency, milliseconds."""
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else 0.0


class CameraNode:
    """Runs one camera's pipeline and emits its messages through ``emit``.

    ``detector`` and ``tracker`` are built from the config when not given
    (inject others in tests or benchmarks); ``emit`` receives every message
    (e.g. ``ZmqPublisher.publish``); ``recorders`` get every processed frame
    with its tracked detections (see :class:`~storesense.edge.camera.privacy.VideoRecorder`).
    ``processing_fps`` overrides the camera's ``fps`` (0 processes every frame).
    """

    def __init__(self, config: StoreConfig, camera_id: str, *, emit: Callable[[Envelope], None] | None = None,
                 detector: Detector | None = None, tracker: Tracker | None = None,
                 node_id: str | None = None, processing_fps: float | None = None,
                 status_interval_s: float = 5.0, recorders: Iterable = (), run_id: str | None = None,
                 base_dir: Path | None = None, clock: Callable[[], float] = time.time,
                 on_plan: Callable[[str], None] | None = None):
        try:
            self.camera = config.camera(camera_id)
        except KeyError:
            known = ", ".join(c.id for c in config.cameras) or "none"
            raise StoresenseError(f"no camera {camera_id!r} in the store config (cameras: {known})") from None
        self.config = config
        self.node_id = node_id or self.camera.id
        self.emit = emit or (lambda msg: None)
        self._plan_sink = on_plan
        self.detector = detector or build_detector(
            load_detector(self.camera.detector, base_dir=base_dir), self.camera.detector, self.camera,
            floor_outline=config.floor.outline, on_plan=self._on_plan)
        self._configured_camera = self.camera
        self._frame_size: tuple[int, int] | None = None
        self.tracker = tracker if tracker is not None else default_tracker(
            self.detector, self.camera.fps if processing_fps is None or processing_fps <= 0 else processing_fps)
        calibrated = self.camera.homography is not None or (
            self.camera.intrinsics is not None and (self.camera.extrinsics or self.camera.mount))
        self.projector = FloorProjector(self.camera) if calibrated else None
        self.hands = HandShelfMonitor(self.camera.shelf_faces, self.camera.hands)
        self.recorders = list(recorders)
        fps = self.camera.fps if processing_fps is None else processing_fps
        self.interval_s = 1.0 / fps if fps and fps > 0 else 0.0
        self.status_interval_s = status_interval_s
        self.stamper = Stamper(self.node_id, run_id)
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._next_due: float | None = None
        self._started = time.monotonic()
        self._last_status = -float("inf")
        self._last_ts: float | None = None
        self._source: FrameSource | None = None
        self.last_detections = Detections.empty(with_keypoints=True)

    # -- per frame

    def due(self, frame: Frame) -> bool:
        """Whether ``frame`` should be processed at the configured processing rate (else it is skipped)."""
        if self.interval_s <= 0:
            return True
        if self._next_due is None or frame.ts + 1e-6 >= self._next_due:
            nxt = (self._next_due if self._next_due is not None else frame.ts) + self.interval_s
            # fell behind by more than a period (gap in the stream): restart the schedule here
            self._next_due = nxt if nxt > frame.ts else frame.ts + self.interval_s
            return True
        return False

    def _on_plan(self, plan) -> None:
        """Report a new detection plan (made on the first frame of each size): to ``on_plan``, else the log."""
        text = f"{self.node_id}: {plan.describe()}"
        if self._plan_sink is not None:
            self._plan_sink(text)
        else:
            log.info("%s", text)

    @property
    def plan(self):
        """The detector's current :class:`~storesense.edge.camera.tiling.TilingPlan` (None when not tiled)."""
        return getattr(self.detector, "plan", None)

    def match_frame_size(self, width: int, height: int) -> None:
        """Fit the calibration to the source's frame size (scaled when the aspect ratio matches).

        The camera's intrinsics, homography and shelf faces are in pixels of its configured
        ``resolution``; a source of another size with the same aspect ratio gets them
        scaled, one with another aspect ratio raises ConfigError (one line naming the
        camera and both sizes): floor positions from it would be wrong.
        """
        if self._frame_size == (width, height):
            return
        camera = self._configured_camera.scaled_to(width, height)
        self._frame_size = (width, height)
        if camera is self.camera:
            return
        log.info("%s: source frames are %dx%d, the calibration is for %dx%d: scaled to the frames", self.node_id,
                 width, height, *self._configured_camera.resolution)
        self.camera = camera
        if self.projector is not None:
            self.projector = FloorProjector(camera)
        self.hands = HandShelfMonitor(camera.shelf_faces, camera.hands)

    def process(self, frame: Frame) -> list[Envelope]:
        """Run one frame through the pipeline; emits and returns its messages."""
        self.match_frame_size(frame.image.shape[1], frame.image.shape[0])
        try:
            dets = self.detector.detect(frame.image)
        except Exception as exc:  # a bad frame must not stop the node
            self.counters["detector_errors"] += 1
            if self.counters["detector_errors"] <= 3:
                log.warning("%s: detector failed on frame %d: %s", self.node_id, frame.index, exc)
            dets = Detections.empty(with_keypoints=True)
        self.counters["detections"] += len(dets)
        tracked = self.tracker.update(dets, frame.index)
        self.last_detections = tracked
        if hasattr(self.detector, "note_tracks") and hasattr(self.tracker, "live_boxes"):
            # a gated plan keeps tracked people's tiles active; ids carry people hidden behind another
            ids = self.tracker.live_ids() if hasattr(self.tracker, "live_ids") else ()
            self.detector.note_tracks(self.tracker.live_boxes(), *ids)
        floor = self.projector.project(tracked) if self.projector is not None else [None] * len(tracked)
        messages: list[Envelope] = []
        for i in range(len(tracked)):
            tid = int(tracked.track_id[i])
            if tid < 0:
                self.counters["untracked"] += 1
                continue
            messages.append(self._observation(frame, tracked, i, floor[i]))
        for ev in self.hands.update(tracked, frame.ts):
            messages.append(self._interaction(ev))
        for msg in messages:
            self.emit(msg)
        self.counters["observations"] += sum(isinstance(m, PersonObservation) for m in messages)
        self.counters["interactions"] += sum(isinstance(m, HandShelfInteraction) for m in messages)
        self.counters["frames_processed"] += 1
        for rec in self.recorders:
            rec.write(frame.image, tracked)
        return messages

    def _observation(self, frame: Frame, dets: Detections, i: int, floor) -> PersonObservation:
        x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
        keypoints = None
        if dets.keypoints is not None:
            keypoints = tuple(Keypoint(x=float(x), y=float(y), score=float(min(1.0, max(0.0, s))))
                              for x, y, s in dets.keypoints[i])
        # colour histograms of torso and thighs (issue 12): only the descriptor leaves the node, never pixels
        appearance = describe_person(frame.image, dets.xyxy[i], None if dets.keypoints is None else dets.keypoints[i])
        return self.stamper.make(
            PersonObservation, frame.ts, camera=self.camera.id, frame=frame.index, track_id=int(dets.track_id[i]),
            bbox=(x1, y1, x2 - x1, y2 - y1), score=float(min(1.0, max(0.0, dets.scores[i]))),
            keypoints=keypoints, floor=floor, appearance=appearance)

    def _interaction(self, ev) -> HandShelfInteraction:
        return self.stamper.make(
            HandShelfInteraction, ev.ts, camera=self.camera.id, track_id=ev.track_id, shelf=ev.shelf,
            face=ev.face, phase=ev.phase, hand=ev.hand, dwell_s=ev.dwell_s,
            keypoint_score=float(min(1.0, max(0.0, ev.keypoint_score))),
            wrist=None if ev.wrist is None else (round(ev.wrist[0], 1), round(ev.wrist[1], 1)))

    # -- status

    def status(self, state: str = "online") -> NodeStatus:
        """A NodeStatus heartbeat with the node's and the source's counters."""
        counters = dict(self.counters)
        if self._source is not None:
            counters.update(self._source.stats.counters())
            counters["source_state"] = SOURCE_STATES.get(self._source.stats.state, -1)
        if self._source is None or self._source.live:
            ts = self._clock()
        else:  # a recording: its own clock
            ts = float(self._last_ts) if self._last_ts is not None else 0.0
        return self.stamper.make(NodeStatus, ts, node=self.node_id, kind="camera", state=state,
                                 uptime_s=max(0.0, time.monotonic() - self._started), counters=counters)

    def heartbeat(self, force: bool = False) -> None:
        """Emit a NodeStatus when one is due (every ``status_interval_s``) or ``force``."""
        now = time.monotonic()
        if force or now - self._last_status >= self.status_interval_s:
            self._last_status = now
            self.emit(self.status("online"))

    def _on_source_state(self, state: str, stats: SourceStats) -> None:
        log.info("%s: source %s is %s", self.node_id, self._source.name if self._source else "?", state)
        self.heartbeat(force=True)

    # -- the loop

    def open(self, source: str | FrameSource | None = None, **live_options) -> FrameSource:
        """Open ``source`` (default: the camera's configured source) with this node's state callbacks."""
        if isinstance(source, FrameSource):
            src = source
            if isinstance(src, LiveSource):
                src.on_state = src.on_state or self._on_source_state
                src.on_idle = src.on_idle or self.heartbeat
        else:
            spec = source if source is not None else self.camera.source
            src = open_source(spec, on_state=self._on_source_state, on_idle=self.heartbeat, **live_options)
        self._source = src
        return src

    def step(self, frame: Frame) -> float | None:
        """One source frame: process it when due (returns the processing seconds) or skip it (None)."""
        self.counters["frames_read"] += 1
        self._last_ts = frame.ts
        latency = None
        if self.due(frame):
            t0 = time.perf_counter()
            self.process(frame)
            latency = time.perf_counter() - t0
        else:
            self.counters["frames_skipped"] += 1
        self.heartbeat()
        return latency

    def run(self, source: str | FrameSource | None = None, *, max_frames: int | None = None,
            **live_options) -> RunSummary:
        """Process ``source`` until it ends (or ``max_frames`` source frames); returns a summary.

        Emits an ``online`` status first and an ``offline`` one at the end, also
        when interrupted. Hands still inside a shelf face get their exit event at the end.
        """
        src = self.open(source, **live_options)
        summary = RunSummary()
        self.heartbeat(force=True)
        start = time.perf_counter()
        try:
            for frame in src:
                latency = self.step(frame)
                if latency is not None:
                    summary.latencies_s.append(latency)
                if max_frames is not None and self.counters["frames_read"] >= max_frames:
                    break
        finally:
            src.close()
            summary.seconds = time.perf_counter() - start
            for ev in self.hands.flush(self._last_ts if self._last_ts is not None else self._clock()):
                msg = self._interaction(ev)
                self.emit(msg)
                self.counters["interactions"] += 1
            for rec in self.recorders:
                rec.close()
            self.emit(self.status("offline"))
            summary.frames_read = self.counters["frames_read"]
            summary.frames_processed = self.counters["frames_processed"]
            summary.counters = {**self.counters, **src.stats.counters()}
        return summary


def run_camera(config: StoreConfig, camera_id: str, *, source: str | None = None, endpoint: str | None = None,
               output: Path | None = None, debug_video: Path | None = None, record_video: Path | None = None,
               blur: bool = True, max_frames: int | None = None, processing_fps: float | None = None,
               wait_subscriber_s: float = 0.0, max_retries: int | None = None, base_dir: Path | None = None,
               run_id: str | None = None) -> RunSummary:
    """Run a camera node as ``storesense edge camera`` does: publish over ZeroMQ, optionally record.

    ``source`` overrides the camera's configured one (a file replays it);
    ``output`` also writes every message to a JSON-lines recording;
    ``debug_video`` writes boxes, skeletons, ids and shelf faces over the frames,
    ``record_video`` the plain frames - both on this machine, heads blurred unless ``blur=False``.
    """
    from ...transport.recording import Recorder
    from ...transport import ZmqPublisher
    from ...transport.zeromq import CurveKeys
    from .drawing import draw_debug
    from .privacy import VideoRecorder

    sinks: list[Callable[[Envelope], None]] = []
    closers: list[Callable[[], None]] = []
    try:
        endpoint = endpoint or config.transports.zmq.observations
        publisher = ZmqPublisher(endpoint, store=config.store.id,
                                 curve=CurveKeys.for_edge(config.transports.zmq.curve_keys, camera_id))
        closers.append(publisher.close)
        if wait_subscriber_s > 0 and not publisher.wait_for_subscriber(wait_subscriber_s):
            raise StoresenseError(f"no fusion node subscribed at {endpoint} within {wait_subscriber_s:g} s")
        sinks.append(publisher.publish)
        if output is not None:
            recorder = Recorder(output, config.store.id)
            closers.append(recorder.close)
            sinks.append(recorder.write)

        def emit(msg: Envelope) -> None:
            for sink in sinks:
                sink(msg)

        node = CameraNode(config, camera_id, emit=emit, processing_fps=processing_fps, base_dir=base_dir,
                          run_id=run_id, on_plan=lambda text: print(text, file=sys.stderr, flush=True))
        fps = (1.0 / node.interval_s) if node.interval_s else node.camera.fps
        if record_video is not None:
            node.recorders.append(VideoRecorder(record_video, fps, blur=blur))
        if debug_video is not None:

            def overlay(image: np.ndarray, dets: Detections) -> np.ndarray:
                caption = f"{node.camera.id} frame {node.counters['frames_read'] - 1} {node.detector.name}"
                return draw_debug(image, dets, node.camera.shelf_faces, node.hands.active_faces(), caption, node.plan,
                                  getattr(node.detector, "regions", None), getattr(node.detector, "looks", None))

            node.recorders.append(VideoRecorder(debug_video, fps, blur=blur, overlay=overlay))
        live_options = {"max_retries": max_retries} if max_retries is not None else {}
        try:
            return node.run(source, max_frames=max_frames, **live_options)
        except KeyboardInterrupt:
            log.warning("%s: interrupted", node.node_id)
            return RunSummary(node.counters["frames_read"], node.counters["frames_processed"],
                              counters=dict(node.counters))
    finally:
        for close in reversed(closers):
            close()
