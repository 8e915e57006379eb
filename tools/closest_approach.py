"""How close people come to each other: real walks (MOT ground truth in world coordinates) against the simulator.

Calibration of the simulator's body separation (``datasets/sim/separation.py``)::

    python tools/closest_approach.py ../shared/data/mot15/TUD-Stadtmitte ../shared/data/mot15/ETH-Bahnhof
    python tools/closest_approach.py --sim busy --seed 10 --seeds 4

For every pair of people seen at the same time, their closest approach (centre
to centre, metres): quantiles over the pairs and how many pairs come within
0.3 / 0.4 / 0.5 m. MOT15 ground truth gives world coordinates (columns 8-9,
metres on the ground plane) for TUD-Stadtmitte and ETH-Bahnhof; sequences
without them (-1) are skipped with a message.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def real_pairs(seq: Path) -> np.ndarray | None:
    """Closest approach of every pair of people in one MOT sequence's ground truth (None: no world coordinates)."""
    gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)
    gt = gt[gt[:, 7] != -1]
    if not len(gt):
        return None
    frames: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
    for row in gt:
        frames[int(row[0])].append((int(row[1]), row[7], row[8]))
    closest: dict[tuple[int, int], float] = {}
    for people in frames.values():
        for i, (a, ax, ay) in enumerate(people):
            for b, bx, by in people[i + 1:]:
                key = (min(a, b), max(a, b))
                closest[key] = min(closest.get(key, np.inf), float(np.hypot(ax - bx, ay - by)))
    return np.array(list(closest.values()))


def sim_pairs(level: str, seed: int, seeds: int) -> np.ndarray:
    """Closest approach of every pair of simulated shoppers (0.05 s samples) over the seeds."""
    from storesense.config import example_store_path, load_store_config
    from storesense.datasets.sim.simulator import simulate

    config = load_store_config(example_store_path())
    out = []
    for s in range(seed, seed + seeds):
        scenario = simulate(config, level, seed=s)
        ts = np.arange(min(x.enter_ts for x in scenario.shoppers), max(x.exit_ts for x in scenario.shoppers), 0.05)
        pos = scenario.positions(ts).transpose(1, 0, 2)
        for i in range(len(pos)):
            for j in range(i + 1, len(pos)):
                d = np.hypot(*(pos[i] - pos[j]).T)
                if (~np.isnan(d)).any():
                    out.append(float(np.nanmin(d)))
    return np.array(out)


def report(name: str, closest: np.ndarray) -> None:
    q = np.percentile(closest, [1, 5, 10, 25, 50])
    print(f"{name}: {len(closest)} pairs; closest approach quantiles 1/5/10/25/50 %: "
          + " / ".join(f"{v:.2f}" for v in q) + " m; pairs within 0.3 / 0.4 / 0.5 m: "
          + " / ".join(str(int((closest < r).sum())) for r in (0.3, 0.4, 0.5)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sequences", nargs="*", type=Path, help="MOT sequence folders (with gt/gt.txt)")
    ap.add_argument("--sim", metavar="LEVEL", help="also the simulator at this level (example store)")
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=4)
    args = ap.parse_args()
    if not args.sequences and not args.sim:
        ap.error("give MOT sequence folders and/or --sim LEVEL")
    for seq in args.sequences:
        closest = real_pairs(seq)
        if closest is None:
            print(f"{seq.name}: no world coordinates in its ground truth; skipped", file=sys.stderr)
            continue
        report(seq.name, closest)
    if args.sim:
        report(f"simulator {args.sim} seeds {args.seed}-{args.seed + args.seeds - 1}",
               sim_pairs(args.sim, args.seed, args.seeds))


if __name__ == "__main__":
    main()
