"""The analytics of a time range, read from the rollup tables, with k-anonymity applied.

:func:`build_report` is what every output shares: the CLI export (CSV, Parquet, PNG), the
hub's JSON endpoints and page, and the hourly MQTT message. :data:`COLUMNS` documents each
table's columns (docs/analytics.md shows them; the Parquet schema is built from them).
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from ...config import StoreConfig
from ...errors import StoresenseError
from ..db import Database
from .anonymity import Suppression, merge_runs, suppress
from .rollup import create_schema, dwell_bin_edges

#: table -> [(column, type, description)]; types: str, int, float, bool
COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "summary": [
        ("from", "str", "Start of the range, ISO 8601 in the store's time zone (inclusive)."),
        ("to", "str", "End of the range, ISO 8601 in the store's time zone (exclusive)."),
        ("k", "int", "k-anonymity threshold: groups of fewer visitors are suppressed or merged."),
        ("visits", "int", "Visits that began in the range (a visit = one shopper session)."),
        ("unclosed", "int", "Of those, visits the hub never got a receipt for (counted after the idle timeout)."),
        ("buyers", "int", "Visits whose receipt has at least one item."),
        ("conversion", "float", "buyers / visits."),
        ("dwell_median_s", "float", "Median visit duration, seconds (entry to exit)."),
        ("dwell_p25_s", "float", "25th percentile of visit duration, seconds."),
        ("dwell_p75_s", "float", "75th percentile of visit duration, seconds."),
        ("dwell_mean_s", "float", "Mean visit duration, seconds."),
        ("basket_items_mean", "float", "Mean items per buying visit."),
        ("basket_value_mean", "float", "Mean receipt total per buying visit, store currency."),
        ("queue_mean_s", "float", "Mean queue time (checkout zones, or the exit zone: docs/analytics.md)."),
        ("suppressed", "bool", "True when the whole range has fewer than k visits (every figure withheld)."),
    ],
    "hourly": [
        ("hour_start", "str", "Start of the hour (or of the first of merged hours), store time zone."),
        ("hour_start_ts", "int", "The same as Unix seconds."),
        ("hours", "int", "Hours in this row: more than 1 when quiet hours were merged to reach k."),
        ("visits", "int", "Visits that began in the hour(s)."),
        ("buyers", "int", "Of those, visits that bought something."),
        ("conversion", "float", "buyers / visits."),
        ("dwell_mean_s", "float", "Mean visit duration, seconds."),
        ("items", "int", "Items bought."),
        ("basket_value", "float", "Receipt totals, store currency."),
        ("queue_mean_s", "float", "Mean queue time, seconds (empty when no visit queued)."),
    ],
    "daily": [
        ("date", "str", "Day in the store's time zone."),
        ("visits", "int", "Visits that began that day."),
        ("buyers", "int", "Of those, visits that bought something."),
        ("conversion", "float", "buyers / visits."),
        ("dwell_mean_s", "float", "Mean visit duration, seconds."),
        ("items", "int", "Items bought."),
        ("basket_value", "float", "Receipt totals, store currency."),
    ],
    "dwell": [
        ("from_s", "float", "Visit duration from (inclusive), seconds."),
        ("to_s", "float", "Visit duration to (exclusive), seconds; bins merged to reach k are wider."),
        ("visits", "int", "Visits of that duration."),
    ],
    "heatmap": [
        ("cx", "int", "Cell column: floor x = cx × cell_m."),
        ("cy", "int", "Cell row: floor y = cy × cell_m."),
        ("x0_m", "float", "Cell's west edge, metres."),
        ("y0_m", "float", "Cell's south edge, metres."),
        ("cell_m", "float", "Cell side, metres."),
        ("seconds", "float", "Shopper-seconds spent in the cell."),
        ("visitors", "int", "Visits that spent time in the cell."),
        ("seconds_per_visitor", "float", "seconds / visitors."),
    ],
    "zones": [
        ("zone", "str", "Zone id from the store config."),
        ("kind", "str", "Zone kind (store, entry, exit, aisle, offer, checkout)."),
        ("visitors", "int", "Visits that entered the zone."),
        ("share_of_visits", "float", "visitors / all visits in the range."),
        ("dwell_mean_s", "float", "Mean time inside per visiting visit, seconds."),
        ("buyers", "int", "Visitors of the zone who bought an item taken from a shelf shopped from the zone."),
        ("conversion", "float", "buyers / visitors (empty for a zone without shelves)."),
    ],
    "shelves": [
        ("shelf", "str", "Shelf id."),
        ("plate", "str", "Plate id."),
        ("visitors", "int", "Visits that took an item from or put one back on the plate."),
        ("reaches", "int", "Items moved at the plate: taken plus put back (reaches that moved nothing are not "
                           "known at the hub)."),
        ("picks", "int", "Items taken."),
        ("putbacks", "int", "Items put back."),
        ("buyers", "int", "Visitors who paid for an item taken from the plate."),
        ("interest_without_purchase", "int", "visitors - buyers: reached for it, did not buy from it."),
    ],
}


@dataclass
class AnalyticsReport:
    """Anonymous analytics of a time range, ready for export."""

    k: int
    start_ts: float
    end_ts: float
    timezone: str
    cell_m: float
    tables: dict[str, list[dict]] = field(default_factory=dict)
    suppression: list[Suppression] = field(default_factory=list)

    @property
    def summary(self) -> dict:
        """The one-row summary table."""
        return self.tables["summary"][0]

    @property
    def notes(self) -> list[str]:
        """One line per table on what k-anonymity suppressed or merged."""
        return [s.note for s in self.suppression]

    def to_json(self) -> dict:
        """Plain JSON-ready dict: every table, the anonymity notes and the columns' meaning."""
        return {"k": self.k, "from": _iso(self.start_ts, self.timezone), "to": _iso(self.end_ts, self.timezone),
                "timezone": self.timezone, "cell_m": self.cell_m,
                "anonymity": {"k": self.k, "notes": self.notes, "tables": [s.to_json() for s in self.suppression]},
                **self.tables}


def _iso(ts: float, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(tz)).isoformat()


def day_range(date_from: dt.date, date_to: dt.date, timezone: str) -> tuple[float, float]:
    """Unix seconds from the start of ``date_from`` to the end of ``date_to`` in ``timezone``."""
    if date_to < date_from:
        raise StoresenseError(f"--to {date_to} is before --from {date_from}")
    tz = ZoneInfo(timezone)
    start = dt.datetime.combine(date_from, dt.time(), tz).timestamp()
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), tz).timestamp()
    return start, end


def _rows(db: Database, sql: str, params: tuple) -> list[tuple]:
    """Query rows with PostgreSQL's ``numeric`` sums (``Decimal``) as int or float, like SQLite's."""
    return [tuple((int(v) if v == v.to_integral_value() else float(v)) if isinstance(v, Decimal) else v for v in r)
            for r in db.query(sql, params)]


def _div(a: float, b: float, digits: int = 3) -> float | None:
    return round(a / b, digits) if b else None


def quantile_from_bins(bins: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile of visit durations from the fine dwell histogram (linear within a bin)."""
    n = sum(bins.values())
    if n == 0:
        return None
    target = q * n
    acc = 0
    for b in sorted(bins):
        c = bins[b]
        if acc + c >= target:
            lo, hi = dwell_bin_edges(b)
            return round(lo + (hi - lo) * (target - acc) / c, 2)
        acc += c
    return round(dwell_bin_edges(max(bins))[1], 2)


def build_report(config: StoreConfig, db: Database, start_ts: float, end_ts: float, k: int | None = None,
                 dwell_bin_s: float = 60.0, dwell_max_s: float = 3600.0) -> AnalyticsReport:
    """The analytics of the visits that began in [``start_ts``, ``end_ts``), k-anonymous.

    Hours with fewer than k visits are merged with the following ones; days, floor cells,
    zones and shelf plates with fewer than k visitors are suppressed; dwell bins
    (``dwell_bin_s`` wide up to ``dwell_max_s``, then one open bin) are merged with neighbours.
    When the whole range has fewer than k visits, every table is empty and the summary says so.
    """
    create_schema(db)
    k = config.hub.analytics.k if k is None else int(k)
    if k < 1:
        raise StoresenseError(f"k must be at least 1, got {k}")
    tz = config.store.timezone
    cell_m = config.hub.analytics.cell_m
    rep = AnalyticsReport(k, start_ts, end_ts, tz, cell_m)
    lo, hi = int(math.floor(start_ts)), int(math.ceil(end_ts))
    where = "WHERE hour_ts >= ? AND hour_ts < ?"
    hours = _rows(db, f"SELECT hour_ts, visits, unclosed, dwell_sum_s, buyers, items, basket_value, queue_visits, "
                     f"queue_sum_s FROM analytics_hours {where} ORDER BY hour_ts", (lo, hi))
    hour_rows = [dict(hour_ts=int(h), visits=int(v), unclosed=int(u), dwell_sum_s=d, buyers=int(b), items=int(i),
                      basket_value=bv, queue_visits=int(qv), queue_sum_s=qs)
                 for h, v, u, d, b, i, bv, qv, qs in hours]
    total = {key: sum(r[key] for r in hour_rows) for key in
             ("visits", "unclosed", "dwell_sum_s", "buyers", "items", "basket_value", "queue_visits", "queue_sum_s")}
    fine = {}
    for b, c in _rows(db, f"SELECT bin, SUM(visits) FROM analytics_dwell {where} GROUP BY bin", (lo, hi)):
        fine[int(b)] = int(c)
    n = total["visits"]
    suppressed_all = n < k
    rep.tables["summary"] = [{
        "from": _iso(start_ts, tz), "to": _iso(end_ts, tz), "k": k,
        "visits": None if suppressed_all else n,
        "unclosed": None if suppressed_all else total["unclosed"],
        "buyers": None if suppressed_all else total["buyers"],
        "conversion": None if suppressed_all else _div(total["buyers"], n, 4),
        "dwell_median_s": None if suppressed_all else quantile_from_bins(fine, 0.5),
        "dwell_p25_s": None if suppressed_all else quantile_from_bins(fine, 0.25),
        "dwell_p75_s": None if suppressed_all else quantile_from_bins(fine, 0.75),
        "dwell_mean_s": None if suppressed_all else _div(total["dwell_sum_s"], n, 2),
        "basket_items_mean": None if suppressed_all else _div(total["items"], total["buyers"], 3),
        "basket_value_mean": None if suppressed_all else _div(total["basket_value"], total["buyers"], 2),
        "queue_mean_s": None if suppressed_all else _div(total["queue_sum_s"], total["queue_visits"], 2),
        "suppressed": suppressed_all,
    }]

    def hour_row(group: list[dict]) -> dict:
        s = {key: sum(r[key] for r in group) for key in group[0] if key != "hour_ts"}
        h = group[0]["hour_ts"]
        return {"hour_start": _iso(h, tz), "hour_start_ts": h, "hours": (group[-1]["hour_ts"] - h) // 3600 + 1,
                "visits": s["visits"], "buyers": s["buyers"], "conversion": _div(s["buyers"], s["visits"], 4),
                "dwell_mean_s": _div(s["dwell_sum_s"], s["visits"], 2), "items": s["items"],
                "basket_value": round(s["basket_value"], 2), "queue_mean_s": _div(s["queue_sum_s"], s["queue_visits"], 2)}

    rep.tables["hourly"], sup = merge_runs(hour_rows, k, "hourly", hour_row)
    rep.suppression.append(sup)

    days: dict[str, list[dict]] = {}
    for r in hour_rows:
        days.setdefault(dt.datetime.fromtimestamp(r["hour_ts"], ZoneInfo(tz)).date().isoformat(), []).append(r)
    day_rows = []
    for day, group in days.items():
        s = {key: sum(r[key] for r in group) for key in group[0] if key != "hour_ts"}
        day_rows.append({"date": day, "visits": s["visits"], "buyers": s["buyers"],
                         "conversion": _div(s["buyers"], s["visits"], 4),
                         "dwell_mean_s": _div(s["dwell_sum_s"], s["visits"], 2), "items": s["items"],
                         "basket_value": round(s["basket_value"], 2)})
    rep.tables["daily"], sup = suppress(day_rows, k, "daily", key="visits")
    rep.suppression.append(sup)

    coarse: dict[int, int] = {}
    last = int(dwell_max_s // dwell_bin_s)
    for b, c in fine.items():
        lo_s, hi_s = dwell_bin_edges(b)
        coarse_ix = min(int(((lo_s + hi_s) / 2) // dwell_bin_s), last)
        coarse[coarse_ix] = coarse.get(coarse_ix, 0) + c
    dwell_rows = [{"from_s": i * dwell_bin_s, "to_s": (i + 1) * dwell_bin_s if i < last else None, "visits": c}
                  for i, c in sorted(coarse.items())]

    def dwell_row(group: list[dict]) -> dict:
        return {"from_s": group[0]["from_s"], "to_s": group[-1]["to_s"], "visits": sum(r["visits"] for r in group)}

    rep.tables["dwell"], sup = merge_runs(dwell_rows, k, "dwell", dwell_row)
    rep.suppression.append(sup)

    cells = [{"cx": int(cx), "cy": int(cy), "x0_m": round(cx * cell_m, 3), "y0_m": round(cy * cell_m, 3),
              "cell_m": cell_m, "seconds": round(sec, 2), "visitors": int(v), "seconds_per_visitor": _div(sec, v, 2)}
             for cx, cy, sec, v in _rows(db, 
                 f"SELECT cx, cy, SUM(seconds), SUM(visitors) FROM analytics_cells {where} GROUP BY cx, cy "
                 f"ORDER BY cy, cx", (lo, hi))]
    rep.tables["heatmap"], sup = suppress(cells, k, "heatmap")
    rep.suppression.append(sup)

    kinds = {z.id: z.kind for z in config.zones}
    zones = [{"zone": z, "kind": kinds.get(z, "?"), "visitors": int(v), "share_of_visits": _div(v, n, 4),
              "dwell_mean_s": _div(d, v, 2), "buyers": int(b),
              "conversion": _div(b, v, 4) if _zone_has_shelves(config, z) else None}
             for z, v, d, b in _rows(db, 
                 f"SELECT zone, SUM(visitors), SUM(dwell_sum_s), SUM(buyers) FROM analytics_zones {where} "
                 f"GROUP BY zone ORDER BY zone", (lo, hi))]
    rep.tables["zones"], sup = suppress(zones, k, "zones")
    rep.suppression.append(sup)

    shelves = [{"shelf": s, "plate": p, "visitors": int(v), "reaches": int(pk + pb), "picks": int(pk),
                "putbacks": int(pb), "buyers": int(b), "interest_without_purchase": int(v - b)}
               for s, p, v, pk, pb, b in _rows(db, 
                   f"SELECT shelf, plate, SUM(visitors), SUM(picks), SUM(putbacks), SUM(buyers) FROM analytics_shelves "
                   f"{where} GROUP BY shelf, plate ORDER BY shelf, plate", (lo, hi))]
    rep.tables["shelves"], sup = suppress(shelves, k, "shelves")
    rep.suppression.append(sup)

    if suppressed_all:
        for name in ("hourly", "daily", "dwell", "heatmap", "zones", "shelves"):
            rep.tables[name] = []
    return rep


def _zone_has_shelves(config: StoreConfig, zone: str) -> bool:
    from .rollup import zone_shelves

    return bool(zone_shelves(config).get(zone))
