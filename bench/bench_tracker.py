"""Benchmark: our CameraTracker against roboflow's ByteTrack (``trackers`` package) on MOT15 public detections.

Every tracker gets the same per-frame detections (``det/det.txt``), built before timing;
only the ``update`` calls are timed, over several passes (the best pass is kept), the
trackers taking turns within each pass, in one process. All outputs are scored by
:mod:`storesense.datasets.scoring` (TrackEval's MOTChallenge conventions).

Four configurations: each tracker with its constructor defaults, and each with the
parameters found by ``bench/tune_tracker.py`` on these same five sequences (the only
MOT sequences with ground truth we have, so the tuned figures are optimistic for both).

Needs roboflow's ``trackers`` 2.6.x and ``supervision`` (``trackers`` pulls in the GUI
``opencv-python`` next to our ``opencv-python-headless``; install it without its deps)::

    pip install supervision pydeprecate && pip install --no-deps 'trackers==2.6.1'
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

from storesense.datasets.loaders.mot import detections_per_frame, read_sequence, tracks_to_rows
from storesense.datasets.scoring.mot_eval import tracker_for
from storesense.datasets.scoring import combine, score_sequence
from storesense.edge.camera.detections import Detections
from storesense.edge.camera.tracker import CameraTracker

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mot15"

#: ByteTrack parameters found by ``python bench/tune_tracker.py --tracker bytetrack`` on the five sequences.
BYTETRACK_TUNED = {"lost_track_buffer": 5, "track_activation_threshold": 0.9, "minimum_iou_threshold": 0.3,
                   "high_conf_det_threshold": 0.8, "minimum_consecutive_frames": 1}


def run_ours(tracker: CameraTracker, frames: list[Detections]) -> tuple[float, list]:
    """One pass of our tracker: (seconds in update, [(frame, tracked)])."""
    tracker.reset()
    out = []
    start = time.perf_counter()
    for t, dets in enumerate(frames, 1):
        out.append((t, tracker.update(dets, t)))
    return time.perf_counter() - start, out


def run_bytetrack(seq, frames, **params) -> tuple[float, list]:
    """One pass of trackers.ByteTrackTracker (its defaults unless ``params``) at the sequence's frame rate:
    (seconds in update, [(frame, tracked)])."""
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(frame_rate=seq.frame_rate, **params)
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


CONFIGS = ("ours tuned", "ByteTrack tuned", "ours default", "ByteTrack default")
#: (ours, theirs) pairs whose ratios are printed.
PAIRS = (("ours tuned", "ByteTrack tuned"), ("ours default", "ByteTrack default"), ("ours tuned", "ByteTrack default"))


def bench_sequence(seq, repeats: int) -> dict:
    """Best-of-``repeats`` time and the tracks of every configuration on one sequence."""
    frames = detections_per_frame(seq.public_detections(), seq.length)
    sv_frames = to_supervision(frames)
    tuned, default = tracker_for(seq), CameraTracker()
    runners = {
        "ours tuned": lambda: run_ours(tuned, frames),
        "ByteTrack tuned": lambda: run_bytetrack(seq, sv_frames, **BYTETRACK_TUNED),
        "ours default": lambda: run_ours(default, frames),
        "ByteTrack default": lambda: run_bytetrack(seq, sv_frames),
    }
    best = {name: (np.inf, None) for name in CONFIGS}
    for _ in range(repeats):
        for name in CONFIGS:
            seconds, out = runners[name]()
            if seconds < best[name][0]:
                best[name] = (seconds, out)
    gt = seq.ground_truth()
    return {name: (seconds, score_sequence(gt, tracks_to_rows(out), seq.length, name=seq.name))
            for name, (seconds, out) in best.items()}


def main() -> None:
    """Run the benchmark and print the figures and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sequences", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per tracker (best kept)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--plot", type=Path, help="also draw HOTA and time per frame per sequence (PNG)")
    args = parser.parse_args()
    try:
        import trackers
    except ImportError:
        raise SystemExit("this benchmark needs roboflow's trackers: see the docstring of bench/bench_tracker.py")

    from importlib.metadata import version

    dirs = args.sequences or sorted(p for p in DEFAULT_DATA.iterdir() if (p / "seqinfo.ini").is_file())
    results = {}
    frames = {}
    for d in dirs:
        seq = read_sequence(d)
        results[seq.name] = bench_sequence(seq, args.repeats)
        frames[seq.name] = seq.length
    names = list(results)
    results["COMBINED"] = {c: (sum(results[n][c][0] for n in names), combine([results[n][c][1] for n in names]))
                           for c in CONFIGS}
    frames["COMBINED"] = sum(frames[n] for n in names)

    print(f"trackers {version('trackers')}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}; best of {args.repeats} passes; time = tracker update only")
    print(f"ByteTrack tuned: {BYTETRACK_TUNED}")
    print(f"ours tuned: {tracker_params(tracker_for(read_sequence(dirs[0])))} (max_age_frames per sequence)\n")
    print(f"{'sequence':<15}{'config':<19}{'HOTA':>7}{'MOTA':>7}{'IDF1':>7}{'IDSW':>6}{'ms/frame':>10}")
    report = {"sequences": {}, "ratios": {}}
    for name, by_config in results.items():
        report["sequences"][name] = {}
        for config in CONFIGS:
            seconds, s = by_config[config]
            ms = 1000 * seconds / frames[name]
            print(f"{name:<15}{config:<19}{100 * s.HOTA:>7.2f}{100 * s.MOTA:>7.2f}{100 * s.IDF1:>7.2f}"
                  f"{s.summary()['IDSW']:>6}{ms:>10.4f}")
            report["sequences"][name][config] = {**s.summary(), "ms_per_frame": ms}
        print()
    print(f"{'ratios (ours / ByteTrack)':<45}{'HOTA':>8}{'time/frame':>12}")
    for ours, theirs in PAIRS:
        for name in names + ["COMBINED"]:
            a, b = results[name][ours], results[name][theirs]
            hota, speed = a[1].HOTA / max(b[1].HOTA, 1e-9), a[0] / b[0]
            if name == "COMBINED" or ours == "ours tuned" and theirs == "ByteTrack tuned":
                print(f"{ours + ' / ' + theirs + ', ' + name:<45}{hota:>8.3f}{speed:>12.3f}")
            report["ratios"][f"{ours} / {theirs} / {name}"] = {"hota": hota, "time": speed}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        plot(report, args.plot, args.repeats)


def plot(report: dict, path: Path, repeats: int) -> None:
    """Two bar charts side by side: HOTA and ms per frame, per sequence and configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["sequences"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    width = 0.8 / len(CONFIGS)
    colours = ("tab:blue", "tab:orange", "lightsteelblue", "navajowhite")
    for ax, key, label in ((axes[0], "HOTA", "HOTA (%)"), (axes[1], "ms_per_frame", "tracker time per frame (ms)")):
        for i, config in enumerate(CONFIGS):
            values = [report["sequences"][n][config][key] * (100 if key == "HOTA" else 1) for n in names]
            ax.bar(np.arange(len(names)) + (i - 1.5) * width, values, width, label=config, color=colours[i])
        ax.set_xticks(np.arange(len(names)), names, rotation=20)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"CameraTracker vs ByteTrack (trackers) on MOT15 public detections, best of {repeats} passes")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tracker_params(tracker: CameraTracker) -> dict:
    """The parameters a CameraTracker was built with (for the printout)."""
    keys = ("high_thresh", "low_thresh", "match_iou", "min_hits", "low_match_iou", "lost_match_iou",
            "tentative_match_iou", "new_track_thresh")
    return {k: getattr(tracker, k) for k in keys}


if __name__ == "__main__":
    main()
