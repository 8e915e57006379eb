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
from ..loaders.mot import MotSequence, detections_per_frame, read_sequence, tracks_to_rows, write_results
from . import MotScores, combine, score_sequence

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

    @property
    def ms_per_frame(self) -> float:
        """Tracker time per frame in milliseconds (detector excluded)."""
        return 1000.0 * self.tracker_seconds / max(1, self.frames)


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
    return detector_module.load_detector(model)


def model_frames(seq: MotSequence, detector) -> Iterable[tuple[int, Detections]]:
    """Run ``detector.detect(frame_bgr)`` on every frame of the sequence."""
    for frame, image in seq.frames():
        yield frame, detector.detect(image)


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
    model_detector = load_model_detector(model) if detector == "model" else None
    if make_tracker is None:
        make_tracker = tracker_for if model_detector is None else (lambda seq: model_tracker(model_detector))
    runs = []
    for seq in sequences:
        gt = seq.ground_truth()
        frames = public_frames(seq) if model_detector is None else model_frames(seq, model_detector)
        rows, seconds, count = run_tracker(make_tracker(seq), frames)
        scores = score_sequence(gt, rows, seq.length, name=seq.name)
        runs.append(SequenceRun(seq, rows, scores, seconds, count))
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


def model_tracker(detector) -> CameraTracker:
    """The tracker the camera node itself pairs with ``detector`` (``camera_node.default_tracker``)."""
    from ...edge.camera.node import default_tracker

    return default_tracker(detector)


def write_outputs(folder: Path, runs: list[SequenceRun], combined: MotScores, detector: str) -> None:
    """``<sequence>.txt`` result files (MOTChallenge format) and ``summary.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for run in runs:
        write_results(folder / f"{run.sequence.name}.txt", run.rows)
    summary = {
        "detector": detector,
        "sequences": {r.sequence.name: {**r.scores.summary(), "tracker_ms_per_frame": r.ms_per_frame}
                      for r in runs},
        "combined": combined.summary(),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


#: Columns of :func:`format_table`: (header, summary key, is a percentage).
TABLE_COLUMNS = (("HOTA", "HOTA", True), ("DetA", "DetA", True), ("AssA", "AssA", True),
                 ("MOTA", "MOTA", True), ("IDF1", "IDF1", True), ("IDSW", "IDSW", False),
                 ("FP", "FP", False), ("FN", "FN", False))


def table_rows(runs: list[SequenceRun], combined: MotScores) -> list[list[str]]:
    """Header plus one row per sequence and the combined row, as strings (percentages to 1 decimal)."""
    header = ["sequence"] + [h for h, _, _ in TABLE_COLUMNS] + ["tracker ms/frame"]
    lines = [header]
    total_s = sum(r.tracker_seconds for r in runs)
    total_f = sum(r.frames for r in runs)
    for name, scores, ms in [(r.sequence.name, r.scores, r.ms_per_frame) for r in runs] + \
            [(combined.name, combined, 1000.0 * total_s / max(1, total_f))]:
        s = scores.summary()
        lines.append([name] + [f"{100 * s[k]:.1f}" if pct else str(int(s[k])) for _, k, pct in TABLE_COLUMNS]
                     + [f"{ms:.3f}"])
    return lines
