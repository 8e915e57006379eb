"""Simulated appearance, calibrated on real video.

Two halves:

- :func:`measure_mot` measures what the camera node's colour descriptor
  (:mod:`storesense.edge.camera.appearance`) can do on real video: it reads a
  MOTChallenge sequence's video and ground-truth boxes, computes the descriptor
  of every annotated person in every frame (regions from fixed shares of the
  box: the ground truth has no keypoints), and returns the distances between
  descriptors of the same person and of different people ``gap_s`` apart, with
  ROC AUC, quantiles, the share of different-person pairs that look closer
  than the typical same-person pair (look-alikes), and each person's mean
  histograms. ``python -m storesense.datasets.sim.appearance SEQ_DIR... --out FILE``
  writes that as JSON; the simulator ships the result for the TUD videos in
  ``appearance_calibration.json``.
- :class:`AppearanceModel` draws descriptors for simulated shoppers from it:
  each shopper's base appearance is one measured person's mean histograms
  (drawn with replacement, so some shoppers dress alike; a share
  ``lookalike_share`` is a copy of another shopper in the same scenario),
  each camera shifts the light (lightness bins move towards a neighbour, a
  little hue leaks), each observation is a Dirichlet draw around that whose
  concentration is fitted so that the simulated same-person distances match
  the measured ones at the shortest gap, and a person partly hidden by a
  nearer one gets that share of the nearer one's colours mixed in (as a box
  crop would). Simulated appearance is therefore never easier than the
  measured one: :func:`check_against` compares the two.
"""

from __future__ import annotations

import argparse
import configparser
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...contracts import Appearance
from ...edge.camera.appearance import REGION_BINS, REGIONS, appearance_distance, describe_person, histograms, quantise
from ...errors import StoresenseError

CALIBRATION_PATH = Path(__file__).with_name("appearance_calibration.json")
GAPS_S = (0.5, 5.0, 30.0)


def _read_gt(seq_dir: Path) -> tuple[dict, dict[int, list[tuple[int, float, float, float, float]]]]:
    ini = configparser.ConfigParser()
    ini.read(seq_dir / "seqinfo.ini")
    info = dict(ini["Sequence"])
    frames: dict[int, list] = {}
    for line in (seq_dir / "gt" / "gt.txt").read_text().splitlines():
        p = line.split(",")
        if len(p) < 6 or (len(p) > 6 and float(p[6]) == 0):
            continue
        frames.setdefault(int(p[0]), []).append((int(p[1]), float(p[2]), float(p[3]), float(p[4]), float(p[5])))
    return info, frames


def _overlap(box, others) -> float:
    """Share of ``box`` (x, y, w, h) covered by the union bound of other boxes nearer the camera (lower foot)."""
    x, y, w, h = box
    cover = 0.0
    for ox, oy, ow, oh in others:
        if oy + oh <= y + h:
            continue  # farther away (foot higher in the image)
        iw = max(0.0, min(x + w, ox + ow) - max(x, ox))
        ih = max(0.0, min(y + h, oy + oh) - max(y, oy))
        cover = max(cover, iw * ih / max(w * h, 1.0))
    return cover


def describe_sequence(seq_dir: str | Path) -> list[dict]:
    """Descriptors of every ground-truth person in every frame of a sequence's video.

    Returns dicts: person, frame, ts (s), hist ((2, 12) array), cover (share of
    the box hidden by a nearer annotated person).
    """
    import cv2

    seq_dir = Path(seq_dir)
    info, gt = _read_gt(seq_dir)
    fps = float(info.get("framerate", 25))
    video = next(iter(sorted(seq_dir.glob("*.mp4"))), None)
    if video is None:
        raise StoresenseError(f"{seq_dir}: no .mp4 video to read the people's colours from")
    cap = cv2.VideoCapture(str(video))
    out = []
    index = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        index += 1
        people = gt.get(index, [])
        for pid, x, y, w, h in people:
            app = describe_person(image, (x, y, x + w, y + h))
            if app is None:
                continue
            others = [b[1:] for b in people if b[0] != pid]
            out.append({"person": f"{seq_dir.name}/{pid}", "frame": index, "ts": (index - 1) / fps,
                        "hist": histograms(app), "cover": _overlap((x, y, w, h), others)})
    cap.release()
    if not out:
        raise StoresenseError(f"{seq_dir}: no frame of {video.name} could be read")
    return out


def roc_auc(same: np.ndarray, different: np.ndarray) -> float:
    """Probability that a different-person distance exceeds a same-person one (ties count half)."""
    if not len(same) or not len(different):
        return float("nan")
    both = np.concatenate([same, different])
    ranks = np.argsort(np.argsort(both, kind="mergesort"), kind="mergesort") + 1.0
    # average ranks of ties
    order = np.sort(both)
    _, first, counts = np.unique(order, return_index=True, return_counts=True)
    avg = {v: f + (c + 1) / 2 for v, f, c in zip(order[first], first, counts)}
    ranks = np.array([avg[v] for v in both])
    r_diff = ranks[len(same):].sum()
    n1, n0 = len(different), len(same)
    return float((r_diff - n1 * (n1 + 1) / 2) / (n1 * n0))


def roc_curve(same: np.ndarray, different: np.ndarray, points: int = 21) -> list[tuple[float, float, float]]:
    """(threshold, true-accept rate of same pairs, false-accept rate of different pairs) at distance thresholds."""
    ts = np.quantile(np.concatenate([same, different]), np.linspace(0, 1, points))
    return [(round(float(t), 4), round(float((same <= t).mean()), 4), round(float((different <= t).mean()), 4))
            for t in ts]


def measure_mot(seq_dirs, gaps_s=GAPS_S, tol_frames: int = 2, max_cover: float = 0.3) -> dict:
    """Same- and different-person descriptor distances on MOT sequences (see the module docstring).

    Pairs are taken ``gap_s`` apart (± ``tol_frames``) within each sequence
    (one camera each: the TUD videos have no second view, so no cross-camera
    figure); only people hidden by less than ``max_cover`` of their box count,
    and the occluded ones are reported separately.
    """
    rows = []
    for d in seq_dirs:
        rows += describe_sequence(d)
    result: dict = {"sequences": [Path(d).name for d in seq_dirs], "descriptors": len(rows), "gaps": {}}
    by_seq: dict[str, list[dict]] = {}
    for r in rows:
        by_seq.setdefault(r["person"].split("/")[0], []).append(r)
    for gap in gaps_s:
        same, diff, occl_same = [], [], []
        for seq_rows in by_seq.values():
            fps = 25.0
            by_frame: dict[int, list[dict]] = {}
            for r in seq_rows:
                by_frame.setdefault(r["frame"], []).append(r)
            g = int(round(gap * fps))
            for f, now in by_frame.items():
                later = []
                for k in range(g - tol_frames, g + tol_frames + 1):
                    if k > 0 and f + k in by_frame:
                        later = by_frame[f + k]
                        break
                for a in now:
                    for b in later:
                        d = appearance_distance(a["hist"], b["hist"])
                        clear = a["cover"] < max_cover and b["cover"] < max_cover
                        if a["person"] == b["person"]:
                            (same if clear else occl_same).append(d)
                        elif clear:
                            diff.append(d)
        same_a, diff_a = np.array(same), np.array(diff)
        if not len(same_a) or not len(diff_a):
            result["gaps"][str(gap)] = {"pairs_same": len(same_a), "pairs_different": len(diff_a),
                                        "note": "the sequences are too short for this gap"}
            continue
        median_same = float(np.median(same_a))
        result["gaps"][str(gap)] = {
            "pairs_same": len(same_a), "pairs_different": len(diff_a), "pairs_same_occluded": len(occl_same),
            "auc": round(roc_auc(same_a, diff_a), 4),
            "same_quantiles": [round(float(q), 4) for q in np.quantile(same_a, [0.1, 0.25, 0.5, 0.75, 0.9])],
            "different_quantiles": [round(float(q), 4) for q in np.quantile(diff_a, [0.1, 0.25, 0.5, 0.75, 0.9])],
            "same_occluded_median": round(float(np.median(occl_same)), 4) if occl_same else None,
            "lookalike_share": round(float((diff_a < median_same).mean()), 4),
            "roc": roc_curve(same_a, diff_a),
        }
    people: dict[str, list[np.ndarray]] = {}
    for r in rows:
        if r["cover"] < max_cover:
            people.setdefault(r["person"], []).append(r["hist"])
    result["people"] = {p: [round(float(v), 4) for v in np.mean(h, axis=0).ravel()]
                        for p, h in sorted(people.items()) if len(h) >= 10}
    return result


@lru_cache(maxsize=2)
def load_calibration(path: str = str(CALIBRATION_PATH)) -> dict:
    """The measured calibration (see :func:`measure_mot`)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoresenseError(f"{path}: no appearance calibration; run python -m "
                              "storesense.datasets.sim.appearance SEQ_DIR... --out FILE") from None


def _normalise(h: np.ndarray) -> np.ndarray:
    s = h.sum(axis=-1, keepdims=True)
    return np.divide(h, s, out=np.zeros_like(h), where=s > 0)


class AppearanceModel:
    """Draws appearance descriptors for simulated shoppers, calibrated on real video (module docstring)."""

    def __init__(self, calibration: dict | None = None, *, lookalike_share: float = 0.1,
                 light_shift: float = 0.15, concentration: float | None = None):
        cal = calibration or load_calibration()
        self.pool = np.array(list(cal["people"].values()), dtype=float).reshape(-1, len(REGIONS), REGION_BINS)
        if not len(self.pool):
            raise StoresenseError("appearance calibration has no people")
        self.pool = _normalise(self.pool + 1e-3)
        #: the lowest AUC measured at any gap: simulated appearance is fitted to be no easier
        self.target_auc = min(float(g["auc"]) for g in cal["gaps"].values() if "auc" in g)
        self.lookalike_share = lookalike_share
        self.light_shift = light_shift
        self.concentration = concentration or self._fit_concentration()

    def base(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Base appearances (n, 2, 12) of ``n`` shoppers: measured people, some copied (look-alikes)."""
        idx = rng.integers(len(self.pool), size=n)
        base = self.pool[idx].copy()
        # a person's own variety on top of the measured pool (a different shirt of similar colours)
        base = _normalise(np.stack([rng.dirichlet(b * 150.0 + 0.05) for b in base.reshape(-1, REGION_BINS)]
                                   ).reshape(n, len(REGIONS), REGION_BINS)) if n else base
        for i in range(1, n):
            if rng.random() < self.lookalike_share:
                base[i] = base[int(rng.integers(i))]
        return base

    def camera_light(self, rng: np.random.Generator) -> np.ndarray:
        """A camera's lighting as a (12, 12) bin-transfer matrix: lightness moves a step, some hue leaks."""
        m = np.eye(REGION_BINS)
        step = 1 if rng.random() < 0.5 else -1
        s = float(rng.uniform(0, self.light_shift))
        for k in range(8, REGION_BINS):
            j = min(max(k + step, 8), REGION_BINS - 1)
            m[k, k] -= s
            m[k, j] += s
        for k in range(8):  # hue spills into the neighbouring hue bins
            m[k, k] -= s / 2
            m[k, (k + 1) % 8] += s / 4
            m[k, (k - 1) % 8] += s / 4
        return m

    def draw(self, rng: np.random.Generator, base: np.ndarray, light: np.ndarray, mix: np.ndarray | None = None,
             cover: np.ndarray | None = None) -> np.ndarray:
        """Observed histograms (n, 2, 12): ``base`` (n, 2, 12) under ``light``, mixed with ``mix`` by ``cover``."""
        mean = base @ light
        if mix is not None and cover is not None:
            c = np.clip(cover, 0, 1)[:, None, None]
            mean = (1 - c) * mean + c * (mix @ light)
        alpha = np.maximum(mean, 0) * self.concentration + 0.02
        g = rng.gamma(alpha)
        return _normalise(g)

    def _fit_concentration(self) -> float:
        """The Dirichlet concentration whose simulated ROC AUC matches the lowest measured one (bisection).

        Same camera, no occlusion: the simulated same-person and different-person
        distances then separate no better than the real ones at any measured gap.
        """
        lo, hi = 2.0, 2000.0
        for _ in range(24):
            mid = math.sqrt(lo * hi)
            if _auc_of(self, mid) > self.target_auc:
                hi = mid  # too easy: noisier draws
            else:
                lo = mid
        return lo


def _auc_of(model: "AppearanceModel", concentration: float, n: int = 300) -> float:
    """Simulated same/different AUC of ``model`` at ``concentration`` (fixed seed: deterministic)."""
    rng = np.random.default_rng(12)
    base = model.base(rng, n)
    light = np.eye(REGION_BINS)
    alpha_a = np.maximum(base @ light, 0) * concentration + 0.02
    a = _normalise(rng.gamma(alpha_a))
    b = _normalise(rng.gamma(alpha_a))
    same = np.array([appearance_distance(x, y) for x, y in zip(a, b)])
    diff = np.array([appearance_distance(x, y) for x, y in zip(a, np.roll(b, 1, axis=0))])
    return roc_auc(same, diff)


def to_appearance(hist: np.ndarray, quality: float = 1.0) -> dict:
    """Message fields of an :class:`~storesense.contracts.Appearance` from (2, 12) histograms."""
    return {"bins": tuple(b for region in hist for b in quantise(region)), "quality": round(float(quality), 2)}


def check_against(calibration: dict, model: AppearanceModel, rng_seed: int = 0, n: int = 400) -> dict:
    """Simulated vs measured: same-person median distance and AUC at the shortest gap (same camera)."""
    rng = np.random.default_rng(rng_seed)
    base = model.base(rng, n)
    light = model.camera_light(rng)
    a = model.draw(rng, base, light)
    b = model.draw(rng, base, light)
    same = np.array([appearance_distance(x, y) for x, y in zip(a, b)])
    diff = np.array([appearance_distance(x, y) for x, y in zip(a, np.roll(b, 1, axis=0))])
    gaps = {g: r for g, r in calibration["gaps"].items() if "auc" in r}
    return {"simulated_same_median": round(float(np.median(same)), 4),
            "measured_same_median": {g: r["same_quantiles"][2] for g, r in gaps.items()},
            "simulated_auc": round(roc_auc(same, diff), 4), "measured_auc": {g: r["auc"] for g, r in gaps.items()}}


def main(argv=None) -> None:
    """Measure the descriptor on MOT sequences and write the calibration JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seq_dirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    args = ap.parse_args(argv)
    result = measure_mot(args.seq_dirs)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    load_calibration.cache_clear()
    summary = {g: {k: v for k, v in r.items() if k != "roc"} for g, r in result["gaps"].items()}
    print(json.dumps(summary, indent=1))
    print(json.dumps(check_against(result, AppearanceModel(result))))


if __name__ == "__main__":
    main()
