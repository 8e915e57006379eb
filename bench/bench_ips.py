"""Benchmark: BLE position fixes per second per CPU core, side by side with the peers.

Runs every storesense positioning method on the same observations (the
Kolakowski robot test track when ../shared/data is there, else a synthetic
track), single-threaded, and reports fixes per CPU-second (``time.process_time``)
and the median error. Peers in the same run:

- ``scipy least_squares``: the same path-loss residuals and soft_l1 loss solved
  by ``scipy.optimize.least_squares`` (what one writes by hand with scipy);
- ``easy-trilateration`` (PyPI, MIT): least squares on circle equations, the
  package a user searching PyPI for BLE trilateration finds; fed the same
  distances (from our fitted path-loss models). Skipped with a note when it is
  not installed (``pip install easy-trilateration``).

The last row is the fusion node's own path (sightings through ``BleLocator``
into the Kalman fusion of trilateration, no radio map), issue #17's target of
5,000 fixes/s; it also prints each pass's rate (the median pass is the figure
least moved by other work on a shared machine). ``--only-node`` runs that row
alone.

Usage: ``python bench/bench_ips.py [--repeat N] [--data DIR] [--only-node]``
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy/BLAS must not fan out
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

from storesense.datasets.loaders.kolakowski import KolakowskiDataset, Track  # noqa: E402
from storesense.datasets.scoring.ips import IpsSetup, setup_from_dataset  # noqa: E402
from storesense.ips.model import RssiObservation  # noqa: E402
from storesense.ips.setup import DEFAULT_HISTORY_S  # noqa: E402
from storesense.ips.pathloss import MIN_DISTANCE_M  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ble" / "kolakowski2021"


def observations(track: Track) -> list[RssiObservation]:
    return [RssiObservation(float(t), {n: float(v) for n, v in zip(track.nodes, row) if np.isfinite(v)}, "tag")
            for t, row in zip(track.ts, track.rssi)]


def scipy_baseline(setup: IpsSetup):
    """Trilateration with scipy.optimize.least_squares on the same residuals (soft_l1)."""
    anchors = setup.anchors
    sigma = setup.params["tri_sigma_db"]

    def locate(obs: RssiObservation):
        ids = sorted(n for n in obs.rssi if n in anchors)
        a = [anchors[i] for i in ids]
        axy = np.array([[n.x, n.y] for n in a])
        dz2 = np.array([(n.z - setup.tag_height) ** 2 for n in a])
        p0 = np.array([n.rssi_at_1m for n in a])
        ex = np.array([n.exponent for n in a])
        r = np.array([obs.rssi[i] for i in ids])

        def res(p):
            d = np.maximum(np.sqrt(((p - axy) ** 2).sum(axis=1) + dz2), MIN_DISTANCE_M)
            return (r - (p0 - 10 * ex * np.log10(d))) / sigma

        return least_squares(res, axy.mean(axis=0), loss="soft_l1", f_scale=1.5).x

    return locate


def easy_trilateration_peer(setup: IpsSetup):
    """easy-trilateration's solver fed distances from the same path-loss models (None if not installed)."""
    try:
        from easy_trilateration.least_squares import easy_least_squares
        from easy_trilateration.model import Circle
    except ImportError:
        return None
    anchors = setup.anchors

    def locate(obs: RssiObservation):
        circles = []
        for n, v in obs.rssi.items():
            a = anchors[n]
            d3 = float(a.range_from_rssi(v))
            d2 = float(np.sqrt(max(d3 ** 2 - (a.z - setup.tag_height) ** 2, 0.01)))  # to the floor plane
            circles.append(Circle(a.x, a.y, d2))
        result, _ = easy_least_squares(circles)
        return np.array([result.center.x, result.center.y])

    return locate


def run(fn_per_obs, obs: list[RssiObservation], repeat: int) -> tuple[float, list]:
    """Fixes per CPU second over ``repeat`` passes, and the last pass's outputs."""
    out = []
    t0 = time.process_time()
    for _ in range(repeat):
        out = [fn_per_obs(o) for o in obs]
    dt = time.process_time() - t0
    return repeat * len(obs) / dt, out


def median_error(points, truth: np.ndarray) -> float:
    est = np.array([[p.x, p.y] if hasattr(p, "x") else p for p in points], dtype=float)
    return float(np.median(np.hypot(*(est - truth).T)))


def node_row(setup: IpsSetup, track: Track, repeat: int) -> tuple[float, list]:
    """The fusion node's path (setup_from_config: no radio map), as fusion/ble.py runs it: fixes per CPU
    second over ``repeat`` passes (a fresh locator each), printing each pass's rate and the accuracy."""
    from storesense.datasets.loaders.kolakowski import track_sightings
    from storesense.fusion.service import FusionService
    from storesense.ips.setup import make_setup

    node_setup = make_setup(setup.anchors, setup.walkable, None, setup.tag_height)
    sightings = track_sightings(track)
    FusionService.freeze_startup_state()  # as the fusion node does after start-up (the rows before left garbage)
    fused, rates, total = [], [], 0.0
    for _ in range(repeat):
        start = time.process_time()
        fused = node_setup.locator("kalman").run(sightings)
        dt = time.process_time() - start
        rates.append(len(fused) / dt)
        total += dt
    err = np.hypot(*(np.array([[f.x, f.y] for f in fused]) - track.truth).T)
    print(f"fusion node path ({len(sightings)} sightings -> {len(fused)} fixes per pass): passes "
          f"{', '.join(f'{r:.0f}' for r in rates)} fixes/s, median pass {np.median(rates):.0f}; "
          f"error median {np.median(err):.2f} m, p90 {np.percentile(err, 90):.2f} m; load average "
          f"{os.getloadavg()[0]:.1f}")
    return repeat * len(fused) / total, fused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="passes over the track per method")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kolakowski dataset folder")
    ap.add_argument("--only-node", action="store_true", help="only the fusion node's path (locator + Kalman(tri))")
    args = ap.parse_args()
    if not KolakowskiDataset.looks_like(args.data):
        raise SystemExit(f"no Kolakowski dataset at {args.data} (pass --data DIR)")
    ds = KolakowskiDataset(args.data)
    setup = setup_from_dataset(ds)
    setup.signal_field  # built once, outside the timing (a node builds it at start-up)
    track = ds.robot_track()
    obs = observations(track)
    rows = []

    def tracker_fn(method):
        state = {}

        def fn(o):
            if "t" not in state or o is obs[0]:
                state["t"] = setup.tracker(method)
            return state["t"].update(o)

        return fn

    tri = setup.trilateration()
    if args.only_node:
        node_row(setup, track, args.repeat)
        return
    rows.append(("storesense trilateration (Newton, outlier rejection)",) + run(tri.locate, obs, args.repeat))
    rows.append(("scipy least_squares, same residuals",) + run(scipy_baseline(setup), obs, args.repeat))
    peer = easy_trilateration_peer(setup)
    if peer is not None:
        rows.append(("easy-trilateration 0.1.4 (PyPI)",) + run(peer, obs, args.repeat))
    knn = setup.fingerprint()
    rows.append(("storesense fingerprint kNN (4104-point map)",) + run(knn.locate, obs, args.repeat))
    rows.append(("storesense Kalman fusion (tri + kNN)",) + run(tracker_fn("kalman"), obs, args.repeat))
    rows.append((f"storesense particle filter ({int(setup.params['pf_particles'])} particles)",)
                + run(tracker_fn("particle"), obs, args.repeat))

    node_rate, node_fixes = node_row(setup, track, args.repeat)
    rows.append((f"fusion node: locator + Kalman(tri), window {DEFAULT_HISTORY_S['kalman']:g} s", node_rate, node_fixes))

    print(f"BLE positioning, {len(obs)} observations of 6 anchors (Kolakowski robot track), "
          f"{args.repeat} passes, one core\n")
    print(f"{'method':<52} {'fixes/s/core':>13} {'median err m':>13}")
    for name, rate, out in rows:
        print(f"{name:<52} {rate:>13.0f} {median_error(out, track.truth):>13.2f}")
    ours = rows[0][1]
    print()
    print(f"ratio storesense trilateration / scipy least_squares: {ours / rows[1][1]:.1f}x")
    if peer is not None:
        print(f"ratio storesense trilateration / easy-trilateration: {ours / rows[2][1]:.1f}x")
    else:
        print("easy-trilateration not installed (pip install easy-trilateration): peer row skipped")


if __name__ == "__main__":
    main()
