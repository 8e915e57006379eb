"""Scoring the fusion node against a simulated store's truth.

:func:`score_carts` runs a :class:`~storesense.fusion.node.FusionNode` over a
scenario's messages and compares what it published with the truth:

- **receipts exact**: share of shoppers whose receipt lists exactly what they
  must pay for (the simulator's charging policy);
- **item precision / recall**: over all items on all receipts;
- **review share**: share of cart changes flagged for review;
- **identity switches**: times a session's published locations move from one
  true shopper to another (each location is matched to the nearest true
  shopper within 1.5 m);
- **floor error**: distance of each published location from the nearest true
  shopper, where a camera saw the shopper (median and p90): localisation
  alone, since who it is is scored by the identity switches.

Sessions are paired with true shoppers by their check-in tag. A session that
never got a tag cannot be billed to anyone in a real store: its receipt is
counted as **unbillable** and its items as lost, never credited by timing.
(:func:`pair_by_times`, pairing by entry and exit times, remains for the demo's
printout.)

Per shopper (:attr:`CartScore.per_shopper`, written by ``eval carts --json``):
truth, billed, exact, the receipt lines sent to review, wrong lines (a SKU whose
billed quantity differs from the truth) and whether each was flagged, and the
identity switches of the shopper's session. Wrong lines flagged and silent
errors (wrong lines without a flag) measure whether the review queue gets what
is doubtful. A wrong line is flagged when a review item covers it: a flagged
change of that product on the shopper's own cart, or, for a line billed short,
a flagged change of that product on another cart that names the shopper among
its ``alternatives`` (or an unattributed shelf change that lists the shopper
nearby): resolving that item moves the product to them. ``wrong_lines_flagged_own``
counts only flags on the shopper's own cart. Lines to review are the billed
lines with a flagged change plus the products flagged on the cart but not
billed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ...config import StoreConfig
from ...contracts import Envelope
from ...fusion.node import FusionNode


@dataclass
class CartScore:
    """What :func:`score_carts` measured for one scenario."""

    shoppers: int
    receipts: int
    exact: int
    items_true: int
    items_billed: int
    items_right: int
    changes: int
    review_changes: int
    identity_switches: int
    floor_errors: np.ndarray = field(repr=False)
    observations: int = 0
    fusion_seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    unbillable: int = 0
    wrong_lines: int = 0
    wrong_lines_flagged: int = 0
    wrong_lines_flagged_own: int = 0
    receipt_lines: int = 0
    receipt_lines_flagged: int = 0
    per_shopper: list[dict] = field(default_factory=list, repr=False)

    @property
    def exact_rate(self) -> float:
        """Share of shoppers with an exactly right receipt."""
        return self.exact / self.shoppers if self.shoppers else float("nan")

    @property
    def precision(self) -> float:
        """Share of billed items that were really taken by that shopper."""
        return self.items_right / self.items_billed if self.items_billed else 1.0

    @property
    def recall(self) -> float:
        """Share of taken items that were billed to the right shopper."""
        return self.items_right / self.items_true if self.items_true else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of :attr:`precision` and :attr:`recall` (the AutoCheckout competition's F1)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def review_share(self) -> float:
        """Share of cart changes sent to review."""
        return self.review_changes / self.changes if self.changes else 0.0

    def floor_error(self, q: float) -> float:
        """Quantile ``q`` (0..1) of the floor error in metres."""
        return float(np.quantile(self.floor_errors, q)) if len(self.floor_errors) else float("nan")

    @property
    def flagged_wrong_share(self) -> float:
        """Share of wrong receipt lines that carried a review flag."""
        return self.wrong_lines_flagged / self.wrong_lines if self.wrong_lines else 1.0

    @property
    def silent_errors_per_100(self) -> float:
        """Wrong receipt lines without a review flag per 100 shoppers."""
        return 100.0 * (self.wrong_lines - self.wrong_lines_flagged) / self.shoppers if self.shoppers else 0.0

    @property
    def line_review_share(self) -> float:
        """Share of receipt lines sent to review."""
        return self.receipt_lines_flagged / self.receipt_lines if self.receipt_lines else 0.0

    def to_json(self) -> dict:
        """The score as a plain dict (per-shopper diagnostics included)."""
        return {"shoppers": self.shoppers, "receipts": self.receipts, "unbillable": self.unbillable,
                "exact": self.exact, "exact_rate": round(self.exact_rate, 4), "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "f1": round(self.f1, 4), "changes": self.changes, "review_changes": self.review_changes,
                "review_share": round(self.review_share, 4), "receipt_lines": self.receipt_lines,
                "receipt_lines_flagged": self.receipt_lines_flagged, "wrong_lines": self.wrong_lines,
                "wrong_lines_flagged": self.wrong_lines_flagged, "wrong_lines_flagged_own": self.wrong_lines_flagged_own,
                "silent_errors_per_100": round(self.silent_errors_per_100, 2),
                "identity_switches": self.identity_switches,
                "floor_error_p50": round(self.floor_error(0.5), 4), "floor_error_p90": round(self.floor_error(0.9), 4),
                "observations_per_s": round(self.observations_per_s, 1), "counters": dict(sorted(self.counters.items())),
                "per_shopper": self.per_shopper}

    @property
    def observations_per_s(self) -> float:
        """Person observations fused per second of fusion time."""
        return self.observations / self.fusion_seconds if self.fusion_seconds else float("nan")


def pair_by_times(shoppers, receipts, max_cost_s: float = 30.0) -> list[tuple[int, int]]:
    """Pair true shoppers with receipts by when they entered and left (Hungarian).

    A pair costs ``|opened - entered| + |closed - left|`` seconds; pairs costing
    ``max_cost_s`` or more are left out. Returns (shopper index, receipt index)
    pairs in shopper order; none when either list is empty.
    """
    if not shoppers or not receipts:
        return []
    cost = np.array([[abs(r.opened_ts - s.enter_ts) + abs(r.closed_ts - s.exit_ts) for r in receipts]
                     for s in shoppers])
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if cost[i, j] < max_cost_s]


def _unit(shopper) -> str:
    """Who pays for a shopper's items: their group (the member who checked it in), or themselves."""
    return getattr(shopper, "group", None) or shopper.id


def _pair_sessions(node: FusionNode, scenario) -> dict[str, str]:
    """Session id -> true shopper (or group) id, by check-in tag only (an untagged session is unbillable)."""
    by_tag = {s.tag: _unit(s) for s in scenario.shoppers}
    return {sid: by_tag[session.tag] for sid, session in node.sessions.items() if session.tag in by_tag}


def _truth(scenario) -> dict[str, dict[str, int]]:
    """What each paying unit (a shopper, or a group together) must pay for, in order of arrival."""
    out: dict[str, dict[str, int]] = {}
    for s in scenario.shoppers:
        cart = out.setdefault(_unit(s), {})
        for sku, q in (s.charged() if hasattr(s, "charged") else s.cart()).items():
            cart[sku] = cart.get(sku, 0) + q
    return out


def score_carts(config: StoreConfig, scenario, *, node_factory=None, plot: str | None = None) -> CartScore:
    """Run the fusion over ``scenario`` and score it (see the module docstring).

    ``plot`` names a PNG to draw: the true walks and the fused sessions' paths.
    """
    out: list[Envelope] = []
    node = node_factory(out.append) if node_factory else FusionNode(config, out.append, run_id="eval")
    started = time.perf_counter()
    for msg in scenario.messages:
        node.handle(msg)
    node.flush()
    seconds = time.perf_counter() - started

    receipts = {m.shopper: m for m in out if m.type == "receipt"}
    pairs = _pair_sessions(node, scenario)
    truth = _truth(scenario)
    units = [(u, next(s for s in scenario.shoppers if _unit(s) == u)) for u in truth]
    billed_by_shopper: dict[str, dict[str, int]] = {}
    flagged_by_shopper: dict[str, set[str]] = {}
    sessions_of: dict[str, list[str]] = {}
    for sid, r in receipts.items():
        who = pairs.get(sid)
        if who is not None:
            sessions_of.setdefault(who, []).append(sid)
            lines = billed_by_shopper.setdefault(who, {})
            for line in r.lines:
                lines[line.sku] = lines.get(line.sku, 0) + line.quantity
            flagged_by_shopper.setdefault(who, set()).update(
                c.sku for c in node.sessions[sid].ledger.changes.values() if c.needs_review)
    exact = sum(1 for u in truth if billed_by_shopper.get(u, {}) == truth[u] and u in billed_by_shopper)
    items_true = sum(sum(c.values()) for c in truth.values())
    items_billed = sum(line.quantity for r in receipts.values() for line in r.lines)
    items_right = sum(min(q, billed_by_shopper.get(who, {}).get(sku, 0))
                      for who, cart in truth.items() for sku, q in cart.items())

    changes = [m.change for m in out if m.type == "cart_event" and m.change is not None]
    switches, errors, switches_of = _locations(out, scenario)
    if plot:
        plot_sessions(config, scenario, out, pairs, plot)
    # review items elsewhere that name a session as who may have made the change instead
    offered: dict[str, set[str]] = {}
    for sess in node.sessions.values():
        for c in sess.ledger.changes.values():
            if c.needs_review:
                for alt in c.alternatives:
                    offered.setdefault(alt, set()).add(c.sku)
    for m in out:
        if m.type == "shelf_event" and m.kind == "unattributed":
            for n in m.nearby:
                offered.setdefault(n.shopper, set()).add(m.sku)
    per_shopper, wrong, wrong_flagged, wrong_own, n_lines, n_flagged = [], 0, 0, 0, 0, 0
    for uid, s in units:
        billed, want = billed_by_shopper.get(uid, {}), truth[uid]
        flagged = flagged_by_shopper.get(uid, set())
        elsewhere = set().union(*(offered.get(sid, set()) for sid in sessions_of.get(uid, [])))
        skus = sorted(set(billed) | set(want))
        wrong_skus = [k for k in skus if billed.get(k, 0) != want.get(k, 0)]
        covered = [k for k in wrong_skus if k in flagged or (billed.get(k, 0) < want.get(k, 0) and k in elsewhere)]
        wrong += len(wrong_skus)
        wrong_flagged += len(covered)
        wrong_own += sum(1 for k in wrong_skus if k in flagged)
        # a flag on a product the receipt does not bill ("charged to another, maybe yours") is a line to review too
        n_lines += len(set(billed) | flagged)
        n_flagged += len(flagged)
        per_shopper.append({
            "shopper": uid, "tag": s.tag, "sessions": sessions_of.get(uid, []), "truth": dict(sorted(want.items())),
            "billed": dict(sorted(billed.items())), "exact": uid in billed_by_shopper and billed == want,
            "review": sorted(flagged), "wrong_lines": wrong_skus,
            "wrong_flagged": covered, "flagged_elsewhere": sorted(elsewhere & set(wrong_skus)),
            "identity_switches": sum(switches_of.get(sid, 0) for sid in sessions_of.get(uid, []))})
    return CartScore(
        shoppers=len(truth), receipts=len(receipts), exact=exact, items_true=items_true,
        items_billed=items_billed, items_right=items_right, changes=len(changes),
        review_changes=sum(c.needs_review for c in changes), identity_switches=switches,
        floor_errors=np.asarray(errors), observations=node.counters.get("in.person_observation", 0),
        fusion_seconds=seconds, counters=dict(node.counters),
        unbillable=sum(1 for sid in receipts if sid not in pairs), wrong_lines=wrong,
        wrong_lines_flagged=wrong_flagged, wrong_lines_flagged_own=wrong_own, receipt_lines=n_lines, receipt_lines_flagged=n_flagged,
        per_shopper=per_shopper,
    )


def _locations(out: list[Envelope], scenario) -> tuple[int, list[float], dict[str, int]]:
    """Identity switches (all, and per session) and floor errors of the published locations."""
    locs = [m for m in out if m.type == "shopper_location"]
    if not locs:
        return 0, [], {}
    ids = [s.id for s in scenario.shoppers]
    times = np.array([m.ts for m in locs])
    truth_xy = np.stack([s.positions(times) if hasattr(s, "positions")
                         else np.array([s.position(t) if s.enter_ts <= t <= s.exit_ts else (np.nan, np.nan)
                                        for t in times])
                         for s in scenario.shoppers], axis=1)  # (T, S, 2)
    current: dict[str, str] = {}
    switches = 0
    per_session: dict[str, int] = {}
    errors = []
    for k, m in enumerate(locs):
        d = np.hypot(truth_xy[k, :, 0] - m.x, truth_xy[k, :, 1] - m.y)
        d = np.where(np.isnan(d), np.inf, d)
        nearest = int(np.argmin(d)) if len(d) else -1
        if nearest >= 0 and d[nearest] <= 1.5:
            who = ids[nearest]
            if m.shopper in current and current[m.shopper] != who:
                switches += 1
                per_session[m.shopper] = per_session.get(m.shopper, 0) + 1
            current[m.shopper] = who
        if nearest >= 0 and np.isfinite(d[nearest]) and any(src != "ble" for src in m.sources):
            errors.append(float(d[nearest]))  # localisation; who it is counts in the identity switches
    return switches, errors, per_session


LEVEL_NAMES = ("quiet", "busy", "crowded")


def evaluate_levels(config: StoreConfig, levels=LEVEL_NAMES, *, seeds=(0,), shoppers: int | None = None,
                    progress=None, plot_dir=None, per_seed: dict | None = None) -> dict[str, CartScore]:
    """Simulate and score each difficulty level over ``seeds``; scores are summed per level.

    With ``plot_dir``, the first seed of each level is drawn to ``carts-<level>.png`` there.
    ``per_seed`` (a dict) receives each level's score per seed: ``per_seed[level][seed]``.
    Seeds below 1000 are the ones parameters were tuned on; report on 1000 and above.
    """
    from ..sim.simulator import simulate

    results: dict[str, CartScore] = {}
    for level in levels:
        total = None
        for seed in seeds:
            if progress:
                progress(f"{level}: simulating seed {seed}")
            scenario = simulate(config, level, shoppers=shoppers, seed=seed)
            if progress:
                progress(f"{level}: fusing {len(scenario.messages)} messages (seed {seed})")
            plot = None
            if plot_dir is not None and seed == seeds[0]:
                from pathlib import Path

                Path(plot_dir).mkdir(parents=True, exist_ok=True)
                plot = str(Path(plot_dir) / f"carts-{level}.png")
            score = score_carts(config, scenario, plot=plot)
            if per_seed is not None:
                per_seed.setdefault(level, {})[seed] = score
            total = score if total is None else _add(total, score)
        results[level] = total  # type: ignore[assignment]
    return results


#: the CMU AutoCheckout competition's baseline (2020), over all its scripted cases: the anchor of the scenario table
AUTOCHECKOUT_BASELINE = {"precision": 0.875, "recall": 0.926, "f1": 0.900}


def evaluate_scenarios(configs: dict, names, *, seeds=(0,), progress=None,
                       per_seed: dict | None = None) -> dict[str, dict[str, CartScore]]:
    """Play and score each named scenario (datasets/sim/scenarios.py) in each store over ``seeds``.

    ``configs`` maps a store label to its config; the result is ``[store][scenario]``, scores summed over
    the seeds (``per_seed[store][scenario][seed]`` receives each). Seeds below 1000 are development
    seeds; report on 1000 and above.
    """
    from ..sim.scenarios import simulate_scenario

    results: dict[str, dict[str, CartScore]] = {}
    for store, config in configs.items():
        for name in names:
            total = None
            for seed in seeds:
                if progress:
                    progress(f"{store}: {name}, seed {seed}")
                scenario = simulate_scenario(config, name, seed)
                score = score_carts(scenario.fusion_config or config, scenario)
                if per_seed is not None:
                    per_seed.setdefault(store, {}).setdefault(name, {})[seed] = score
                total = score if total is None else _add(total, score)
            results.setdefault(store, {})[name] = total  # type: ignore[assignment]
    return results


def scenario_report(configs: dict, which: str, seeds: list[int], progress=None) -> dict:
    """Play the named scenarios (``which``: a name or ``all``) in each store; tables and JSON for ``eval carts``.

    Per store, one row per scenario (receipts exactly right, precision, recall and F1 of products with
    quantities per receipt, receipt lines sent to review), a row over all scenarios and the AutoCheckout
    baseline's row as the anchor.
    """
    from ...errors import StoresenseError
    from ..sim.scenarios import SCENARIOS

    if which != "all" and which not in SCENARIOS:
        raise StoresenseError(f"eval carts --scenario: unknown scenario {which!r}; choose all, "
                              f"{', '.join(SCENARIOS)}")
    names = list(SCENARIOS) if which == "all" else [which]
    per_seed: dict = {}
    results = evaluate_scenarios(configs, names, seeds=seeds, progress=progress, per_seed=per_seed)
    tuned = [s for s in seeds if s < 1000]
    note = (f"; seeds {tuned[0]}..{tuned[-1]} are development seeds (tuned on)" if tuned
            else "; none used for tuning")
    columns = ["scenario", "receipts", "exact", "precision", "recall", "F1", "lines to review"]

    def row(name: str, r: CartScore) -> list[str]:
        return [name, str(r.shoppers), f"{100 * r.exact_rate:.1f}%", f"{100 * r.precision:.1f}%",
                f"{100 * r.recall:.1f}%", f"{r.f1:.3f}", f"{100 * r.line_review_share:.1f}%"]

    tables, data = {}, {}
    for store, by_name in results.items():
        rows = [row(name, r) for name, r in by_name.items()]
        total = None
        for r in by_name.values():
            total = r if total is None else _add(total, r)
        b = AUTOCHECKOUT_BASELINE
        rows += [row("all scenarios", total),  # type: ignore[arg-type]
                 ["AutoCheckout baseline (CMU, 2020)", "", "", f"{100 * b['precision']:.1f}%",
                  f"{100 * b['recall']:.1f}%", f"{b['f1']:.3f}", ""]]
        tables[store] = rows
        data[store] = {"total": {k: v for k, v in total.to_json().items() if k != "per_shopper"},  # type: ignore[union-attr]
                       "scenarios": {name: {"total": {k: v for k, v in r.to_json().items() if k != "per_shopper"},
                                            "seeds": {str(sd): sc.to_json()
                                                      for sd, sc in per_seed[store][name].items()}}
                                     for name, r in by_name.items()}}
    legend = ("receipts: paying units (a shopper, or a group together); exact: receipts exactly right; "
              "precision/recall/F1: products with quantities per receipt, summed over receipts (the AutoCheckout "
              "competition's measure); lines to review: receipt lines with a change flagged for review")
    return {"tables": tables, "columns": columns, "note": note, "legend": legend,
            "json": {"command": "eval carts --scenario", "scenarios": names, "seeds": seeds, "tuning_seeds": tuned,
                     "baseline": AUTOCHECKOUT_BASELINE, "stores": data}}


def _add(a: CartScore, b: CartScore) -> CartScore:
    counters = dict(a.counters)
    for k, v in b.counters.items():
        counters[k] = counters.get(k, 0) + v
    return CartScore(
        shoppers=a.shoppers + b.shoppers, receipts=a.receipts + b.receipts, exact=a.exact + b.exact,
        items_true=a.items_true + b.items_true, items_billed=a.items_billed + b.items_billed,
        items_right=a.items_right + b.items_right, changes=a.changes + b.changes,
        review_changes=a.review_changes + b.review_changes,
        identity_switches=a.identity_switches + b.identity_switches,
        floor_errors=np.concatenate([a.floor_errors, b.floor_errors]), observations=a.observations + b.observations,
        fusion_seconds=a.fusion_seconds + b.fusion_seconds, counters=counters,
        unbillable=a.unbillable + b.unbillable, wrong_lines=a.wrong_lines + b.wrong_lines,
        wrong_lines_flagged=a.wrong_lines_flagged + b.wrong_lines_flagged,
        wrong_lines_flagged_own=a.wrong_lines_flagged_own + b.wrong_lines_flagged_own,
        receipt_lines=a.receipt_lines + b.receipt_lines,
        receipt_lines_flagged=a.receipt_lines_flagged + b.receipt_lines_flagged,
        per_shopper=a.per_shopper + b.per_shopper,
    )


def plot_sessions(config: StoreConfig, scenario, out: list[Envelope], pairs: dict[str, str], path) -> None:
    """PNG: each true shopper's walk (thin) and the path of the session paired with them (dots).

    A session drawn in another shopper's colour, or dots that jump from one walk
    to another, show where identity went wrong.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..sim.plot import _poly, matplotlib_colours

    fig, ax = plt.subplots(figsize=(12, 8.5))
    _poly(ax, config.floor.outline, color="k", lw=1.5)
    for shelf in config.shelves:
        p = np.asarray(shelf.polygon, float)
        ax.fill(p[:, 0], p[:, 1], color="0.8")
    for z in config.zones:
        if z.kind in ("entry", "exit"):
            _poly(ax, z.polygon, color="g" if z.kind == "entry" else "r", ls="--", lw=1)
    colours = dict(zip([s.id for s in scenario.shoppers], matplotlib_colours(len(scenario.shoppers))))
    for s in scenario.shoppers:
        k = np.asarray(s.keyframes, float)
        ax.plot(k[:, 1], k[:, 2], "-", color=colours[s.id], lw=1.0, alpha=0.6)
    by_session: dict[str, list] = {}
    for m in out:
        if m.type == "shopper_location":
            by_session.setdefault(m.shopper, []).append((m.x, m.y))
    for sid, pts in by_session.items():
        p = np.asarray(pts)
        colour = colours.get(pairs.get(sid, ""), "k")
        ax.plot(p[:, 0], p[:, 1], ".", color=colour, ms=3)
        ax.text(p[0, 0], p[0, 1], sid[-4:], fontsize=6, color=colour)
    ax.set_aspect("equal")
    ax.set_title("true walks (lines) and fused session paths (dots, in the colour of the shopper paired by "
                 "check-in; black: unpaired)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
