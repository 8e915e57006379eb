"""Coordinate search of CameraTracker parameters on MOTChallenge sequences with their public detections.

Starting from the defaults, tries every listed value of one parameter at a time, keeps
the one with the best combined HOTA over the given sequences, and sweeps again until
nothing improves. Tuning on the sequences one also reports on overstates the figures; say so
when quoting them (we only have the five MOT15 training sequences with ground truth).

    python bench/tune_tracker.py [SEQ_DIR ...] [--rounds 3] [--tracker ours|bytetrack]

``--tracker bytetrack`` searches roboflow's ByteTrack (``trackers``) the same way, so the
benchmark can compare tuned with tuned as well as defaults with defaults.
``max_age_s`` is our lost-track lifetime in seconds (frames = seconds × the sequence's frame rate).
"""

from __future__ import annotations

import argparse
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
    "max_age_s": [0.25, 0.1, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
    "low_match_iou": [0.4, 0.2, 0.3, 0.5],
    "lost_match_iou": [None, 0.2, 0.3, 0.4, 0.5, 0.6],
    "tentative_match_iou": [0.3, 0.1, 0.2, 0.4, 0.5],
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


def main() -> None:
    """Run the coordinate search and print the best parameters."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sequences", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tracker", choices=("ours", "bytetrack"), default="ours")
    args = parser.parse_args()
    dirs = args.sequences or sorted(p for p in DEFAULT_DATA.iterdir() if (p / "seqinfo.ini").is_file())
    sequences = []
    for d in dirs:
        seq = read_sequence(d)
        sequences.append((seq, detections_per_frame(seq.public_detections(), seq.length), seq.ground_truth()))
    cache: dict[tuple, tuple] = {}

    def score(params: dict) -> tuple:
        key = tuple(sorted(params.items()))
        if key not in cache:
            cache[key] = (evaluate if args.tracker == "ours" else evaluate_bytetrack)(params, sequences)
            hota, mota, idf1 = cache[key]
            print(f"HOTA {100 * hota:6.2f} MOTA {100 * mota:6.2f} IDF1 {100 * idf1:6.2f}  {params}", flush=True)
        return cache[key]

    space = SPACE if args.tracker == "ours" else BYTETRACK_SPACE
    best = {k: v[0] for k, v in space.items()}
    best_score = score(best)
    for _ in range(args.rounds):
        improved = False
        for name, values in space.items():
            for value in values:
                trial = {**best, name: value}
                if (trial.get("new_track_thresh") or 1.0) < trial.get("high_thresh", 0.0):
                    continue
                result = score(trial)
                if result[0] > best_score[0] + 1e-9:
                    best, best_score, improved = trial, result, True
        if not improved:
            break
    hota, mota, idf1 = best_score
    print(f"\nbest: HOTA {100 * hota:.2f} MOTA {100 * mota:.2f} IDF1 {100 * idf1:.2f}  {best}")


if __name__ == "__main__":
    main()
