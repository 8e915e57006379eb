"""``storesense eval mot``: run the camera tracker on MOTChallenge sequences and score it.

For each sequence folder the tracker is fed either the public detections
(``det/det.txt``, tracker-only evaluation) or the camera node's own detector run on the
frames (``img1/`` or a video in the folder); its output is scored against ``gt/gt.txt``
with HOTA, CLEAR (MOTA) and Identity (IDF1) (:mod:`storesense.datasets.scoring`), per
sequence and combined. Results can be written in the MOTChallenge format, so TrackEval
or the MOTChallenge server can score them as well.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ...edge.camera.detections import Detections
from ...edge.camera.tracker import CameraTracker
from ...errors import StoresenseError
from ..loaders.mot import (MotSequence, detections_per_frame, read_sequence, rows_per_frame, tracks_to_rows,
                           write_results)
from . import MotScores, combine, guess_benchmark, score_sequence
from .detection import SizeReport, frame_gt_boxes

DETECTORS = ("public", "model")


@dataclass
class SequenceRun:
    """A tracked sequence: its result rows, its scores and the time the tracker took."""

    sequence: MotSequence
    rows: np.ndarray
    scores: MotScores
    tracker_seconds: float
    frames: int
    extra: dict = field(default_factory=dict)
    detector_seconds: float = 0.0
    sizes: SizeReport | None = None

    @property
    def ms_per_frame(self) -> float:
        """Tracker time per frame in milliseconds (detector excluded)."""
        return 1000.0 * self.tracker_seconds / max(1, self.frames)

    @property
    def detector_ms_per_frame(self) -> float:
        """Detector time per frame in milliseconds (0 with public detections)."""
        return 1000.0 * self.detector_seconds / max(1, self.frames)


def run_tracker(tracker: CameraTracker, frames: Iterable[tuple[int, Detections]]) -> tuple[np.ndarray, float, int]:
    """Feed ``(frame_number, detections)`` pairs to ``tracker``; return result rows, seconds spent, frames."""
    tracker.reset()
    out = []
    spent = 0.0
    count = 0
    for frame, dets in frames:
        start = time.perf_counter()
        tracked = tracker.update(dets, frame)
        spent += time.perf_counter() - start
        out.append((frame, tracked))
        count += 1
    return tracks_to_rows(out), spent, count


def public_frames(seq: MotSequence) -> Iterable[tuple[int, Detections]]:
    """The sequence's public detections, frame by frame (frames without any give an empty set)."""
    return enumerate(detections_per_frame(seq.public_detections(), seq.length), 1)


def load_model_detector(model: str):
    """The camera node's detector (``storesense.edge.camera.detectors.load_detector``), imported lazily."""
    try:
        from ...edge.camera import detectors as detector_module
    except ImportError as exc:
        raise StoresenseError(
            f"--detector model: the model detector is not available in this build ({exc}); "
            "use --detector public") from None
    from ...config import DetectorSettings
    from ...edge.camera.tiling import build_detector

    settings = DetectorSettings(model=model)
    # an uncalibrated camera: the plan comes from the frame size (detector.tiling auto, as the node ships it)
    return build_detector(detector_module.load_detector(settings), settings)


def model_frames(seq: MotSequence, detector, timing: list[float] | None = None,
                 sizes: SizeReport | None = None, tracker: CameraTracker | None = None
                 ) -> Iterable[tuple[int, Detections]]:
    """Run ``detector.detect(frame_bgr)`` on every frame of the sequence.

    ``timing`` (a one-element list) accumulates the seconds spent in ``detect``;
    ``sizes`` counts the raw detections against the ground truth by person height.
    ``tracker``: the tracker these frames feed; before each frame its live boxes go to a
    gated detector (``note_tracks``), as the camera node does, so tracked people keep their tiles.
    """
    gt_rows = seq.ground_truth() if sizes is not None else None
    gt = rows_per_frame(gt_rows, seq.length) if gt_rows is not None else None
    benchmark = guess_benchmark(gt_rows) if gt_rows is not None else "MOT15"
    tracks = tracker if tracker is not None and hasattr(detector, "note_tracks") else None
    for frame, image in seq.frames():
        start = time.perf_counter()
        if tracks is not None:
            detector.note_tracks(tracks.live_boxes(), *(tracks.live_ids() if hasattr(tracks, "live_ids") else ()))
        dets = detector.detect(image)
        if timing is not None:
            timing[0] += time.perf_counter() - start
        if gt is not None:
            scored, ignored = frame_gt_boxes(gt[frame - 1], benchmark)
            sizes.add_frame(scored, dets, ignored)
        yield frame, dets


def evaluate_sequences(
    seq_dirs: Iterable[str | Path],
    *,
    detector: str = "public",
    model: str = "movenet",
    out: str | Path | None = None,
    make_tracker: Callable[[MotSequence], CameraTracker] | None = None,
) -> tuple[list[SequenceRun], MotScores]:
    """Track and score each sequence folder; return the per-sequence runs and the combined scores.

    ``detector``: ``"public"`` (``det/det.txt``) or ``"model"`` (the camera node's detector,
    ``model`` naming it); ``out``: a folder to write ``<sequence>.txt`` results and
    ``summary.json`` into; ``make_tracker``: builds the tracker for a sequence (default:
    :func:`tracker_for` on public detections, the camera node's own choice on the model's).
    """
    if detector not in DETECTORS:
        raise StoresenseError(f"--detector {detector!r}: expected one of {', '.join(DETECTORS)}")
    sequences = [read_sequence(p) for p in seq_dirs]
    if not sequences:
        raise StoresenseError("no sequence folders given")
    runs = []
    for seq in sequences:
        # a fresh detector per sequence, as a camera node starts: a gated plan remembers the frames before
        model_detector = load_model_detector(model) if detector == "model" else None
        gt = seq.ground_truth()
        timing, sizes = [0.0], (SizeReport() if model_detector is not None else None)
        if make_tracker is not None:
            tracker = make_tracker(seq)
        else:
            tracker = tracker_for(seq) if model_detector is None else model_tracker(model_detector, seq.frame_rate)
        frames = public_frames(seq) if model_detector is None else model_frames(seq, model_detector, timing, sizes,
                                                                                 tracker)
        rows, seconds, count = run_tracker(tracker, frames)
        scores = score_sequence(gt, rows, seq.length, name=seq.name)
        runs.append(SequenceRun(seq, rows, scores, seconds, count, detector_seconds=timing[0], sizes=sizes))
    combined = combine([r.scores for r in runs])
    if out is not None:
        write_outputs(Path(out), runs, combined, detector)
    return runs, combined


#: CameraTracker parameters for MOTChallenge public detections (``max_age_s`` in seconds), found by
#: ``bench/tune_tracker.py`` on the five MOT15 training sequences, the only annotated ones we have:
#: the figures on those sequences are therefore optimistic (docs/benchmarks.md, "Camera tracker").
PUBLIC_DETECTION_PARAMS = {"high_thresh": 0.9, "new_track_thresh": None, "match_iou": 0.15, "min_hits": 1,
                           "max_age_s": 0.25, "low_match_iou": 0.4, "lost_match_iou": None,
                           "tentative_match_iou": 0.3}


def tracker_for(seq: MotSequence) -> CameraTracker:
    """The tracker used on a sequence's public detections: :data:`PUBLIC_DETECTION_PARAMS`."""
    params = dict(PUBLIC_DETECTION_PARAMS)
    max_age_s = params.pop("max_age_s")
    return CameraTracker(max_age_frames=max(1, round(max_age_s * seq.frame_rate)), **params)


def model_tracker(detector, fps: float | None = None) -> CameraTracker:
    """The tracker the camera node itself pairs with ``detector`` at ``fps`` (``camera_node.default_tracker``)."""
    from ...edge.camera.node import default_tracker

    return default_tracker(detector, fps)


def write_outputs(folder: Path, runs: list[SequenceRun], combined: MotScores, detector: str) -> None:
    """``<sequence>.txt`` result files (MOTChallenge format) and ``summary.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for run in runs:
        write_results(folder / f"{run.sequence.name}.txt", run.rows)
    (folder / "summary.json").write_text(json.dumps(summary(runs, combined, detector), indent=2) + "\n",
                                         encoding="utf-8")


def combined_sizes(runs: list[SequenceRun]) -> SizeReport | None:
    """The size-bucket detection counts of all runs together (None with public detections)."""
    reports = [r.sizes for r in runs if r.sizes is not None]
    if not reports:
        return None
    total = reports[0]
    for rep in reports[1:]:
        total = total.merged(rep)
    return total


def summary(runs: list[SequenceRun], combined: MotScores, detector: str) -> dict:
    """Everything the evaluation measured, JSON-ready: scores, times, and (model detector) the size buckets."""
    def timing(seconds_tracker: float, seconds_detector: float, frames: int) -> dict:
        tms = 1000.0 * seconds_tracker / max(1, frames)
        out = {"tracker_ms_per_frame": tms, "tracker_fps": 1000.0 / tms if tms > 0 else 0.0}
        if detector == "model":
            ms = 1000.0 * seconds_detector / max(1, frames)
            out.update(detector_ms_per_frame=ms, detector_fps=1000.0 / ms if ms > 0 else 0.0)
        return out

    def nan_to_none(rows: list[dict]) -> list[dict]:
        return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in rows]

    out = {
        "detector": detector,
        "sequences": {r.sequence.name: {**r.scores.summary(), **timing(r.tracker_seconds, r.detector_seconds, r.frames),
                                        **({"sizes": nan_to_none(r.sizes.rows())} if r.sizes is not None else {})}
                      for r in runs},
        "combined": {**combined.summary(), **timing(sum(r.tracker_seconds for r in runs),
                                                    sum(r.detector_seconds for r in runs),
                                                    sum(r.frames for r in runs))},
    }
    sizes = combined_sizes(runs)
    if sizes is not None:
        out["combined"]["sizes"] = nan_to_none(sizes.rows())
    return out


#: Columns of :func:`format_table`: (header, summary key, is a percentage).
TABLE_COLUMNS = (("HOTA", "HOTA", True), ("DetA", "DetA", True), ("AssA", "AssA", True),
                 ("MOTA", "MOTA", True), ("IDF1", "IDF1", True), ("IDSW", "IDSW", False),
                 ("FP", "FP", False), ("FN", "FN", False))


def table_rows(runs: list[SequenceRun], combined: MotScores) -> list[list[str]]:
    """Header plus one row per sequence and the combined row, as strings (percentages to 1 decimal)."""
    model = any(r.detector_seconds > 0 for r in runs)
    header = ["sequence"] + [h for h, _, _ in TABLE_COLUMNS] + ["tracker ms/frame", "tracker fps"]
    if model:
        header += ["detector ms/frame", "detector fps"]
    lines = [header]
    total_s = sum(r.tracker_seconds for r in runs)
    total_d = sum(r.detector_seconds for r in runs)
    total_f = sum(r.frames for r in runs)
    for name, scores, ms, dms in [(r.sequence.name, r.scores, r.ms_per_frame, r.detector_ms_per_frame) for r in runs] + \
            [(combined.name, combined, 1000.0 * total_s / max(1, total_f), 1000.0 * total_d / max(1, total_f))]:
        s = scores.summary()
        lines.append([name] + [f"{100 * s[k]:.1f}" if pct else str(int(s[k])) for _, k, pct in TABLE_COLUMNS]
                     + [f"{ms:.3f}", f"{1000.0 / ms:,.0f}" if ms > 0 else "-"]
                     + ([f"{dms:.1f}", f"{1000.0 / dms:.1f}" if dms > 0 else "-"] if model else []))
    return lines


def size_table_rows(runs: list[SequenceRun]) -> list[list[str]]:
    """Header plus one row per person-height bucket (all sequences pooled); empty with public detections."""
    sizes = combined_sizes(runs)
    if sizes is None:
        return []

    def pct(v: float) -> str:
        return "-" if v != v else f"{100 * v:.1f}"

    return [["height px", "gt boxes", "detections", "recall", "precision"]] + [
        [r["bucket"], str(r["gt"]), str(r["detections"]), pct(r["recall"]), pct(r["precision"])] for r in sizes.rows()]
