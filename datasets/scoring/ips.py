"""Accuracy evaluation of BLE positioning on recorded sightings with known truth.

The evaluation replays sightings (``BleSighting`` messages, the project's own
recording format) through :class:`~storesense.ips.locator.BleLocator` with each
method, exactly as a live system would, and compares each fix with the true
position at its time:

``trilateration``  single-shot weighted least squares on the fitted path-loss models
``fingerprint``    single-shot weighted kNN on the radio map
``kalman``         constant-velocity Kalman filter fusing both single-shot fixes
``particle``       particle filter on the walkable floor, radio-map likelihood (the fused tracker)

:func:`cross_validate` scores parameters without the test track: leave one
calibration run out, build the radio map and path-loss models from the other
runs, track the held-out run, and score only where the other runs cover the
floor (within ``covered_m`` of a fingerprint), as the test track is covered.
That is how :data:`DEFAULT_PARAMS` were chosen (docs/ips.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ...calibration.ble import apply_fits, fit_nodes
from ...contracts import Envelope
from ..loaders.kolakowski import KolakowskiDataset, Track, track_sightings
from ...ips.model import Fix
from ...ips.setup import DEFAULT_PARAMS, METHODS, IpsSetup, make_setup, setup_from_config  # noqa: F401  (ips_report imports them here)
from ...geometry.walkable import Walkable


def setup_from_dataset(ds: KolakowskiDataset, *, index=None, params: dict | None = None,
                       resolution: float = 0.1) -> IpsSetup:
    """Fit the anchors' path loss and build the radio map from the calibration samples (``index`` of them)."""
    from ..loaders.kolakowski import TAG_HEIGHT_M

    rmap = ds.radio_map()
    if index is not None:
        rmap = rmap.subset(index)
    fits = fit_nodes(ds.anchors, rmap.positions, rmap.rssi, rmap.nodes, tag_height=TAG_HEIGHT_M)
    return make_setup(apply_fits(ds.anchors, fits), Walkable(ds.floor_grid(resolution)), rmap, TAG_HEIGHT_M,
                      params, fits)


# --------------------------------------------------------------------------- scoring


@dataclass
class Score:
    """Errors of one method on one track."""

    method: str
    errors: np.ndarray
    fixes: list[Fix]
    truth: np.ndarray
    expected: int

    @property
    def coverage(self) -> float:
        """Share of samples that got a fix."""
        return len(self.errors) / self.expected if self.expected else 0.0

    def summary(self) -> dict[str, float]:
        """median, p90, mean error (m), count and coverage."""
        e = self.errors
        if len(e) == 0:
            return {"median": float("nan"), "p90": float("nan"), "mean": float("nan"), "n": 0, "coverage": 0.0}
        return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "mean": float(e.mean()),
                "n": int(len(e)), "coverage": self.coverage}


def score_fixes(method: str, fixes: list[Fix], track: Track, mask: np.ndarray | None = None) -> Score:
    """Match fixes to the track's samples by timestamp and measure the error (m)."""
    if track.truth is None:
        raise ValueError(f"track {track.name} has no true positions")
    index = {round(float(t), 6): i for i, t in enumerate(track.ts)}
    err, est, truth = [], [], []
    for f in fixes:
        i = index.get(round(float(f.ts), 6))
        if i is None or (mask is not None and not mask[i]):
            continue
        err.append(float(np.hypot(f.x - track.truth[i, 0], f.y - track.truth[i, 1])))
        est.append(f)
        truth.append(track.truth[i])
    expected = int(mask.sum()) if mask is not None else len(track)
    return Score(method, np.array(err), est, np.array(truth).reshape(-1, 2), expected)


def run_method(setup: IpsSetup, method: str, sightings: list[Envelope], seed: int = 0) -> list[Fix]:
    """Replay sightings through a locator with ``method`` trackers."""
    return setup.locator(method, seed).run(sightings)


def evaluate_track(setup: IpsSetup, track: Track, methods=METHODS, seed: int = 0,
                   progress: Callable[[str], None] | None = None) -> dict[str, Score]:
    """Score every method on a track (converted to sightings and replayed)."""
    sightings = track_sightings(track)
    out = {}
    for m in methods:
        if progress:
            progress(m)
        out[m] = score_fixes(m, run_method(setup, m, sightings, seed), track)
    return out


def cross_validate(ds: KolakowskiDataset, params: dict | None = None, methods=("particle",), *,
                   covered_m: float = 0.3, seed: int = 0) -> dict[str, Score]:
    """Leave-one-calibration-run-out scores, counted where the other runs cover the floor."""
    folds = kolakowski_folds(ds, params, covered_m=covered_m)
    pooled = {m: [f.score(m, f.setup({}).locator(m, seed).run(f.sightings)) for f in folds] for m in methods}
    return {m: Score(m, np.concatenate([s.errors for s in ss]), [f for s in ss for f in s.fixes],
                     np.concatenate([s.truth for s in ss]), sum(s.expected for s in ss))
            for m, ss in pooled.items()}


# --------------------------------------------------------------------------- the project's own recordings


def load_truth_csv(path: str | Path) -> dict[str, np.ndarray]:
    """True positions per tag from CSV ``ts,tag,x,y``: tag -> array (n, 3) of ts, x, y sorted by time.

    ``ts`` is seconds or an ISO 8601 time, as in the walk-test sightings (:mod:`..loaders.walk_test`).
    """
    from ...errors import StoresenseError
    from ..loaders.walk_test import parse_ts, read_csv_rows

    path = Path(path)
    out: dict[str, list[tuple[float, float, float]]] = {}
    for n, row in read_csv_rows(path, ("ts", "tag", "x", "y"), "truth"):
        try:
            ts, tag, x, y = parse_ts(row[0]), row[1].strip(), float(row[2]), float(row[3])
        except (ValueError, IndexError):
            raise StoresenseError(f"{path}:{n}: expected 'ts,tag,x,y', got {','.join(row)!r}") from None
        out.setdefault(tag, []).append((ts, x, y))
    if not out:
        raise StoresenseError(f"{path}: no truth rows")
    return {k: np.array(sorted(v)) for k, v in out.items()}


def score_against_truth(method: str, fixes: list[Fix], truth: dict[str, np.ndarray]) -> Score:
    """Error of each fix against its tag's true position, interpolated at the fix's time."""
    err, used, pts = [], [], []
    for f in fixes:
        t = truth.get(f.tag)
        if t is None or not (t[0, 0] <= f.ts <= t[-1, 0]):
            continue
        x, y = np.interp(f.ts, t[:, 0], t[:, 1]), np.interp(f.ts, t[:, 0], t[:, 2])
        err.append(float(np.hypot(f.x - x, f.y - y)))
        used.append(f)
        pts.append((x, y))
    return Score(method, np.array(err), used, np.array(pts).reshape(-1, 2), len(used))


# --------------------------------------------------------------------------- choosing parameters by cross-validation

#: The observation windows (s) the chooser tries by default.
WINDOW_GRID: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)
#: Multiples of the map-spacing bandwidth the chooser tries for the particle filter (with a radio map).
BANDWIDTH_FACTORS: tuple[float, ...] = (0.5, 1.0, 2.0)


@dataclass
class Fold:
    """One track of a leave-one-track-out search: its sightings, how to set it up, how to score it.

    ``setup(params)`` gives the :class:`IpsSetup` to track it with (models and
    map from the other tracks where they come from tracks, as in
    :func:`cross_validate`); ``score(method, fixes)`` its errors.
    """

    name: str
    setup: Callable[[dict], IpsSetup]
    sightings: list[Envelope]
    score: Callable[[str, list[Fix]], Score]


@dataclass
class Choice:
    """What the leave-one-track-out search chose for one method, and its honest (held-out) figure."""

    method: str
    chosen: dict  # parameters chosen on all tracks (what a store would deploy)
    cv: dict  # summary of the pooled held-out errors, each track scored with the choice made without it
    folds: list[dict]  # per held-out track: the choice made without it and its figures
    grid: list[dict]  # every parameter set with its pooled in-sample figures

    def to_json(self) -> dict:
        """Plain data for ``--json``."""
        return {"method": self.method, "chosen": self.chosen, "cv": self.cv, "folds": self.folds, "grid": self.grid}


def criterion(errors: np.ndarray) -> float:
    """What the search minimises: median + p90 of the pooled errors (m); inf without errors."""
    if len(errors) == 0:
        return float("inf")
    return float(np.median(errors) + np.percentile(errors, 90))


def default_grid(method: str, radio_map: bool, bandwidth_m: float | None = None) -> list[dict]:
    """The parameter sets tried for ``method``: the windows of :data:`WINDOW_GRID`, and for the particle
    filter with a radio map also :data:`BANDWIDTH_FACTORS` times the map-spacing bandwidth ``bandwidth_m``."""
    grid = [{"history_s": w} for w in WINDOW_GRID]
    if method == "particle" and radio_map and bandwidth_m:
        grid = [{**g, "map_bandwidth_m": round(f * bandwidth_m, 3)} for g in grid for f in BANDWIDTH_FACTORS]
    return grid


def choose_by_track_cv(folds: list[Fold], method: str, grid: list[dict], *, seed: int = 0,
                       progress: Callable[[str], None] | None = None) -> Choice:
    """Leave one track out: choose ``method``'s parameters from ``grid`` on the other tracks, score the held-out one.

    Every parameter set tracks every fold once; for each held-out track the set
    with the lowest :func:`criterion` on the pooled errors of the other tracks
    is taken and the held-out track's errors under it are pooled into the
    cross-validated figure (``cv``). ``chosen`` is the set with the lowest
    criterion on all tracks (ties: the earlier set in ``grid``).
    """
    if len(folds) < 2:
        raise ValueError(f"leave-one-track-out needs at least 2 tracks, got {len(folds)}")
    errors: list[list[np.ndarray]] = []
    for k, params in enumerate(grid):
        if progress:
            progress(f"{method} {k + 1}/{len(grid)}")
        errors.append([f.score(method, f.setup(params).locator(method, seed).run(f.sightings)).errors for f in folds])

    def best(skip: int | None) -> int:
        crit = [criterion(np.concatenate([e for j, e in enumerate(row) if j != skip])) for row in errors]
        return int(np.argmin(crit))

    held, fold_rows = [], []
    for j, f in enumerate(folds):
        k = best(j)
        e = errors[k][j]
        held.append(e)
        fold_rows.append({"track": f.name, "chosen": grid[k], **_summary(e)})
    pooled = np.concatenate(held)
    grid_rows = [{"params": p, **_summary(np.concatenate(row))} for p, row in zip(grid, errors)]
    return Choice(method, dict(grid[best(None)]), _summary(pooled), fold_rows, grid_rows)


def _summary(e: np.ndarray) -> dict:
    if len(e) == 0:
        return {"median": float("nan"), "p90": float("nan"), "mean": float("nan"), "n": 0}
    return {"median": float(np.median(e)), "p90": float(np.percentile(e, 90)), "mean": float(e.mean()),
            "n": int(len(e))}


def with_params(setup: IpsSetup, params: dict) -> IpsSetup:
    """``setup`` with more parameters set (the signal field is rebuilt when one it depends on changes)."""
    explicit = {k: setup.params[k] for k in setup._explicit}
    return make_setup(setup.anchors, setup.walkable, setup.radio_map, setup.tag_height, {**explicit, **params},
                      setup.fits)


def kolakowski_folds(ds: KolakowskiDataset, params: dict | None = None, *, covered_m: float = 0.3) -> list[Fold]:
    """The calibration runs as folds, each set up (path-loss fits, radio map) from the other runs only,
    scored where the other runs cover the floor (as :func:`cross_validate`)."""
    runs = ds.calibration_runs()
    cal = ds.calibration
    folds = []
    for k, held in enumerate(runs):
        train = np.concatenate([r for j, r in enumerate(runs) if j != k])
        base = setup_from_dataset(ds, index=train, params=params)
        track = cal.subset(held)
        track.name = f"calibration run {k + 1}"
        d, _ = cKDTree(cal.truth[train]).query(track.truth)
        mask = d <= covered_m
        folds.append(Fold(track.name, lambda p, base=base: with_params(base, p), track_sightings(track),
                          lambda m, fixes, track=track, mask=mask: score_fixes(m, fixes, track, mask)))
    return folds


def recording_folds(setup: IpsSetup, sightings: list[Envelope], truth: dict[str, np.ndarray]) -> list[Fold]:
    """A walk test's tags as folds (one walked track per tag; the models and map are the store's own)."""
    folds = []
    for tag in sorted(truth):
        mine = [m for m in sightings if getattr(m, "tag", None) == tag]
        if not mine:
            continue
        folds.append(Fold(tag, lambda p: with_params(setup, p), mine,
                          lambda m, fixes, t=truth[tag], tag=tag: score_against_truth(m, fixes, {tag: t})))
    return folds
