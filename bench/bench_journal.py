"""Fusion input journal: what journaling costs the live node, and how fast a restart rebuilds from it.

A simulated store (``--shoppers``, ``--seed``; report on seeds >= 1000) is fed message by message
to a :class:`~storesense.fusion.service.FusionService` without a journal and with one (fsync at most
every second, as by default), then a new service rebuilds from the journal as after a crash.
Each is repeated ``--repeat`` times; the range is reported. No peer tool: the comparison is the
node without its journal.

    python bench/bench_journal.py [--shoppers 12] [--seed 1001] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from storesense.config import example_store_path, load_store_config
from storesense.datasets.sim.synthetic import generate_scenario
from storesense.fusion.service import FusionService


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="Write the figures here.")
    args = ap.parse_args()
    cfg = load_store_config(example_store_path())
    msgs = generate_scenario(cfg, shoppers=args.shoppers, seed=args.seed).messages
    runs = []
    for _ in range(args.repeat):
        plain = FusionService(cfg, run_id="bench", sinks=[lambda m: None]).start()
        t = time.perf_counter()
        for m in msgs:
            plain.handle(m)
        plain.flush()
        t_plain = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "fusion.journal"
            journaled = FusionService(cfg, run_id="bench", sinks=[lambda m: None], journal=path).start()
            t = time.perf_counter()
            for m in msgs:
                journaled.handle(m)
            journaled.flush()
            t_journal = time.perf_counter() - t
            journaled.close()
            size = path.stat().st_size
            t = time.perf_counter()
            rebuilt = FusionService(cfg, sinks=[lambda m: None], journal=path).start()
            t_recover = time.perf_counter() - t
            rebuilt.close()
        runs.append({"plain_msg_s": len(msgs) / t_plain, "journaled_msg_s": len(msgs) / t_journal,
                     "recovery_entries_s": rebuilt.recovered / t_recover, "bytes_per_msg": size / len(msgs)})
    out = {"shoppers": args.shoppers, "seed": args.seed, "messages": len(msgs), "runs": runs}
    for key in runs[0]:
        vals = [r[key] for r in runs]
        print(f"{key}: {min(vals):,.0f} - {max(vals):,.0f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
