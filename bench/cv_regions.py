"""Leave-one-footage-out cross-validation of gated detection's ``motion_threshold``, ``margin`` and track looks.

How ``detector.regions`` was chosen (docs/benchmarks.md, "Gated detection"). Gating is stateful
(a running background, detections held for a few frames), so each setting runs the camera node's
whole detector over every frame of each sequence afresh: no cache. Sequences are grouped by
footage (a proxy made by ``storesense datasets mot-rescale`` from TUD-Campus belongs with
TUD-Campus); each fold picks, on the other footage, the setting with the best 40-80 px recall
subject to 40-80 px and overall precision >= 90 %, and is scored on the held-out footage; the
pooled held-out figures are the CV result. The per-setting figures on all footage are in-sample.

    python bench/cv_regions.py /tmp/proxy/TUD-Campus-x0.25-0.3-0.35-0.45 \\
        /tmp/proxy/TUD-Stadtmitte-x0.25-0.3-0.35-0.45 --json cv-regions.json

The default grid (motion threshold 12 / 18 / 25 x margin 0 / 0.1 / 0.25) takes about ten minutes
on two idle cores; ``--grid 18:0.1 25:0.1`` runs chosen settings only, and
``--grid 18:0.1 18:0.1:8:96`` adds ``track_looks`` and ``track_look_px`` (how the track looks were chosen);
a fifth field sets ``full_scan_frames`` (``18:0.1:8:96:20``) and a sixth ``carry_frames`` (tracks hidden
behind another carried, ``18:0.1:8:96:40:10``; without it, none are) and a seventh how many frames a carried
track and the track in front must have been seen apart (``18:0.1:8:96:40:10:3``; without it, 0: any covered
track is carried, as before ``CARRY_MIN_APART`` existed); an eighth, the narrowest box kept as a share of its
height (``18:0.1:8:96:40:10:3:0.15``; without it, 0: every box kept, as before ``MIN_BOX_ASPECT`` existed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from storesense.config import DetectorSettings, RegionSettings
from storesense.datasets.loaders.mot import read_sequence
from storesense.datasets.scoring.detection import HEIGHT_BUCKETS, SizeReport
from storesense.datasets.scoring.mot_eval import model_frames, model_tracker, run_tracker
from storesense.edge.camera.detectors import load_detector
from storesense.edge.camera.tiling import build_detector

GRID = [f"{t}:{m}" for t, m in itertools.product((12, 18, 25), (0, 0.1, 0.25))]
MIN_PRECISION = 0.9
#: the height bucket the issue's target is about
BUCKET = "40-80"


def footage(name: str) -> str:
    """The source video of a sequence name (a mot-rescale proxy is named ``<source>-x<scales>``)."""
    return re.sub(r"-x[0-9.\-]+$", "", name)


def counts(sizes: SizeReport) -> dict[str, tuple[int, int, int, int]]:
    """(matched ground truth, ground truth, matched detections, detections): the 40-80 px bucket and all sizes."""
    k = next(i for i, (label, _, _) in enumerate(HEIGHT_BUCKETS) if label == BUCKET)
    return {"40-80": (int(sizes.gt_matched[k]), int(sizes.gt[k]), int(sizes.det_matched[k]), int(sizes.det[k])),
            "all": (int(sizes.gt_matched.sum()), int(sizes.gt.sum()), int(sizes.det_matched.sum()),
                    int(sizes.det.sum()))}


def parse_setting(setting: str) -> RegionSettings:
    """``MOTION_THRESHOLD:MARGIN[:TRACK_LOOKS:TRACK_LOOK_PX[:FULL_SCAN_FRAMES[:CARRY_FRAMES[:MIN_APART[:MIN_ASPECT]]]]]``
    as region settings (the rest at their defaults; without the looks, no track looks, and without CARRY_FRAMES no carried
    tracks, as before they existed)."""
    expected = (f"{setting!r}: expected "
                "MOTION_THRESHOLD:MARGIN[:TRACK_LOOKS:TRACK_LOOK_PX[:FULL_SCAN_FRAMES[:CARRY_FRAMES[:MIN_APART[:MIN_ASPECT]]]]]")
    try:
        v = [float(x) for x in setting.split(":")]
    except ValueError:
        raise ValueError(f"{expected}, numbers") from None
    if len(v) not in (2, 4, 5, 6, 7, 8):
        raise ValueError(expected)
    looks = dict(track_looks=int(v[2]), track_look_px=int(v[3])) if len(v) >= 4 else dict(track_looks=0)
    if len(v) >= 5:
        looks["full_scan_frames"] = int(v[4])
    # without a sixth field, no carried tracks, as before they existed (older grids keep their figures)
    looks["carry_frames"] = int(v[5]) if len(v) >= 6 else 0
    try:
        return RegionSettings(enabled=True, motion_threshold=v[0], margin=v[1], **looks)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"{setting!r}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def parse_min_apart(setting: str) -> int:
    """The seventh field of a setting, frames a carried track must have been seen apart from the one in front
    (``CoveredTracks.min_apart``); 0 without it, as before that rule existed."""
    v = setting.split(":")
    if len(v) < 7:
        return 0
    n = float(v[6])
    if n < 0 or n != int(n):
        raise ValueError(f"{setting!r}: the seventh field (frames seen apart) must be a whole number >= 0")
    return int(n)


def parse_min_aspect(setting: str) -> float:
    """The eighth field of a setting, the narrowest box kept as a share of its height (``TiledDetector.min_aspect``);
    0 without it (every box kept), as before that rule existed."""
    v = setting.split(":")
    if len(v) < 8:
        return 0.0
    a = float(v[7])
    if not 0 <= a < 1:
        raise ValueError(f"{setting!r}: the eighth field (narrowest box, width / height) must be in [0, 1)")
    return a


def run_setting(seq_dirs: list[Path], regions: RegionSettings, min_apart: int = 0,
                min_aspect: float = 0.0) -> dict[str, dict]:
    """Counts per sequence for one gating setting (a fresh detector per sequence: gating has state).

    The sequence is tracked as ``eval mot`` does (the node's tracker), so a gated detector gets the
    live tracks before each frame: track looks need them."""
    result = {}
    for d in seq_dirs:
        seq = read_sequence(d)
        settings = DetectorSettings(regions=regions)
        detector = build_detector(load_detector(settings), settings)
        if getattr(detector, "covered", None) is not None:
            detector.covered.min_apart = min_apart
        detector.min_aspect = min_aspect
        tracker = model_tracker(detector, seq.frame_rate)
        sizes = SizeReport()
        run_tracker(tracker, model_frames(seq, detector, sizes=sizes, tracker=tracker))
        result[seq.name] = counts(sizes)
    return result


def rates(parts: list[tuple[int, int, int, int]]) -> tuple[float, float]:
    """Recall and precision of summed counts."""
    tp, gt, td, det = (sum(p[i] for p in parts) for i in range(4))
    return (tp / gt if gt else 0.0), (td / det if det else 0.0)


def cross_validate(results: dict[str, dict[str, dict]], rule: str = "best") -> dict:
    """Each footage held out in turn: the setting picked on the rest, scored on it; pooled at the end.

    ``rule``: ``"best"`` picks the eligible setting with the best 40-80 px recall on the training footage;
    ``"one-se"`` (the one-standard-error rule) takes every eligible setting whose recall is within one binomial
    standard error of that best, sqrt(r (1 - r) / n) on the training footage's n 40-80 px people, and picks the one
    with the best 40-80 px precision among them: a recall gain smaller than the noise does not buy false boxes.
    """
    if rule not in ("best", "one-se"):
        raise ValueError(f"rule {rule!r}: expected 'best' or 'one-se'")
    names = sorted(next(iter(results.values())))
    groups = sorted({footage(n) for n in names})
    folds, held = [], []
    for out in groups:
        train = [n for n in names if footage(n) != out]
        test = [n for n in names if footage(n) == out]

        def ok(key):
            r40, p40 = rates([results[key][n]["40-80"] for n in train])
            _, p_all = rates([results[key][n]["all"] for n in train])
            return p40 >= MIN_PRECISION and p_all >= MIN_PRECISION, r40

        eligible = [k for k in results if ok(k)[0]] or list(results)
        best = max(eligible, key=lambda k: (ok(k)[1], k))
        if rule == "one-se":
            r_best = ok(best)[1]
            n = sum(results[best][m]["40-80"][1] for m in train)
            se = (r_best * (1 - r_best) / n) ** 0.5 if n else 0.0
            near = [k for k in eligible if ok(k)[1] >= r_best - se - 1e-12]
            best = max(near, key=lambda k: (rates([results[k][m]["40-80"] for m in train])[1], ok(k)[1], k))
        parts = [results[best][n]["40-80"] for n in test]
        r, p = rates(parts)
        folds.append({"held_out": out, "picked": best, "recall_40_80": round(r, 4), "precision_40_80": round(p, 4)})
        held += parts
    r, p = rates(held)
    return {"folds": folds, "pooled_held_out": {"recall_40_80": round(r, 4), "precision_40_80": round(p, 4)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sequences", nargs="*", type=Path, help="MOT sequence folders (the rescaled proxies)")
    ap.add_argument("--grid", nargs="+", default=GRID,
                    help="settings as MOTION_THRESHOLD:MARGIN[:TRACK_LOOKS:TRACK_LOOK_PX[:FULL_SCAN_FRAMES[:CARRY_FRAMES"
                    "[:MIN_APART[:MIN_ASPECT]]]]]")
    ap.add_argument("--json", type=Path, help="write every setting's counts and the CV result here")
    ap.add_argument("--rule", choices=("best", "one-se"), default="best",
                    help="how a fold picks: the best 40-80 px recall (default), or the best precision among the settings "
                    "within one standard error of that recall (one-se)")
    ap.add_argument("--from-json", type=Path, help="cross-validate the counts of an earlier --json run (nothing runs)")
    a = ap.parse_args(argv)
    if a.from_json is not None:
        if a.sequences:
            ap.error("--from-json cross-validates saved counts: give no sequences")
        try:
            results = json.loads(a.from_json.read_text())["settings"]
        except (OSError, ValueError, KeyError) as e:
            ap.error(f"--from-json {a.from_json}: not the --json of a cv_regions run ({e})")
        a.grid = []
    elif len({footage(d.name) for d in a.sequences}) < 2:
        ap.error("cross-validation needs sequences from at least two footages")
    else:
        results = {}
    try:  # every setting checked before the first one runs for minutes
        settings = {setting: parse_setting(setting) for setting in a.grid}
        apart = {setting: parse_min_apart(setting) for setting in a.grid}
        aspect = {setting: parse_min_aspect(setting) for setting in a.grid}
    except ValueError as e:
        ap.error(f"--grid {e}")
    for k, setting in enumerate(a.grid, 1):
        start = time.perf_counter()
        results[setting] = run_setting(a.sequences, settings[setting], apart[setting], aspect[setting])
        r, p = rates([c["40-80"] for c in results[setting].values()])
        print(f"[{k}/{len(a.grid)}] {setting}: 40-80 px recall {100 * r:.1f} % at {100 * p:.1f} % (in sample, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)
    cv = cross_validate(results, a.rule)
    print(f"rule: {a.rule}")
    for f in cv["folds"]:
        print(f"hold out {f['held_out']}: picks {f['picked']}, 40-80 px recall {100 * f['recall_40_80']:.1f} % "
              f"at {100 * f['precision_40_80']:.1f} %")
    pooled = cv["pooled_held_out"]
    print(f"pooled held-out 40-80 px recall {100 * pooled['recall_40_80']:.1f} % at "
          f"{100 * pooled['precision_40_80']:.1f} %")
    if a.json:
        a.json.write_text(json.dumps({"command": " ".join(sys.argv), "rule": a.rule, "settings": results, **cv},
                                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
