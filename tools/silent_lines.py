"""Where silent errors come from: every wrong receipt line without a flag, by where its items went.

Development tool (tune on seeds below 1000 with it; it reads the simulator's truth, the fusion never
does)::

    python tools/silent_lines.py --level busy --seed 26 --seeds 16 [-v] [--json out.json]

A wrong line is *silent* when the scorer finds no flag on it (nor, for a line billed short, a
review item elsewhere naming the shopper). Each is put in one class (:func:`classify`):

- ``no receipt for the shopper``: no session of the shopper's tag closed with a receipt;
- ``billed too many``: the receipt bills more of the product than the shopper kept;
- ``short: ...``: billed fewer; the classes say where the load changes the shopper took part in
  were charged: ``own (split short)`` / ``own (qty short)`` (to the shopper, too few; several / one
  hand(s) in the change), ``other shopper shared`` / ``other shopper alone``, ``untagged session``,
  ``nobody`` (unattributed or dropped), or, without a load change of theirs, ``hands-only shelf`` or
  ``no weight event``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

from storesense.config import example_store_path, load_store_config
from storesense.datasets.scoring.carts import _unit, score_carts
from storesense.datasets.sim.simulator import simulate
from storesense.fusion.node import FusionNode


def classify(row: dict, sku: str, events: list[tuple[str, int]], decided: dict[str, list[str | None]],
             hands_only: set[str]) -> str:
    """The class of one silent wrong line (see the module docstring).

    ``row``: the scorer's per-shopper row; ``events``: (weight change event id, number of takers) of the
    load changes of ``sku`` the shopper took part in; ``decided``: event id -> the unit each change
    decided from it was charged to (None: a session without a tag); ``hands_only``: products on shelves
    without a load cell.
    """
    if not row["sessions"]:
        return "no receipt for the shopper"
    want, billed = row["truth"].get(sku, 0), row["billed"].get(sku, 0)
    if billed > want:
        return "billed too many"
    where = set()
    for event, takers in events:
        units = decided.get(event, [])
        if not units:
            where.add("nobody")
        for unit in units:
            if unit == row["shopper"]:
                where.add("own (split short)" if takers > 1 else "own (qty short)")
            elif unit is None:
                where.add("untagged session")
            else:
                where.add("other shopper shared" if takers > 1 else "other shopper alone")
    if not events:
        where.add("hands-only shelf" if sku in hands_only else "no weight event")
    return "short: " + "/".join(sorted(where))


def silent_lines(config, level: str, seed: int) -> list[dict]:
    """Every silent wrong line of one simulated run, with its class."""
    scenario = simulate(config, level, seed=seed)
    holder = {}

    def factory(emit):
        holder["node"] = FusionNode(config, emit, run_id="eval")
        return holder["node"]

    score = score_carts(config, scenario, node_factory=factory)
    node = holder["node"]
    unit_of = {s.id: _unit(s) for s in scenario.shoppers}
    unit_of_tag = {s.tag: _unit(s) for s in scenario.shoppers}
    event_of = {(m.sensor, round(m.ts, 3)): m.event_id for m in scenario.messages if m.type == "weight_change"}
    events = defaultdict(list)
    for w in scenario.weight_events:
        event = event_of.get((w.sensor, round(w.ts, 3)))
        for shopper in w.shoppers:
            for sku in config.plate(w.shelf, w.plate).skus:
                events[(unit_of[shopper], sku)].append((event, len(w.shoppers)))
    decided = defaultdict(list)
    for session in node.sessions.values():
        for change in session.ledger.changes.values():
            if change.evidence:
                decided[change.evidence[0]].append(unit_of_tag.get(session.tag))
    weighed = {w.shelf for w in config.weight_sensors}
    hands_only = {p.sku for s in config.shelves if s.id not in weighed for p in s.plates}
    out = []
    for row in score.per_shopper:
        for sku in row["wrong_lines"]:
            if sku not in row["wrong_flagged"]:
                out.append({"seed": seed, "shopper": row["shopper"], "sku": sku, "truth": row["truth"].get(sku, 0),
                            "billed": row["billed"].get(sku, 0),
                            "class": classify(row, sku, events[(row["shopper"], sku)], decided, hands_only)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--level", default="busy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("-v", action="store_true", help="print every silent line")
    a = ap.parse_args()
    config = load_store_config(example_store_path())
    rows = []
    for seed in range(a.seed, a.seed + a.seeds):
        rows += silent_lines(config, a.level, seed)
    if a.v:
        for r in rows:
            print(f"seed {r['seed']} {r['shopper']} {r['sku']}: truth {r['truth']} billed {r['billed']}: {r['class']}")
    for cls, n in Counter(r["class"] for r in rows).most_common():
        print(f"{n:4d} {cls}")
    print(f"{len(rows):4d} silent lines, {a.level} seeds {a.seed}-{a.seed + a.seeds - 1}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
