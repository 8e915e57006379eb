"""A simulated shop day for the store analytics, with the truth the analytics must match.

:func:`simulate_day` plans a whole day of shoppers with the store simulator's planner
(:class:`~.shoppers.ShopperPlanner`: walks, shelf visits, picks, put-backs, handovers) arriving
(3-6 plates each, half of them after a
browsing detour; shelves are restocked as they empty) over the opening hours along an arrival curve (an inhomogeneous Poisson process: quiet morning,
a lunch peak, the after-work peak; :data:`ARRIVAL_CURVE`), and renders **what the fusion node
publishes to the hub** for each of them, in time order:

- ``cart_event`` *new* when the session opens (a short detection delay after the shopper
  walks in), ``shopper_location`` every ``location_period_s`` (the fusion's default 0.5 s) from
  a track that errs from the truth by a smooth random walk (AR(1), ``position_sigma_m`` = 0.15 m,
  2 s correlation: what a Kalman track's error looks like, so zone boundaries are crossed late,
  early or twice as they are in the store);
- ``zone_event`` *enter* / *exit* from that track, point in polygon at the tracker's rate
  (10 Hz), as the fusion does, and the close when the track has been ``min_dwell_s`` in the exit
  zone (exit events for the zones still open, ``cart_event`` *end*, the closed ``cart_state``
  and the ``receipt``);
- ``cart_event`` *update* and ``cart_state`` for every true pick and put-back (shelf, plate,
  SKU, quantity), so the receipt lists what the shopper carried out;
- a voided duplicate session for ``duplicate_share`` of the shoppers (a second session that
  the fusion ends without a receipt, as it does when it merges two tracks of one person).

This is the fusion's output modelled from the truth, not the fusion itself run on rendered
cameras (a day of camera frames is far too slow for an evaluation): it checks the hub's
analytics, the fusion's own accuracy is measured by ``storesense eval``. :func:`day_truth` gives
what the analytics should find: footfall, visit durations, zone visitors and zone conversion.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
import zlib
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

import numpy as np

from ...config import StoreConfig
from ...contracts import (CartChange, CartEvent, CartLine, CartState, Envelope, Receipt, ReceiptLine,
                          ShopperLocation, Stamper, ZoneEvent)
from ...errors import StoresenseError
from ...geometry.polygons import point_in_polygon
from ...hub.analytics.rollup import zone_shelves
from .shoppers import ShopperPlanner, SimShopper
from .simulator import _grid, get_level

#: relative arrival rate for each opening hour from 08:00 (stretched over other opening hours)
ARRIVAL_CURVE = (0.45, 0.7, 0.85, 0.9, 1.35, 1.5, 1.0, 0.85, 0.95, 1.4, 1.7, 1.1)
#: the tracker's update rate used to find zone crossings, Hz
TRACK_HZ = 10.0


@dataclass
class SimDay:
    """A simulated day: the fusion-to-hub messages, the shoppers' truth and the day's settings."""

    seed: int
    date: str
    open_ts: float
    close_ts: float
    timezone: str
    messages: list[Envelope]
    shoppers: list[SimShopper]
    duplicates: int = 0
    stats: dict = field(default_factory=dict)


def arrival_times(rng: np.random.Generator, open_ts: float, close_ts: float, visitors: float,
                  curve: tuple[float, ...] = ARRIVAL_CURVE) -> list[float]:
    """Arrival times over [open_ts, close_ts): a Poisson process of ``visitors`` expected arrivals
    whose rate follows ``curve`` (piecewise linear between hour midpoints), drawn by thinning."""
    span = close_ts - open_ts
    if span <= 0 or visitors < 0:
        raise StoresenseError("the day needs opening hours (close after open) and visitors >= 0")
    xs = (np.arange(len(curve)) + 0.5) / len(curve)
    weights = np.asarray(curve, float)
    peak = float(weights.max())
    mean = float(np.mean(np.interp(np.linspace(0, 1, 2001), xs, weights)))
    rate_max = visitors / span * peak / mean
    out: list[float] = []
    t = open_ts
    while True:
        t += float(rng.exponential(1.0 / rate_max)) if rate_max > 0 else math.inf
        if t >= close_ts - 60.0:  # nobody walks in during the last minute
            return out
        if rng.random() < float(np.interp((t - open_ts) / span, xs, weights)) / peak:
            out.append(t)


def simulate_day(config: StoreConfig, seed: int = 1, *, date: str = "2026-03-02", open_hour: float = 8.0,
                 close_hour: float = 20.0, visitors: float = 400.0, level: str = "quiet",
                 location_period_s: float = 0.5, position_sigma_m: float = 0.15,
                 duplicate_share: float = 0.02) -> SimDay:
    """Simulate one shop day in ``config``'s store (see the module docstring); seeded by ``seed``.

    ``date`` and the opening hours are in the store's time zone; ``visitors`` is the expected
    number of arrivals; ``level`` the store simulator level whose shopping behaviour is used.
    """
    if not 0 <= open_hour < close_hour <= 24:
        raise StoresenseError(f"opening hours {open_hour}-{close_hour}: need 0 <= open < close <= 24")
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise StoresenseError(f"date {date!r} is not YYYY-MM-DD") from None
    tz = ZoneInfo(config.store.timezone)
    midnight = dt.datetime.combine(day, dt.time(), tz).timestamp()
    open_ts, close_ts = midnight + open_hour * 3600, midnight + close_hour * 3600
    # a day's shoppers shop more than a test scenario's: more plates, more browsing
    lv = replace(get_level(level), visits=(3, 6), wander_share=0.5)
    ss = np.random.SeedSequence([int(seed), zlib.crc32(b"day"), zlib.crc32(lv.name.encode())])
    arr_ss, plan_ss, track_ss = ss.spawn(3)
    arrivals = arrival_times(np.random.default_rng(arr_ss), open_ts, close_ts, visitors)
    planner = ShopperPlanner(config, _grid(config), lv, np.random.default_rng(plan_ss))
    shoppers: list[SimShopper] = []
    full = dict(planner.stock)
    for i, t in enumerate(arrivals):
        planner.stock.update(full)  # staff restock the shelves as they empty
        inside = [s for s in shoppers if s.exit_ts > t - 30.0]
        shoppers.append(planner.plan(i, t, inside))
    rng = np.random.default_rng(track_ss)
    records: list[tuple[float, int, type, dict]] = []
    run = f"day-{seed}"
    dups = 0
    for n, s in enumerate(shoppers):
        records += _render(config, s, rng, f"s-{uuid.uuid5(uuid.NAMESPACE_OID, f'{run}/{n}').hex[:12]}",
                           location_period_s, position_sigma_m, n)
        if rng.random() < duplicate_share:
            dups += 1
            records += _duplicate(s, rng, f"s-{uuid.uuid5(uuid.NAMESPACE_OID, f'{run}/dup/{n}').hex[:12]}", n)
    records.sort(key=lambda r: (r[0], r[1]))
    stamper = Stamper("fusion", run_id=run)
    messages = [stamper.make(cls, round(ts, 3), **fields) for ts, _, cls, fields in records]
    return SimDay(seed=seed, date=date, open_ts=open_ts, close_ts=close_ts, timezone=config.store.timezone,
                  messages=messages, shoppers=shoppers, duplicates=dups,
                  stats={"shoppers": len(shoppers), "messages": len(messages), "duplicates": dups})


def _track(s: SimShopper, rng: np.random.Generator, sigma: float, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """Times at TRACK_HZ over [t0, t1] and the track's positions: truth plus an AR(1) error."""
    times = np.arange(t0, t1 + 1e-9, 1.0 / TRACK_HZ)
    truth = s.positions(np.clip(times, s.enter_ts, s.exit_ts))
    a = math.exp(-1.0 / (TRACK_HZ * 2.0))  # 2 s correlation
    err = np.zeros((len(times), 2))
    e = rng.normal(0.0, sigma, 2)
    for i in range(len(times)):
        e = a * e + math.sqrt(1 - a * a) * rng.normal(0.0, sigma, 2)
        err[i] = e
    return times, truth + err


def _render(config: StoreConfig, s: SimShopper, rng: np.random.Generator, sid: str, period: float, sigma: float,
            order: int) -> list[tuple[float, int, type, dict]]:
    """The fusion's messages for one shopper's session."""
    out: list[tuple[float, int, type, dict]] = []
    opened = s.enter_ts + float(rng.uniform(0.2, 0.6))  # the tracker needs a few frames
    times, pos = _track(s, rng, sigma, opened, s.exit_ts + 5.0)
    out.append((opened, order, CartEvent, dict(shopper=sid, phase="new", cart_version=0)))
    out.append((opened, order, CartState, dict(shopper=sid, status="open", cart_version=0, total=0.0)))
    inside: dict[str, float] = {}
    closed_ts = None
    last_loc = -math.inf
    for t, (x, y) in zip(times, pos):
        t = float(t)
        for zone in config.zones:
            now_in = point_in_polygon(float(x), float(y), zone.polygon)
            if now_in and zone.id not in inside:
                inside[zone.id] = t
                out.append((t, order, ZoneEvent, dict(shopper=sid, zone=zone.id, phase="enter")))
            elif not now_in and zone.id in inside:
                entered = inside.pop(zone.id)
                out.append((t, order, ZoneEvent, dict(shopper=sid, zone=zone.id, phase="exit",
                                                      dwell_s=round(t - entered, 3))))
            if now_in and zone.kind == "exit" and t - inside[zone.id] >= zone.min_dwell_s and t > s.enter_ts + 5:
                closed_ts = t
                break
        if closed_ts is not None:
            break
        if t - last_loc >= period - 1e-9:
            last_loc = t
            out.append((t, order, ShopperLocation, dict(shopper=sid, track=f"ft-{order}", x=round(float(x), 3),
                                                        y=round(float(y), 3),
                                                        cov=((sigma ** 2, 0.0), (0.0, sigma ** 2)))))
    if closed_ts is None:
        closed_ts = float(times[-1])
    version = 0
    lines: dict[str, int] = {}
    for a in s.actions:
        if a.ts >= closed_ts:
            continue
        version += 1
        lines[a.sku] = lines.get(a.sku, 0) + a.quantity
        change = CartChange(sku=a.sku, quantity=a.quantity, confidence=0.95, shelf=a.shelf, plate=a.plate,
                            reason="day simulation: true action")
        out.append((a.ts, order, CartEvent, dict(shopper=sid, phase="update", change=change, cart_version=version)))
        out.append((a.ts, order, CartState, dict(shopper=sid, status="open", cart_version=version,
                                                 **_cart(config, lines))))
    for zone_id, entered in sorted(inside.items()):
        out.append((closed_ts, order, ZoneEvent, dict(shopper=sid, zone=zone_id, phase="exit",
                                                      dwell_s=round(closed_ts - entered, 3))))
    out.append((closed_ts, order, CartEvent, dict(shopper=sid, phase="end", cart_version=version)))
    cart = _cart(config, lines)
    out.append((closed_ts, order, CartState, dict(shopper=sid, status="closed", cart_version=version, **cart)))
    receipt_lines = tuple(ReceiptLine(sku=l.sku, name=l.name, quantity=l.quantity, unit_price=l.unit_price,
                                      amount=round(l.quantity * l.unit_price, 2)) for l in cart["lines"])
    out.append((closed_ts, order, Receipt, dict(
        shopper=sid, receipt_id="r-" + sid[2:], lines=receipt_lines, total=cart["total"],
        currency=config.store.currency, opened_ts=round(opened, 3), closed_ts=round(closed_ts, 3))))
    return out


def _cart(config: StoreConfig, lines: dict[str, int]) -> dict:
    cart_lines = tuple(CartLine(sku=sku, name=config.product(sku).name, quantity=q,
                                unit_price=config.product(sku).price, confidence=0.95)
                       for sku, q in sorted(lines.items()) if q > 0)
    return {"lines": cart_lines, "total": round(sum(l.quantity * l.unit_price for l in cart_lines), 2)}


def _duplicate(s: SimShopper, rng: np.random.Generator, sid: str, order: int) -> list[tuple[float, int, type, dict]]:
    """A second session of the same shopper that the fusion voids a few seconds later (no receipt)."""
    t0 = float(rng.uniform(s.enter_ts + 2.0, max(s.enter_ts + 3.0, s.exit_ts - 5.0)))
    t1 = min(t0 + float(rng.uniform(1.0, 4.0)), s.exit_ts)
    out: list[tuple[float, int, type, dict]] = [(t0, order, CartEvent, dict(shopper=sid, phase="new", cart_version=0))]
    for t in np.arange(t0, t1, 0.5):
        x, y = s.positions(np.asarray([t]))[0]
        out.append((float(t), order, ShopperLocation, dict(shopper=sid, track=f"ft-dup-{order}", x=round(float(x), 3),
                                                          y=round(float(y), 3), cov=((0.05, 0.0), (0.0, 0.05)))))
    out.append((t1, order, CartEvent, dict(shopper=sid, phase="end", cart_version=0)))
    out.append((t1, order, CartState, dict(shopper=sid, status="closed", cart_version=0, total=0.0)))
    return out


@dataclass
class DayTruth:
    """What the analytics of a simulated day should find."""

    visits: int
    dwell_median_s: float
    zone_visitors: dict[str, int]
    zone_buyers: dict[str, int]

    def zone_conversion(self, zone: str) -> float | None:
        """Share of the zone's visitors who bought from its shelves."""
        v = self.zone_visitors.get(zone, 0)
        return self.zone_buyers.get(zone, 0) / v if v else None


def day_truth(config: StoreConfig, day: SimDay) -> DayTruth:
    """The truth of ``day``: visits, median visit duration, visitors and buyers of each zone.

    A shopper visited a zone when the true walk (sampled at 10 Hz) was inside its polygon; bought
    from it when they carried out an item taken from a shelf shopped from the zone (its access
    point lies in the zone).
    """
    shelves_of = zone_shelves(config)
    dwell = [s.exit_ts - s.enter_ts for s in day.shoppers]
    visitors: dict[str, int] = {}
    buyers: dict[str, int] = {}
    for s in day.shoppers:
        times = np.arange(s.enter_ts, s.exit_ts, 0.1)
        pos = s.positions(times)
        net: dict[tuple[str, str], int] = {}
        for a in s.actions:
            net[(a.shelf, a.sku)] = net.get((a.shelf, a.sku), 0) + a.quantity
        charged = s.charged()
        bought_shelves = {shelf for (shelf, sku), q in net.items() if q > 0 and charged.get(sku, 0) > 0}
        for zone in config.zones:
            if any(point_in_polygon(float(x), float(y), zone.polygon) for x, y in pos):
                visitors[zone.id] = visitors.get(zone.id, 0) + 1
                if bought_shelves & shelves_of[zone.id]:
                    buyers[zone.id] = buyers.get(zone.id, 0) + 1
    return DayTruth(visits=len(day.shoppers), dwell_median_s=float(np.median(dwell)) if dwell else 0.0,
                    zone_visitors=visitors, zone_buyers=buyers)


# --------------------------------------------------------------------------- evaluation

#: the issue's tolerances: footfall within 2 %, median visit duration within 5 %, zone conversion within 3 points
TOLERANCES = {"footfall_rel": 0.02, "dwell_median_rel": 0.05, "conversion_points": 3.0}


def feed_hub(day: SimDay, store, rollup, batch: int = 500) -> None:
    """Store ``day``'s messages in a :class:`~storesense.hub.store.HubStore` and fold them into
    ``rollup`` in batches, as the hub's ingest does (without a broker in between); the messages come
    in time order, so ``rollup`` may be built with ``wall_guard_s=0``."""
    msgs = day.messages
    for i in range(0, len(msgs), batch):
        items = [(m, "") for m in msgs[i:i + batch]]
        added = store.ingest_many(items)
        rollup.observe([m for (m, _), a in zip(items, added) if a])
    with store.db.transaction():
        rollup.sweep()


def compare_day(config: StoreConfig, day: SimDay, report) -> dict:
    """The analytics ``report`` of ``day`` next to the truth, with pass/fail per tolerance.

    ``report`` is a :class:`~storesense.hub.analytics.AnalyticsReport` over the day built with
    k=1 (the comparison is of the computation; k-anonymity only withholds rows).
    """
    truth = day_truth(config, day)
    summary = report.summary
    visits = summary["visits"] or 0
    dwell = summary["dwell_median_s"] or 0.0
    zones = {z["zone"]: z for z in report.tables["zones"]}
    zone_rows = []
    for zone in config.zones:
        t_conv = truth.zone_conversion(zone.id)
        got = zones.get(zone.id)
        h_conv = got["conversion"] if got else None
        if t_conv is None or h_conv is None:
            continue
        zone_rows.append({"zone": zone.id, "truth_visitors": truth.zone_visitors.get(zone.id, 0),
                          "hub_visitors": got["visitors"], "truth_conversion": round(t_conv, 4),
                          "hub_conversion": h_conv, "error_points": round(100 * (h_conv - t_conv), 2)})
    footfall_err = (visits - truth.visits) / truth.visits if truth.visits else 0.0
    dwell_err = (dwell - truth.dwell_median_s) / truth.dwell_median_s if truth.dwell_median_s else 0.0
    worst = max((abs(z["error_points"]) for z in zone_rows), default=0.0)
    return {
        "seed": day.seed, "date": day.date, "duplicates_voided": day.duplicates,
        "footfall": {"truth": truth.visits, "hub": visits, "error_rel": round(footfall_err, 4),
                     "ok": abs(footfall_err) <= TOLERANCES["footfall_rel"]},
        "dwell_median_s": {"truth": round(truth.dwell_median_s, 2), "hub": dwell, "error_rel": round(dwell_err, 4),
                           "ok": abs(dwell_err) <= TOLERANCES["dwell_median_rel"]},
        "zone_conversion": {"zones": zone_rows, "worst_error_points": worst,
                            "ok": worst <= TOLERANCES["conversion_points"]},
    }


def through_fusion(config: StoreConfig, seed: int, *, level: str = "quiet", shoppers: int = 60) -> SimDay:
    """A stretch of shopping run through the **real** pipeline: the store simulator renders the cameras,
    BLE nodes and shelf load cells (:func:`~.simulator.simulate`, its level's arrivals), the fusion node
    (:class:`~storesense.fusion.service.FusionService`) turns them into what it publishes to the hub.

    The result is a :class:`SimDay` whose messages are the fusion's output and whose shoppers are the
    simulator's truth, for :func:`feed_hub` and :func:`compare_day`. Much slower than
    :func:`simulate_day` (every camera frame is rendered and tracked), so it covers minutes, not a day.
    """
    from ...fusion.service import FusionService
    from .simulator import simulate

    scenario = simulate(config, level, shoppers=shoppers, seed=seed)
    out: list[Envelope] = []
    with FusionService(config, run_id=f"analytics-{level}-{seed}", sinks=[out.append]) as fusion:
        fusion.run(scenario.messages)
    day = dt.datetime.fromtimestamp(scenario.start_ts, ZoneInfo(config.store.timezone)).date().isoformat()
    return SimDay(seed=seed, date=day, open_ts=scenario.start_ts, close_ts=scenario.end_ts,
                  timezone=config.store.timezone, messages=out, shoppers=list(scenario.shoppers),
                  stats={"shoppers": len(scenario.shoppers), "messages": len(out), "level": level})
