"""Why receipts go wrong: every cart change of a simulated run traced against the simulator's truth.

Development tool (tune on seeds below 1000 with it; it reads the truth, the fusion never does)::

    python tools/diagnose_carts.py --level busy --seed 0 --seeds 4 [--json out.json] [-v]

For every session with a tag, the published locations are compared with the tag owner's true
walk: a session is *wrong since check-in* when its first located second is already on someone
else, *swapped* when it moves to someone else later (more than 1 m from its shopper and nearer
another one: a session only lagging behind its shopper is neither); a swap's ``back_after_s``
says when it was next within 0.5 m of its shopper again (None: never). Every change on a receipt is matched to
the true action (SKU, shelf, time) and its hand event's camera track to the track's true owner:

- ``right``: charged to the taker's unit;
- ``bound-wrong``: the hand was on the taker's own camera track, but the track was bound to
  another session (identity: check-in mix-up or swap);
- ``camera-track``: the camera track the hand came on belonged to someone else (id switch,
  wrist on a neighbour);
- ``no-action``: no true action matches (a wrong decision on the shelf, a phantom).

Lines lost (taken and kept, but not on the taker's receipt) are counted per cause: unbillable
(no tagged session), charged elsewhere, unattributed (a shelf event to review with nobody) or
not charged (:func:`_lost_lines`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter, defaultdict

from storesense.config import example_store_path, load_store_config
from storesense.datasets.scoring.carts import _truth, _unit
from storesense.datasets.sim.appearance import AppearanceModel
from storesense.datasets.sim.simulator import simulate
from storesense.fusion.node import FusionNode


def diagnose(config, level: str, seed: int, verbose: bool = False, node_kw=None, tracker_kw=None,
             appearance=True) -> dict:
    scenario = simulate(config, level, seed=seed, appearance=appearance)
    out = []
    from storesense.fusion.tracker import FloorTracker
    node = FusionNode(config, out.append, run_id="diag", tracker=FloorTracker(**(tracker_kw or {})), **(node_kw or {}))
    for m in scenario.messages:
        node.handle(m)
    node.flush()
    by_id = {m.event_id: m for m in scenario.messages}
    shoppers = {s.id: s for s in scenario.shoppers}
    unit_of_tag = {s.tag: _unit(s) for s in scenario.shoppers}
    owner_of_tag = {s.tag: s.id for s in scenario.shoppers}

    # session purity from its published locations
    wrong_from: dict[str, tuple[str, float | None]] = {}
    swaps = []
    locs = defaultdict(list)
    for m in out:
        if m.type == "shopper_location":
            locs[m.shopper].append(m)
    for sid, s in node.sessions.items():
        if s.tag not in owner_of_tag:
            continue
        swap = _first_swap(locs.get(sid, []), shoppers[owner_of_tag[s.tag]], scenario.positions_at, s.opened_ts)
        if swap is None:
            wrong_from[sid] = ("right", None)
            continue
        swap.update(session=sid, ref_n=s.look.n)
        swaps.append(swap)
        wrong_from[sid] = (swap.pop("state"), swap["t"])

    kinds = Counter()
    rows = []
    for sid, s in node.sessions.items():
        unit = unit_of_tag.get(s.tag)
        for key, c in s.ledger.changes.items():
            if c.quantity == 0:
                continue
            hands = [by_id[e] for e in c.evidence if e in by_id and by_id[e].type == "hand_shelf_interaction"]
            weights = [by_id[e] for e in c.evidence if e in by_id and by_id[e].type == "weight_change"]
            t = weights[0].ts if weights else (hands[0].ts if hands else None)
            takers = set()
            for sh in scenario.shoppers:
                for a in sh.actions:
                    if a.sku == c.sku and t is not None and abs(a.ts - t) < 6.0 and \
                            (a.quantity > 0) == (c.quantity > 0):
                        takers.add(_unit(sh))
            hand_owner = {scenario.track_owner(h.camera, h.track_id, h.ts) for h in hands}
            hand_units = {_unit(shoppers[o]) for o in hand_owner if o in shoppers}
            if unit is None:
                kind = "unbillable"
            elif unit in takers:
                kind = "right"
            elif not takers:
                kind = "no-action"
            elif hand_units & takers:
                kind = "bound-wrong:" + wrong_from.get(sid, ("?", None))[0]
            else:
                kind = "camera-track"
            kinds[kind] += abs(c.quantity)
            if kind != "right":
                rows.append({"session": sid, "unit": unit, "sku": c.sku, "q": c.quantity, "t": t, "kind": kind,
                             "takers": sorted(takers), "hand_owner": sorted(o or "?" for o in hand_owner),
                             "review": c.needs_review, "reason": c.reason[:120]})
    sess = Counter(v[0] for v in wrong_from.values())
    billed = defaultdict(Counter)
    for m in out:
        if m.type == "receipt" and node.sessions[m.shopper].tag in unit_of_tag:
            for line in m.lines:
                billed[unit_of_tag[node.sessions[m.shopper].tag]][line.sku] += line.quantity
    truth = {u: Counter(cart) for u, cart in _truth(scenario).items()}
    exact = sum(1 for u in truth if u in billed and +billed[u] == +truth[u])
    tagged = {unit_of_tag[s.tag] for s in node.sessions.values() if s.tag in unit_of_tag}
    lost = _lost_lines(truth, billed, tagged, rows, out)
    res = {"level": level, "seed": seed, "exact": exact, "shoppers": len(truth), "changes": dict(kinds), "sessions": dict(sess),
           "lost": dict(lost),
           "unattributed": node.counters.get("shelf_changes_unattributed", 0),
           "untagged": sum(1 for s in node.sessions.values() if s.tag is None and s.ledger.changes),
           "rows": rows, "swaps": swaps, "counters": {k: v for k, v in node.counters.items() if not k.startswith(("in.", "out."))}}
    if verbose:
        for r in swaps:
            print(json.dumps(r))
        for r in rows:
            print(json.dumps(r))
    return res


def _first_swap(locs: list, owner, positions_at, opened_ts: float) -> dict | None:
    """The first published location of a session on someone other than its shopper ``owner``, or None.

    On someone else: more than 1 m from ``owner`` and nearer another shopper
    (``positions_at(ts)``: true positions); a session only lagging behind its
    shopper is not. ``state`` is ``wrong-at-checkin`` when it is the first
    location, else ``swapped``; ``back_after_s``: when it was next within 0.5 m
    of its shopper (None: never).
    """
    prev_track, prev_sources = None, ()
    inside = [m for m in locs if owner.enter_ts <= m.ts <= owner.exit_ts]
    for k, m in enumerate(inside):
        d = math.dist((m.x, m.y), owner.position(m.ts))
        if d > 1.0:
            on = min(((math.dist((m.x, m.y), p), o) for o, p in positions_at(m.ts).items()), default=(None, None))
            if on[1] != owner.id:
                back = next((b.ts - m.ts for b in inside[k + 1:]
                             if math.dist((b.x, b.y), owner.position(b.ts)) < 0.5), None)
                return {"state": "wrong-at-checkin" if k == 0 else "swapped", "owner": owner.id,
                        "t": round(m.ts - opened_ts, 1), "on": on[1],
                        "on_d": round(on[0], 2) if on[0] is not None else None, "owner_d": round(d, 2),
                        "how": "same-track" if m.track == prev_track else f"rebound {prev_track}->{m.track}",
                        "back_after_s": None if back is None else round(back, 1),
                        "sources": list(m.sources), "prev_sources": list(prev_sources)}
        prev_track, prev_sources = m.track, m.sources
    return None


def _lost_lines(truth: dict, billed: dict, tagged: set, rows: list[dict], out: list) -> Counter:
    """Items a shopper took and kept that no receipt of theirs bills, by cause (see the module docstring).

    ``billed``: unit -> SKU -> items on its receipts; ``tagged``: the units with
    a tagged session. ``unbillable``: the shopper's unit has none (nothing could bill
    them); ``charged elsewhere``: a change of that SKU the diagnosis traced to
    this unit's action went to another session; ``unattributed``: a shelf event
    of that SKU went to review with no shopper; ``not charged``: the rest (a
    split, prior or put-back decision that left it off, or a change lost with
    its session).
    """
    elsewhere = Counter()
    for r in rows:
        if r["kind"] != "unbillable" and r["q"] > 0:
            for u in r["takers"]:
                if u != r["unit"]:
                    elsewhere[(u, r["sku"])] += r["q"]
    unattributed = Counter()
    for m in out:
        if m.type == "shelf_event" and m.kind == "unattributed" and m.sku and m.quantity > 0:
            unattributed[m.sku] += m.quantity
    lost = Counter()
    for u, cart in truth.items():
        for sku, q in cart.items():
            short = q - billed[u][sku]
            if short <= 0:
                continue
            if u not in tagged:
                lost["unbillable"] += short
                continue
            for cause, pool, key in (("charged elsewhere", elsewhere, (u, sku)), ("unattributed", unattributed, sku)):
                take = min(short, pool[key])
                if take:
                    pool[key] -= take
                    lost[cause] += take
                    short -= take
            if short:
                lost["not charged"] += short
    return lost


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--level", default="busy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--config", default=None)
    ap.add_argument("--json")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--node", default="{}", help="FusionNode keyword arguments (JSON)")
    ap.add_argument("--tracker", default="{}", help="FloorTracker keyword arguments (JSON)")
    ap.add_argument("--perfect-appearance", action="store_true",
                    help="simulate unmistakable appearance (no look-alikes, no camera light, no noise): what is left "
                         "wrong then is not appearance's doing")
    a = ap.parse_args()
    config = load_store_config(a.config or example_store_path())
    appearance = AppearanceModel(lookalike_share=0.0, light_shift=0.0, concentration=5000.0) \
        if a.perfect_appearance else True
    total, sess, lost, results = Counter(), Counter(), Counter(), []
    for seed in range(a.seed, a.seed + a.seeds):
        r = diagnose(config, a.level, seed, a.v, json.loads(a.node), json.loads(a.tracker), appearance)
        results.append(r)
        total.update(r["changes"])
        sess.update(r["sessions"])
        lost.update(r["lost"])
        print(f"seed {seed}: {r['changes']} lost {r['lost']} sessions {r['sessions']} unattributed {r['unattributed']} "
              f"exact {r['exact']}/{r['shoppers']}")
        print("   ", {k: v for k, v in r["counters"].items() if "encounter" in k or "swap" in k or "flag" in k})
    print("total items:", dict(total))
    print("lines lost:", dict(lost))
    print("sessions:", dict(sess))
    print("exact:", sum(r["exact"] for r in results), "of", sum(r["shoppers"] for r in results))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
