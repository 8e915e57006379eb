"""Benchmark: our CameraTracker against roboflow's ByteTrack (``trackers`` package) on MOT15 public detections.

Both trackers get the same per-frame detections (``det/det.txt``), built before timing;
only the ``update`` calls are timed, over several repeats (best repeat kept), the two
trackers alternating in the same run. Both outputs are scored by
:mod:`storesense.datasets.scoring` (TrackEval's MOTChallenge conventions).

Needs ``trackers`` (roboflow, 2.6.x): ``pip install -e '.[bench]'``.

Run from the repository root::

    python bench/bench_tracker.py [SEQ_DIR ...] [--repeats 5] [--json out.json]

Without SEQ_DIRs it uses every sequence in ../shared/data/mot15.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from storesense.datasets.mot import detections_per_frame, read_sequence, tracks_to_rows
from storesense.datasets.mot_eval import tracker_for
from storesense.datasets.scoring import combine, score_sequence
from storesense.edge.detections import Detections

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mot15"


def time_ours(seq, frames: list[Detections]) -> tuple[float, list]:
    """One pass of our tracker: (seconds in update, [(frame, tracked)])."""
    tracker = tracker_for(seq)
    out = []
    start = time.perf_counter()
    for t, dets in enumerate(frames, 1):
        out.append((t, tracker.update(dets, t)))
    return time.perf_counter() - start, out


def time_bytetrack(seq, frames) -> tuple[float, list]:
    """One pass of trackers.ByteTrackTracker with its defaults and the sequence's frame rate."""
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(frame_rate=seq.frame_rate)
    out = []
    start = time.perf_counter()
    for dets in frames:
        out.append(tracker.update(dets))
    elapsed = time.perf_counter() - start
    converted = []
    for t, res in enumerate(out, 1):
        keep = res.tracker_id >= 0
        converted.append((t, Detections(res.xyxy[keep], res.confidence[keep], track_id=res.tracker_id[keep])))
    return elapsed, converted


def to_supervision(frames: list[Detections]):
    """The same detections as ``supervision.Detections`` (what ByteTrack takes)."""
    import supervision as sv

    return [sv.Detections(xyxy=d.xyxy.copy(), confidence=d.scores.copy(), class_id=np.zeros(len(d), dtype=int))
            for d in frames]


def main() -> None:
    """Run the benchmark and print a table with the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sequences", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per tracker (best kept)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    try:
        import trackers
    except ImportError:
        raise SystemExit("this benchmark needs roboflow's trackers: pip install -e '.[bench]'") from None

    dirs = args.sequences or sorted(p for p in DEFAULT_DATA.iterdir() if (p / "seqinfo.ini").is_file())
    rows, ours_scores, theirs_scores = [], [], []
    total = {"ours": 0.0, "bytetrack": 0.0, "frames": 0}
    for d in dirs:
        seq = read_sequence(d)
        frames = detections_per_frame(seq.public_detections(), seq.length)
        sv_frames = to_supervision(frames)
        best = {"ours": np.inf, "bytetrack": np.inf}
        for _ in range(args.repeats):
            t_ours, ours_out = time_ours(seq, frames)
            t_bt, bt_out = time_bytetrack(seq, sv_frames)
            best["ours"] = min(best["ours"], t_ours)
            best["bytetrack"] = min(best["bytetrack"], t_bt)
        gt = seq.ground_truth()
        s_ours = score_sequence(gt, tracks_to_rows(ours_out), seq.length, name=seq.name)
        s_bt = score_sequence(gt, tracks_to_rows(bt_out), seq.length, name=seq.name)
        ours_scores.append(s_ours)
        theirs_scores.append(s_bt)
        total["ours"] += best["ours"]
        total["bytetrack"] += best["bytetrack"]
        total["frames"] += seq.length
        rows.append((seq.name, seq.length, s_ours, s_bt, best["ours"] / seq.length, best["bytetrack"] / seq.length))
    rows.append(("COMBINED", total["frames"], combine(ours_scores), combine(theirs_scores),
                 total["ours"] / total["frames"], total["bytetrack"] / total["frames"]))

    print(f"trackers {trackers.__version__ if hasattr(trackers, '__version__') else '?'}, numpy {np.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}; best of {args.repeats} passes")
    header = (f"{'sequence':<15}{'frames':>7}  {'HOTA ours':>9} {'HOTA BT':>8} {'ratio':>6}  "
              f"{'MOTA ours':>9} {'MOTA BT':>8}  {'IDF1 ours':>9} {'IDF1 BT':>8}  "
              f"{'ms/frame ours':>13} {'ms/frame BT':>11} {'time ratio':>10}")
    print(header)
    report = []
    for name, n, a, b, ta, tb in rows:
        print(f"{name:<15}{n:>7}  {100 * a.HOTA:>9.2f} {100 * b.HOTA:>8.2f} {a.HOTA / max(b.HOTA, 1e-9):>6.3f}  "
              f"{100 * a.MOTA:>9.2f} {100 * b.MOTA:>8.2f}  {100 * a.IDF1:>9.2f} {100 * b.IDF1:>8.2f}  "
              f"{1000 * ta:>13.4f} {1000 * tb:>11.4f} {ta / tb:>10.3f}")
        report.append({"sequence": name, "frames": n, "ours": {**a.summary(), "ms_per_frame": 1000 * ta},
                       "bytetrack": {**b.summary(), "ms_per_frame": 1000 * tb},
                       "hota_ratio": a.HOTA / max(b.HOTA, 1e-9), "time_ratio": ta / tb})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
