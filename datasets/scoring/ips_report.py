"""The ``storesense eval ips`` report: comparison table and figures (PNG, matplotlib Agg).

:func:`evaluate_kolakowski` runs every method on the robot test track of the
Kolakowski dataset (optionally only its first ``limit`` samples), scores the
walking test against its reference path (distance to the path: it has no
timed truth), and writes:

``ips_error_cdf.png``   the error CDF of every method on the robot track
``ips_tracks.png``      estimated vs true track over the flat's walls, one panel per method
``ips_walk.png``        the fused tracker on the walking test over its reference path
``ips_results.json``    the figures of the table

:func:`evaluate_recording` does the same for the project's own recording
format: a JSONL recording of ``ble_sighting`` messages, a truth CSV and a store
config (and optionally a radio map CSV).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..loaders.kolakowski import KolakowskiDataset, track_sightings
from .ips import (METHODS, Choice, IpsSetup, Score, choose_by_track_cv, cross_validate, default_grid,
                  kolakowski_folds, load_truth_csv, recording_folds, run_method,
                  score_against_truth, score_fixes, setup_from_config, setup_from_dataset, with_params)
from ...ips.model import Fix

LABELS = {
    "trilateration": "trilateration (single shot)",
    "fingerprint": "fingerprinting kNN (single shot)",
    "kalman": "Kalman fusion of both",
    "particle": "particle filter (fused tracker)",
    "fused": "Kalman fusion of trilateration, kNN and the particle filter",
}


@dataclass
class IpsReport:
    """What an evaluation produced: scores per method, extra rows, and the files written."""

    title: str
    scores: dict[str, Score]
    files: list[Path] = field(default_factory=list)
    walk: dict[str, dict[str, float]] = field(default_factory=dict)
    cv: dict[str, dict[str, float]] = field(default_factory=dict)
    fits: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    choices: dict[str, Choice] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One row per method: median, p90, mean error (m), fixes and coverage."""
        return [{"method": m, **s.summary()} for m, s in self.scores.items()]

    def to_json(self) -> dict:
        """Everything in the table, as plain data."""
        return {"title": self.title, "rows": self.rows(), "per_tag": self.per_tag(), "walk": self.walk, "cv": self.cv,
                "fits": self.fits, "settings": self.settings,
                "choices": {m: c.to_json() for m, c in self.choices.items()},
                "config": self.config_snippet()}

    def config_snippet(self) -> dict | None:
        """The store config's ``ble`` settings the search chose for the fusion node's method (Kalman fusion)."""
        c = self.choices.get("kalman")
        if c is None:
            return None
        return {"ble": {"history_s": c.chosen["history_s"]}}

    def per_tag(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per method, per tag: median, p90, mean error (m) and the fix count."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for m, s in self.scores.items():
            tags = np.array([f.tag for f in s.fixes])
            for tag in sorted(set(tags.tolist())):
                e = s.errors[tags == tag]
                out.setdefault(m, {})[tag] = {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)),
                                              "mean": float(e.mean()), "n": int(len(e))}
        return out


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_error_cdf(scores: dict[str, Score], path: Path, title: str) -> Path:
    """Empirical CDF of the position error per method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, s in scores.items():
        e = np.sort(s.errors)
        if len(e):
            ax.plot(e, np.arange(1, len(e) + 1) / len(e),
                    label=f"{LABELS.get(m, m)}: median {np.median(e):.2f} m, p90 {np.percentile(e, 90):.2f} m")
    ax.axvline(0.9, color="grey", ls=":", lw=1)
    ax.axvline(1.8, color="grey", ls="--", lw=1)
    ax.set_xlim(0, 5)
    ax.set_ylim(0, 1)
    ax.set_xlabel("position error (m)")
    ax.set_ylabel("share of fixes")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_floor(ax, outline, anchors) -> None:
    poly = np.asarray(list(outline) + [outline[0]])
    ax.plot(poly[:, 0], poly[:, 1], color="black", lw=1.5)
    for a in anchors.values():
        ax.plot(a.x, a.y, marker="^", color="tab:blue", ms=8)
        ax.annotate(a.id.replace("anchor-", "A"), (a.x, a.y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_aspect("equal")
    ax.grid(alpha=0.2)


def plot_tracks(scores: dict[str, Score], outline, anchors, path: Path, title: str) -> Path:
    """Estimated vs true track over the floor, one panel per method."""
    plt = _plt()
    n = len(scores)
    cols = 2 if n > 1 else 1
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 5.2 * rows), squeeze=False)
    for ax, (m, s) in zip(axes.ravel(), scores.items()):
        _draw_floor(ax, outline, anchors)
        if len(s.truth):
            tags = np.array([f.tag for f in s.fixes])
            est = np.array([[f.x, f.y] for f in s.fixes])
            names = sorted(set(tags.tolist()))
            for i, tag in enumerate(names):  # one line per tag: a recording's tags are separate walks
                sel = tags == tag
                one = len(names) == 1
                ax.plot(s.truth[sel, 0], s.truth[sel, 1], color="tab:green" if one else f"C{i % 10}", lw=2,
                        alpha=1.0 if one else 0.5, label="true" if one else f"{tag} true")
                ax.plot(est[sel, 0], est[sel, 1], color="tab:red" if one else f"C{i % 10}", lw=0.8, alpha=0.8,
                        marker=".", ms=2, ls="-" if one else "--", label="estimated" if one else f"{tag} estimated")
            ax.set_title(f"{LABELS.get(m, m)}\nmedian {np.median(s.errors):.2f} m, p90 {np.percentile(s.errors, 90):.2f} m",
                         fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def distance_to_path(points: np.ndarray, segments) -> np.ndarray:
    """Distance (m) from each point to the nearest segment of a polyline path."""
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    best = np.full(len(p), np.inf)
    for (x0, y0), (x1, y1) in segments:
        a, b = np.array([x0, y0]), np.array([x1, y1])
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.hypot(*(a + t[:, None] * ab - p).T))
    return best


def plot_walk(fixes: list[Fix], segments, outline, anchors, path: Path, title: str) -> Path:
    """The walking test: estimated track over the reference path."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    _draw_floor(ax, outline, anchors)
    for i, ((x0, y0), (x1, y1)) in enumerate(segments):
        ax.plot([x0, x1], [y0, y1], color="tab:green", lw=2.5, label="reference path" if i == 0 else None)
    est = np.array([[f.x, f.y] for f in fixes]).reshape(-1, 2)
    ax.plot(est[:, 0], est[:, 1], color="tab:red", lw=0.8, marker=".", ms=2, alpha=0.8, label="estimated")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate_kolakowski(root: str | Path, out_dir: str | Path, *, methods=METHODS, limit: int | None = None,
                        cv: bool = False, walk: bool = True, plots: bool = True, params: dict | None = None,
                        choose: bool = False, progress: Callable[[str], None] | None = None) -> IpsReport:
    """Score the methods on the robot test track, the walk test, and optionally cross-validation.

    With ``choose``, each method's observation window (and the particle
    filter's map bandwidth) is first chosen by leave-one-track-out over the
    calibration runs (:func:`~.ips.choose_by_track_cv`), and the robot track
    and walk test are then run with those choices (never seen by the search).
    """
    ds = KolakowskiDataset(root)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    setup = setup_from_dataset(ds, params=params)
    track = ds.robot_track()
    if limit is not None:
        track = track.subset(slice(0, int(limit)))
    choices = _choose(kolakowski_folds(ds, params), methods, setup, progress) if choose else {}
    setups = {m: with_params(setup, choices[m].chosen) if m in choices else setup for m in methods}
    scores = {}
    sightings = track_sightings(track)
    for m in methods:
        if progress:
            progress(m)
        scores[m] = score_fixes(m, run_method(setups[m], m, sightings), track)
    report = IpsReport(f"Kolakowski 2021, robot test track ({len(track)} samples)", scores,
                       fits=[f.as_row() for f in setup.fits.values()], choices=choices,
                       settings={"tag_height": setup.tag_height, "window_s": float(setup.params["window_s"]),
                                 "history_s": {m: setups[m].history_s(m) for m in methods},
                                 "map_bandwidth_m": setups.get("particle", setup).map_bandwidth_m})
    if walk:
        wt = ds.walk_track()
        if limit is not None:
            wt = wt.subset(slice(0, int(limit)))
        segs = ds.walk_reference()
        walk_fixes = {}
        for m in methods:
            if progress:
                progress(f"walk: {m}")
            walk_fixes[m] = run_method(setups[m], m, track_sightings(wt))
            d = distance_to_path(np.array([[f.x, f.y] for f in walk_fixes[m]]), segs)
            report.walk[m] = {"median": float(np.median(d)), "p90": float(np.percentile(d, 90)), "n": int(len(d))}
        if plots:
            best = "particle" if "particle" in walk_fixes else methods[-1]
            report.files.append(plot_walk(walk_fixes[best], segs, ds.layout, setup.anchors, out / "ips_walk.png",
                                          f"walking test, {LABELS.get(best, best)}: distance to the reference path "
                                          f"median {report.walk[best]['median']:.2f} m"))
    if cv:
        if progress:
            progress("cross-validation")
        for m, s in cross_validate(ds, params=params, methods=tuple(methods)).items():
            report.cv[m] = s.summary()
    if plots:
        report.files.append(plot_error_cdf(scores, out / "ips_error_cdf.png", report.title))
        report.files.append(plot_tracks(scores, ds.layout, setup.anchors, out / "ips_tracks.png", report.title))
    (out / "ips_results.json").write_text(json.dumps(report.to_json(), indent=1))
    report.files.append(out / "ips_results.json")
    return report


def evaluate_recording(config, recording: str | Path, truth: str | Path, out_dir: str | Path, *,
                       radio_map_path: str | Path | None = None, methods=None, plots: bool = True,
                       params: dict | None = None, tag_height: float | None = None, choose: bool = False,
                       progress: Callable[[str], None] | None = None) -> IpsReport:
    """Score the methods on sightings (a walk-test CSV ``ts,node,tag,rssi`` or a JSONL recording) against a truth CSV.

    ``params`` override the positioning parameters (e.g. ``{"history_s": 2.0}``), ``tag_height`` the
    config's ``ble.tag_height``. With ``choose``, each method's window (and the particle filter's
    map bandwidth) is chosen by leave-one-track-out over the tags (one walked track per tag); the
    table is then run with those choices on the same tracks (in-sample: optimistic), the
    cross-validated figure of each choice is in ``report.choices``.
    """
    from ...errors import StoresenseError
    from ...ips.radiomap import RadioMap
    from ..loaders.walk_test import load_sightings

    rmap = RadioMap.load_csv(radio_map_path) if radio_map_path else None
    setup: IpsSetup = setup_from_config(config, radio_map=rmap, params=params, tag_height=tag_height)
    if methods is None:
        methods = METHODS if rmap is not None else ("trilateration", "kalman", "particle")
    sightings = load_sightings(recording)
    known = set(setup.anchors)
    strangers = sorted({m.node for m in sightings} - known)
    if strangers and not any(m.node in known for m in sightings):
        raise StoresenseError(f"{recording}: no sighting is from a configured BLE node (nodes {', '.join(strangers[:5])}"
                              f"; the config has {', '.join(sorted(known))})")
    true = load_truth_csv(truth)
    choices = _choose(recording_folds(setup, sightings, true), methods, setup, progress) if choose else {}
    setups = {m: with_params(setup, choices[m].chosen) if m in choices else setup for m in methods}
    scores = {}
    for m in methods:
        if progress:
            progress(m)
        scores[m] = score_against_truth(m, run_method(setups[m], m, sightings), true)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{Path(recording).name}: {len(sightings)} sightings, {len(true)} tags"
    if choices:
        title += " (parameters chosen on these tracks: optimistic, see the cross-validated figures)"
    report = IpsReport(title, scores, choices=choices,
                       settings={"tag_height": setup.tag_height, "window_s": float(setup.params["window_s"]),
                                 "history_s": {m: setups[m].history_s(m) for m in methods},
                                 "map_bandwidth_m": (setups.get("particle", setup).map_bandwidth_m
                                                     if rmap is not None else None),
                                 "unknown_nodes": strangers})
    if plots:
        report.files.append(plot_error_cdf(scores, out / "ips_error_cdf.png", report.title))
        report.files.append(plot_tracks(scores, config.floor.outline, setup.anchors, out / "ips_tracks.png",
                                        report.title))
    (out / "ips_results.json").write_text(json.dumps(report.to_json(), indent=1))
    report.files.append(out / "ips_results.json")
    return report


def _choose(folds, methods, setup: IpsSetup, progress) -> dict[str, Choice]:
    """Each method's leave-one-track-out choice over its :func:`~.ips.default_grid`."""
    bandwidth = setup.map_bandwidth_m if setup.radio_map is not None else None
    return {m: choose_by_track_cv(folds, m, default_grid(m, setup.radio_map is not None, bandwidth),
                                  progress=progress) for m in methods}
