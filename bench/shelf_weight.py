"""Shelf node accuracy: settled weight changes from simulated load-cell streams, against a naive detector.

For each noise level, a plate is simulated for many seeded trials: a shopper
takes or puts back one or two items at random times, each reach with a hand
transient (the hand presses on the plate and the load swings), items that vary
±2 % around the unit weight, spikes and slow drift. Every trial goes through
the shelf node exactly as a recording would (``run_replay``). Printed per noise
level, for the shelf node and for the naive detector most hobby HX711 code uses
(average 10 readings, report when the average moved by more than the threshold):

- recall / spurious: true changes found (within 0.5 s before a reach and 3 s
  after it) and reported changes that match none;
- delta error: reported minus true delta, mean, standard deviation and 95th
  percentile of the absolute error, grams;
- latency: report time minus the end of the reach, seconds (median, p95);
- start error: ``started_ts`` minus the true start of the reach (median abs);
- false changes per hour on a stream with noise, spikes and drift but no reach;
- throughput: readings processed per second of CPU by the node (one core).

    python bench/shelf_weight.py [--trials 200] [--item 60] [--noise 1,3,6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from storesense.config import load_store_config, example_store_path, parse_store_config
from storesense.edge.shelf.loadcells.simulated import LoadStep, PlateSimulation, simulate_plate
from storesense.edge.shelf.node import ShelfNode, run_replay

SENSOR = "ws-B2"  # plate B2 holds TEA-20 in the example store


def store_with(item_g: float, noise_g: float):
    """The example store with plate B2's product weighing ``item_g`` and its cell's noise ``noise_g``."""
    import yaml

    data = yaml.safe_load(example_store_path().read_text())
    sku = next(p["sku"] for s in data["shelves"] for p in s["plates"] if p["id"] == "B2")
    for p in data["products"]:
        if p["sku"] == sku:
            p["unit_weight_g"] = item_g
    for ws in data["weight_sensors"]:
        ws["noise_g"] = noise_g
    return parse_store_config(data, origin="bench")


def trial(rng: np.random.Generator, item_g: float, noise_g: float, seed: int, hz: float):
    """One simulated plate: (simulation, true events as (start, end, delta))."""
    t, load, steps, truth = 3.0, 1500.0, [], []
    while t < 50:
        t += float(rng.uniform(4, 10))
        n = 1 if rng.random() < 0.8 else 2
        sign = -1 if (rng.random() < 0.7 or load < 3 * item_g) else 1
        delta = sign * sum(item_g * float(rng.uniform(0.98, 1.02)) for _ in range(n))
        dur = float(rng.uniform(0.6, 1.5))
        steps.append(LoadStep(t, delta, dur))
        truth.append((t, t + dur, delta))
        load += delta
        t += dur
    sim = PlateSimulation(SENSOR, duration_s=t + 6, start_load_g=1500, steps=tuple(steps), noise_g=noise_g,
                          sample_hz=hz, spike_rate_hz=0.05, drift_g_per_s=float(rng.uniform(-0.05, 0.05)),
                          counts_per_g=420.0, zero_offset=-52000.0, integer_counts=True, seed=seed)
    return sim, truth


def naive_changes(readings, counts_per_g: float, min_change_g: float, block: int = 10):
    """The usual hobby approach: average blocks of 10 readings, report a move beyond the threshold."""
    out, prev, buf = [], None, []
    offset = None
    for r in readings:
        buf.append(r.value)
        if len(buf) < block:
            continue
        avg = sum(buf) / len(buf)
        buf = []
        if offset is None:
            offset = avg
        g = (avg - offset) / counts_per_g
        if prev is not None and abs(g - prev) > min_change_g:
            out.append((r.ts, r.ts, g - prev))
        prev = g if prev is None or abs(g - prev) > min_change_g else prev
    return out


def score(found, truth, t0):
    """Match reported (ts, started_ts, delta) to true (start, end, delta) events."""
    used, errors, latency, start_err = set(), [], [], []
    spurious = 0
    for ts, started, delta in found:
        ts, started = ts - t0, started - t0
        best = None
        for i, (s, e, d) in enumerate(truth):
            if i not in used and s - 0.5 <= ts <= e + 3.0 and np.sign(d) == np.sign(delta):
                best = i
                break
        if best is None:
            spurious += 1
            continue
        used.add(best)
        s, e, d = truth[best]
        errors.append(delta - d)
        latency.append(ts - e)
        start_err.append(abs(started - s))
    return len(used), spurious, errors, latency, start_err


def run(noise_g: float, item_g: float, trials: int, hz: float) -> dict:
    cfg = store_with(item_g, noise_g)
    sensors = [ws for ws in cfg.weight_sensors if ws.id == SENSOR]
    sensors = [sensors[0].model_copy(update={"counts_per_g": 420.0, "zero_offset": -52000.0, "sample_hz": hz})]
    min_change = sensors[0].min_change_fraction * item_g
    res = {k: {"true": 0, "found": 0, "spurious": 0, "err": [], "lat": [], "start": []} for k in ("node", "naive")}
    cpu, n_read = 0.0, 0
    for k in range(trials):
        rng = np.random.default_rng(1000 + k)
        sim, truth = trial(rng, item_g, noise_g, seed=k, hz=hz)
        readings = simulate_plate(sim)
        out = []
        node = ShelfNode(cfg, sensors, out.append, run_id="bench")
        c0 = time.process_time()
        run_replay(node, readings)
        cpu += time.process_time() - c0
        n_read += len(readings)
        node_found = [(m.ts, m.started_ts, m.delta_g) for m in node.changes]
        for name, found in (("node", node_found), ("naive", naive_changes(readings, 420.0, min_change))):
            hit, spur, err, lat, st = score(found, truth, sim.start_ts)
            r = res[name]
            r["true"] += len(truth)
            r["found"] += hit
            r["spurious"] += spur
            r["err"] += err
            r["lat"] += lat
            r["start"] += st
    # false changes per hour: noise, spikes and drift only
    quiet = PlateSimulation(SENSOR, duration_s=3600, start_load_g=1500, noise_g=noise_g, sample_hz=hz,
                            spike_rate_hz=0.05, drift_g_per_s=0.02, counts_per_g=420.0, zero_offset=-52000.0,
                            integer_counts=True, seed=99)
    readings = simulate_plate(quiet)
    node = ShelfNode(cfg, sensors, lambda m: None, run_id="bench")
    run_replay(node, readings)
    res["node"]["false_per_h"] = len(node.changes)
    res["naive"]["false_per_h"] = len(naive_changes(readings, 420.0, min_change))
    res["node"]["throughput"] = n_read / cpu if cpu else float("nan")
    return res


def fmt(r: dict) -> str:
    err = np.asarray(r["err"]) if r["err"] else np.asarray([np.nan])
    lat = np.asarray(r["lat"]) if r["lat"] else np.asarray([np.nan])
    st = np.asarray(r["start"]) if r["start"] else np.asarray([np.nan])
    return (f"recall {r['found'] / r['true']:6.1%}  spurious {r['spurious']:4d}  "
            f"delta err mean {err.mean():+5.2f} sd {err.std():4.2f} p95|e| {np.percentile(np.abs(err), 95):5.2f} g  "
            f"latency p50 {np.median(lat):4.2f} p95 {np.percentile(lat, 95):4.2f} s  "
            f"start err p50 {np.median(st):4.2f} s  false/h {r['false_per_h']:3d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--item", type=float, default=60.0, help="unit weight of the item, grams")
    ap.add_argument("--noise", default="1,3,6", help="comma-separated reading noise levels, grams")
    ap.add_argument("--hz", type=float, default=10.0, help="readings per second")
    args = ap.parse_args()
    load_store_config(example_store_path())
    print(f"item {args.item:g} g, {args.trials} trials per noise level, {args.hz:g} Hz, "
          "settle 0.5 s, spikes 0.05/s, drift up to 0.05 g/s")
    for noise in (float(x) for x in args.noise.split(",")):
        res = run(noise, args.item, args.trials, args.hz)
        print(f"noise {noise:g} g  ({res['node']['true']} true changes)")
        print(f"  shelf node : {fmt(res['node'])}")
        print(f"  naive 10-avg: {fmt(res['naive'])}")
        print(f"  shelf node throughput: {res['node']['throughput']:,.0f} readings/s (one core)")


if __name__ == "__main__":
    main()
