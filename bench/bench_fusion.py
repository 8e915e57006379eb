"""Fusion benchmark: floor-tracking throughput against norfair, and end-to-end latency.

Throughput (one core, in process): the camera floor observations of a
simulated store (``--level``, ``--seed``) are fed frame by frame to

- storesense's floor tracker with its fast Kalman filter and its defaults
  (appearance in the association cost when observations carry descriptors),
- the same tracker without appearance (``FloorTracker(appearance_weight=0)``),
- the same tracker with filterpy's ``KalmanFilter`` injected (the reference),
- norfair (the ``norfair-enough`` fork, which runs on numpy 2): the tracker a
  user would otherwise pick for points, with a euclidean distance,

timing each (best of ``--repeat``) and scoring the median floor error of the
confirmed tracks against the truth. The whole fusion node (tracking, identity
with BLE, carts; every message of the scenario through ``FusionNode.handle``)
is timed too, with appearance (the defaults) and without
(``FusionNode(appearance=False, tracker=FloorTracker(appearance_weight=0))``):
a fresh node per run, ``--repeat`` runs of each taking turns, median and range
of the observations per wall-clock second, and per CPU second. ``--json FILE``
writes the figures.

Latency (``--latency``): the scenario is replayed at recorded pace over
ZeroMQ into a fusion node that publishes over MQTT (QoS 1, embedded broker)
to a subscriber; for every shopper location and cart line the latency is the
receive time minus the wall time the message's source timestamp was
published at. p50 / p99 are reported for locations, cart lines (decided from
hands and weight), cart open/close events, and cart corrections made from BLE
evidence (whose source timestamp is the BLE fix's, which waits for the next
advertisement).

    pip install norfair-enough==2.4.3     # the peer, for the benchmark only
    python bench/bench_fusion.py [--level busy] [--seed 0] [--json FILE]
    python bench/bench_fusion.py --latency [--seconds 40]
    python bench/bench_fusion.py --node-only [--repeat 2] [--no-appearance]   # for instruction counts
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import threading
import time

import numpy as np

from storesense.config import example_store_path, load_store_config
from storesense.datasets.sim.simulator import simulate
from storesense.fusion.kalman import FilterpyCV
from storesense.fusion.node import FusionNode, run
from storesense.fusion.service import FusionService
from storesense.fusion.tracker import FloorTracker


def frames_of(messages):
    """Person observations grouped per camera frame, in time order."""
    frames, key, batch = [], None, []
    for m in messages:
        if m.type != "person_observation" or m.floor is None:
            continue
        k = (m.camera, m.frame, m.ts)
        if k != key and batch:
            frames.append((key, batch))
            batch = []
        key = k
        batch.append(m)
    if batch:
        frames.append((key, batch))
    return frames


def floor_error(estimates, scenario):
    """Median distance from each estimate (ts, x, y) to the nearest true shopper."""
    errs = []
    for ts, x, y in estimates:
        pos = scenario.positions_at(ts)
        if pos:
            errs.append(min(np.hypot(x - px, y - py) for px, py in pos.values()))
    return float(np.median(errs)) if errs else float("nan")


def run_ours(frames, factory=None, **options):
    tracker = FloorTracker(filter_factory=factory, **options) if factory else FloorTracker(**options)
    estimates = []
    start = time.perf_counter()
    for (camera, _, ts), batch in frames:
        tracker.update_frame(camera, ts, batch)
        tracker.prune(ts)
        estimates.extend((ts, *t.xy) for t in tracker.tracks.values() if t.confirmed and t.ts == ts)
    return time.perf_counter() - start, estimates


def run_norfair(frames):
    from norfair import Detection, Tracker

    tracker = Tracker(distance_function="euclidean", distance_threshold=1.0, hit_counter_max=15,
                      initialization_delay=2)
    estimates = []
    start = time.perf_counter()
    for (_, _, ts), batch in frames:
        dets = [Detection(points=np.array([[o.floor.x, o.floor.y]])) for o in batch]
        for obj in tracker.update(detections=dets):
            x, y = obj.estimate[0]
            estimates.append((ts, float(x), float(y)))
    return time.perf_counter() - start, estimates


def make_node(cfg, appearance: bool) -> FusionNode:
    """A fresh fusion node: the defaults, or without appearance (in the node and in its tracker's costs)."""
    if appearance:
        return FusionNode(cfg, [].append, run_id="bench")
    return FusionNode(cfg, [].append, run_id="bench", appearance=False, tracker=FloorTracker(appearance_weight=0.0))


def throughput(args):
    cfg = load_store_config(example_store_path())
    scenario = simulate(cfg, args.level, seed=args.seed)
    frames = frames_of(scenario.messages)
    n_obs = sum(len(b) for _, b in frames)
    print(f"{args.level} seed {args.seed}: {len(scenario.shoppers)} shoppers, {len(frames)} camera frames, "
          f"{n_obs} floor observations")
    rows = []
    for name, fn in (("storesense FloorTracker (fast KF)", lambda: run_ours(frames)),
                     ("  same, without appearance", lambda: run_ours(frames, appearance_weight=0.0)),
                     ("storesense FloorTracker (filterpy KF)", lambda: run_ours(frames, FilterpyCV)),
                     ("norfair-enough 2.4.3 Tracker", lambda: run_norfair(frames))):
        try:
            best = None
            for _ in range(args.repeat):
                seconds, est = fn()
                best = seconds if best is None else min(best, seconds)
            rows.append((name, n_obs / best, best / len(frames) * 1e6, floor_error(est, scenario)))
        except ImportError as exc:
            rows.append((name, float("nan"), float("nan"), float("nan")))
            print(f"  {name}: not installed ({exc}); pip install norfair-enough==2.4.3")
    # the whole node, with appearance (the defaults) and without, taking turns: (wall s, cpu s) per run
    nodes = {"with appearance": lambda: make_node(cfg, True), "without appearance": lambda: make_node(cfg, False)}
    node_runs: dict[str, list[tuple[float, float]]] = {k: [] for k in nodes}
    n_person = sum(m.type == "person_observation" for m in scenario.messages)
    n_ble = sum(m.type == "ble_sighting" for m in scenario.messages)
    logging.disable(logging.WARNING)  # the node's warnings (swaps, unattributed changes) once per run otherwise
    for r in range(args.repeat):
        for label, make in list(nodes.items())[::1 if r % 2 == 0 else -1]:  # which goes first alternates
            node = make()
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            run(node, scenario.messages)
            node_runs[label].append((time.perf_counter() - start, time.process_time() - cpu))
            assert node.counters["in.person_observation"] == n_person
    logging.disable(logging.NOTSET)
    print(f"\n{'tracker':40} {'obs/s':>10} {'us/frame':>10} {'median err':>11}")
    for name, rate, us, err in rows:
        print(f"{name:40} {rate:10,.0f} {us:10.1f} {err:10.3f} m")
    peer = rows[3][1]
    if peer == peer:
        print(f"\nratio storesense / norfair: {rows[0][1] / peer:.2f}x observations per second with appearance, "
              f"{rows[1][1] / peer:.2f}x without")
    result = {"level": args.level, "seed": args.seed, "shoppers": len(scenario.shoppers), "frames": len(frames),
              "floor_observations": n_obs, "messages": len(scenario.messages), "ble_sightings": n_ble,
              "repeat": args.repeat,
              "trackers": [{"name": name.strip(), "obs_per_s": rate, "us_per_frame": us, "median_error_m": err}
                           for name, rate, us, err in rows],
              "node": {}}
    print(f"whole fusion node (tracking, identity with BLE, carts), {len(scenario.messages)} messages incl. "
          f"{n_ble} BLE sightings, {args.repeat} runs each:")
    for label, runs in node_runs.items():
        wall = sorted(n_person / w for w, _ in runs)
        cpu = sorted(n_person / c for _, c in runs)
        print(f"  {label:19} median {statistics.median(wall):,.0f} observations/s (range {wall[0]:,.0f}-"
              f"{wall[-1]:,.0f}; per CPU second {statistics.median(cpu):,.0f})")
        result["node"][label] = {"obs_per_s_median": statistics.median(wall), "obs_per_s_runs": wall,
                                 "obs_per_cpu_s_median": statistics.median(cpu)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


def node_only(args):
    """Only the whole node, ``--repeat`` runs (with appearance, or ``--no-appearance``): for instruction counts.

    ``valgrind --tool=cachegrind`` of this with ``--repeat 2`` minus ``--repeat 1`` is one run's instructions
    (the simulation and the imports cancel out).
    """
    cfg = load_store_config(example_store_path())
    scenario = simulate(cfg, args.level, seed=args.seed)
    n_person = sum(m.type == "person_observation" for m in scenario.messages)
    logging.disable(logging.WARNING)
    for _ in range(args.repeat):
        node = make_node(cfg, not args.no_appearance)
        gc.collect()
        cpu = time.process_time()
        run(node, scenario.messages)
        print(f"node {'without' if args.no_appearance else 'with'} appearance: "
              f"{n_person / (time.process_time() - cpu):,.0f} observations per CPU second")


def latency(args):
    from storesense.transport import EmbeddedBroker, MqttSubscriber, ZmqPublisher

    cfg = load_store_config(example_store_path())
    scenario = simulate(cfg, args.level, seed=args.seed)
    # the scenario's message objects are the bench's fixture, not the node's state: frozen, the garbage
    # collector does not scan them on every full collection (a pause a live node holding no scenario
    # would not have); the live `storesense fusion` node freezes its start-up state the same way
    gc.collect()
    gc.freeze()
    t_end = scenario.start_ts + args.seconds
    messages = [m for m in scenario.messages if m.ts <= t_end]
    ts0 = messages[0].ts
    received: list[tuple[str, float, float]] = []  # type, source ts, receive wall time
    lock = threading.Lock()

    def on_message(msg, topic):
        kind = msg.type
        if kind == "cart_event":  # a line decided from hands and weight, a BLE-driven correction, or open/close
            kind = ("cart_lifecycle" if msg.change is None
                    else "cart_correction" if "swapped" in msg.change.reason else "cart_line")
        if kind != "cart_event" and msg.type in ("shopper_location", "cart_event"):
            with lock:
                received.append((kind, msg.ts, time.monotonic()))

    with EmbeddedBroker() as broker:
        sub = MqttSubscriber(broker.url, store=cfg.store.id, client_id="bench-latency", on_message=on_message)
        sub.connect()
        with FusionService(cfg, run_id="bench", mqtt_url=broker.url) as fusion:
            endpoint = fusion.listen("tcp://127.0.0.1:*")
            fusion.serve_in_thread(poll_s=0.05)
            zpub = ZmqPublisher(endpoint, store=cfg.store.id)
            if not zpub.wait_for_subscriber(5.0):
                sys.exit("fusion did not subscribe")
            start = time.monotonic()
            for m in messages:
                due = start + (m.ts - ts0)
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                zpub.publish(m)
            time.sleep(1.0)
            fusion.stop(2.0)
            fusion.flush_output(5.0)
            time.sleep(0.5)
        sub.close()
        zpub.close()
    for kind in ("shopper_location", "cart_line", "cart_lifecycle", "cart_correction"):
        lat = sorted((recv - (start + (ts - ts0))) * 1000 for k, ts, recv in received if k == kind)
        if lat:
            p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
            print(f"{kind:17} n={len(lat):5d}  p50 {statistics.median(lat):7.1f} ms  p99 {p99:7.1f} ms")
        else:
            print(f"{kind:17} none received")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="busy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--json", help="write the throughput figures to this file")
    ap.add_argument("--node-only", action="store_true", help="only the whole node, --repeat runs (instruction counts)")
    ap.add_argument("--no-appearance", action="store_true", help="with --node-only: the node without appearance")
    args = ap.parse_args()
    latency(args) if args.latency else node_only(args) if args.node_only else throughput(args)


if __name__ == "__main__":
    main()
