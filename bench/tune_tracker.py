"""Coordinate search of CameraTracker parameters on MOTChallenge sequences with their public detections.

Starting from the defaults, tries every listed value of one parameter at a time, keeps
the one with the best combined HOTA over the given sequences, and sweeps again until
nothing improves. Tuning on the sequences one also reports on overstates the figures; say so
when quoting them (we only have the five MOT15 training sequences with ground truth).

    python bench/tune_tracker.py [SEQ_DIR ...] [--rounds 3] [--tracker ours|bytetrack]
    python bench/tune_tracker.py [SEQ_DIR ...] --cv [--detections public|model] [--cache DIR] [--json F]

``--cv`` chooses our parameters by leave-one-sequence-out cross-validation (tuned on all
sequences but one, scored on that one) and prints the pooled held-out HOTA next to ByteTrack's
at its constructor defaults on the same folds; ``--detections model`` does it on the camera
node's own (tiled) detections instead of the public ones.

``--tracker bytetrack`` searches roboflow's ByteTrack (``trackers``) the same way, so the
benchmark can compare tuned with tuned as well as defaults with defaults.
``max_age_s`` is our lost-track lifetime in seconds (frames = seconds × the sequence's frame rate).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from storesense.datasets.loaders.mot import detections_per_frame, read_sequence, tracks_to_rows
from storesense.datasets.scoring.mot_eval import run_tracker
from storesense.datasets.scoring import combine, prepare_sequence, score_data
from storesense.edge.camera.tracker import CameraTracker

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mot15"

#: Values tried per parameter of CameraTracker; the first is the start point (the best of earlier runs).
SPACE = {
    "high_thresh": [0.9, 0.5, 0.6, 0.7, 0.8],
    "new_track_thresh": [None, 0.6, 0.7, 0.8, 0.9, 0.95],
    "match_iou": [0.15, 0.05, 0.1, 0.2, 0.3, 0.4],
    "min_hits": [1, 2, 3, 4],
    "max_age_s": [0.25, 0.1, 0.5, 0.75, 1.0, 1.2, 1.5, 2.0, 3.0],
    "low_match_iou": [0.4, 0.2, 0.3, 0.5],
    "lost_match_iou": [None, 0.2, 0.3, 0.4, 0.5, 0.6],
    "tentative_match_iou": [0.3, 0.1, 0.2, 0.4, 0.5],
}


#: With the camera node's own detector (--detections model): its scores run lower (small people 0.1-0.3),
#: so the score thresholds get their own ranges, starting from the node's pairing for MoveNet.
MODEL_SPACE = {
    "high_thresh": [0.3, 0.15, 0.2, 0.25, 0.35, 0.4, 0.5],
    "low_thresh": [0.1, 0.05, 0.15],
    "new_track_thresh": [None, 0.3, 0.4, 0.5],
    "min_hits": [2, 1, 3],
    "max_age_s": [1.2, 0.25, 0.5, 0.8, 2.0],
}


#: The same for trackers.ByteTrackTracker (its own defaults first; ranges cover its search_space).
BYTETRACK_SPACE = {
    "lost_track_buffer": [30, 3, 5, 10, 20, 45, 60, 90],
    "track_activation_threshold": [0.7, 0.5, 0.6, 0.8, 0.9, 0.95],
    "minimum_iou_threshold": [0.1, 0.05, 0.2, 0.3, 0.4],
    "high_conf_det_threshold": [0.6, 0.5, 0.7, 0.8, 0.9],
    "minimum_consecutive_frames": [2, 1, 3, 4],
}


def evaluate(params: dict, sequences: list) -> tuple[float, float, float]:
    """Combined (HOTA, MOTA, IDF1) of our tracker with ``params`` on the prepared sequences."""
    params = dict(params)
    max_age_s = params.pop("max_age_s")
    scores = []
    for seq, frames, gt in sequences:
        tracker = CameraTracker(max_age_frames=max(1, round(max_age_s * seq.frame_rate)), **params)
        rows, _, _ = run_tracker(tracker, enumerate(frames, 1))
        scores.append(score_data(seq.name, prepare_sequence(gt, rows, seq.length, "MOT15")))
    c = combine(scores)
    return c.HOTA, c.MOTA, c.IDF1


def evaluate_bytetrack(params: dict, sequences: list) -> tuple[float, float, float]:
    """Combined (HOTA, MOTA, IDF1) of trackers.ByteTrackTracker with ``params``."""
    from bench_tracker import run_bytetrack, to_supervision

    scores = []
    for seq, frames, gt in sequences:
        _, out = run_bytetrack(seq, to_supervision(frames), **params)
        scores.append(score_data(seq.name, prepare_sequence(gt, tracks_to_rows(out), seq.length, "MOT15")))
    c = combine(scores)
    return c.HOTA, c.MOTA, c.IDF1


#: CameraTracker's constructor defaults in SPACE's terms (--start defaults: a search start that has seen no data).
CONSTRUCTOR_START = {"high_thresh": 0.5, "new_track_thresh": None, "match_iou": 0.2, "min_hits": 2,
                     "max_age_s": 1.2, "low_match_iou": 0.5, "lost_match_iou": None, "tentative_match_iou": 0.3}


def search(sequences: list, tracker: str, rounds: int, log=print, start: dict | None = None) -> tuple[dict, tuple]:
    """Coordinate search on ``sequences`` from ``start`` (default: each value list's first entry):
    (best parameters, their combined (HOTA, MOTA, IDF1))."""
    cache: dict[tuple, tuple] = {}

    def score(params: dict) -> tuple:
        key = tuple(sorted(params.items()))
        if key not in cache:
            cache[key] = (evaluate if tracker == "ours" else evaluate_bytetrack)(params, sequences)
            hota, mota, idf1 = cache[key]
            log(f"HOTA {100 * hota:6.2f} MOTA {100 * mota:6.2f} IDF1 {100 * idf1:6.2f}  {params}")
        return cache[key]

    space = SPACE if tracker == "ours" else BYTETRACK_SPACE
    best = {k: v[0] for k, v in space.items()}
    if start:
        best.update({k: v for k, v in start.items() if k in space})
    best_score = score(best)
    for _ in range(rounds):
        improved = False
        for name, values in space.items():
            for value in values:
                trial = {**best, name: value}
                if (trial.get("new_track_thresh") or 1.0) < trial.get("high_thresh", 0.0):
                    continue
                if trial.get("low_thresh", 0.0) > trial.get("high_thresh", 1.0):
                    continue
                result = score(trial)
                if result[0] > best_score[0] + 1e-9:
                    best, best_score, improved = trial, result, True
        if not improved:
            break
    return best, best_score


def model_detections(seq, cache_dir: Path | None) -> list:
    """The camera node's own detections (shipped detector settings, tiled) per frame, cached as .npz."""
    from storesense.config import DetectorSettings
    from storesense.edge.camera.detections import Detections
    from storesense.edge.camera.detectors import load_detector
    from storesense.edge.camera.tiling import build_detector

    import numpy as np

    path = None if cache_dir is None else cache_dir / f"{seq.name}.npz"
    if path is not None and path.is_file():
        data = np.load(path)
        return [Detections(data[f"b{i}"], data[f"s{i}"]) for i in range(seq.length)]
    settings = DetectorSettings()
    det = build_detector(load_detector(settings), settings)
    frames = [det.detect(image) for _, image in seq.frames()]
    frames += [Detections.empty()] * (seq.length - len(frames))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"b{i}": d.xyxy for i, d in enumerate(frames)},
                 **{f"s{i}": d.scores for i, d in enumerate(frames)})
    return frames


def cross_validate(sequences: list, rounds: int, start: dict | None = None) -> dict:
    """Leave-one-sequence-out: tune ours on the others, score it on the held-out sequence next to
    ByteTrack at its constructor defaults; the pooled held-out scores are the cross-validated figures."""
    folds = {}
    ours_scores, bt_scores = [], []
    for i, (seq, frames, gt) in enumerate(sequences):
        train = sequences[:i] + sequences[i + 1:]
        best, _ = search(train, "ours", rounds, log=lambda text: None, start=start)
        held = [(seq, frames, gt)]
        ours = _scores(best, held, "ours")
        bt = _scores({}, held, "bytetrack")
        ours_scores.append(ours)
        bt_scores.append(bt)
        folds[seq.name] = {"params": best, "ours_HOTA": ours.HOTA, "bytetrack_default_HOTA": bt.HOTA,
                           "ours_MOTA": ours.MOTA, "bytetrack_default_MOTA": bt.MOTA}
        print(f"held out {seq.name}: ours (tuned on the others) HOTA {100 * ours.HOTA:.2f} MOTA "
              f"{100 * ours.MOTA:.2f} | ByteTrack defaults HOTA {100 * bt.HOTA:.2f} MOTA {100 * bt.MOTA:.2f}  {best}",
              flush=True)
    co, cb = combine(ours_scores), combine(bt_scores)
    print(f"\ncross-validated (pooled held-out folds): ours HOTA {100 * co.HOTA:.2f} MOTA {100 * co.MOTA:.2f} "
          f"IDF1 {100 * co.IDF1:.2f} | ByteTrack defaults HOTA {100 * cb.HOTA:.2f} MOTA {100 * cb.MOTA:.2f} "
          f"IDF1 {100 * cb.IDF1:.2f}")
    return {"folds": folds, "ours": {"HOTA": co.HOTA, "MOTA": co.MOTA, "IDF1": co.IDF1},
            "bytetrack_default": {"HOTA": cb.HOTA, "MOTA": cb.MOTA, "IDF1": cb.IDF1}}


def _scores(params: dict, sequences: list, tracker: str):
    """Combined MotScores of one configuration (``params`` empty for ByteTrack: its defaults)."""
    if tracker == "ours":
        params = dict(params)
        max_age_s = params.pop("max_age_s")
    out = []
    for seq, frames, gt in sequences:
        if tracker == "ours":
            tr = CameraTracker(max_age_frames=max(1, round(max_age_s * seq.frame_rate)), **params)
            rows, _, _ = run_tracker(tr, enumerate(frames, 1))
        else:
            from bench_tracker import run_bytetrack, to_supervision

            _, res = run_bytetrack(seq, to_supervision(frames), **params)
            rows = tracks_to_rows(res)
        out.append(score_data(seq.name, prepare_sequence(gt, rows, seq.length, "MOT15")))
    return combine(out)


def main() -> None:
    """Run the coordinate search (or, with --cv, the leave-one-sequence-out cross-validation)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sequences", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracker", choices=("ours", "bytetrack"), default="ours")
    parser.add_argument("--cv", action="store_true", help="leave-one-sequence-out: held-out HOTA vs ByteTrack defaults")
    parser.add_argument("--detections", choices=("public", "model"), default="public",
                        help="public det/det.txt, or the camera node's own detector (tiled, shipped settings)")
    parser.add_argument("--cache", type=Path, default=None, help="folder caching the model's detections")
    parser.add_argument("--json", type=Path, default=None, help="write the --cv result here")
    parser.add_argument("--start", choices=("shipped", "defaults"), default="shipped",
                        help="search start: the shipped values (found on all sequences) or the constructor defaults")
    args = parser.parse_args()
    if args.detections == "model":
        SPACE.update(MODEL_SPACE)
    dirs = args.sequences or sorted(p for p in DEFAULT_DATA.iterdir() if (p / "seqinfo.ini").is_file())
    sequences = []
    for d in dirs:
        seq = read_sequence(d)
        frames = (detections_per_frame(seq.public_detections(), seq.length) if args.detections == "public"
                  else model_detections(seq, args.cache))
        sequences.append((seq, frames, seq.ground_truth()))
    if args.cv:
        result = cross_validate(sequences, args.rounds,
                                start=CONSTRUCTOR_START if args.start == "defaults" else None)
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        return
    best, (hota, mota, idf1) = search(sequences, args.tracker, args.rounds, log=lambda t: print(t, flush=True))
    print(f"\nbest: HOTA {100 * hota:.2f} MOTA {100 * mota:.2f} IDF1 {100 * idf1:.2f}  {best}")


if __name__ == "__main__":
    main()
