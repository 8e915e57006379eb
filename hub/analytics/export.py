"""Writing an :class:`~.report.AnalyticsReport`: CSV and Parquet tables, PNG charts, the anonymity note.

:func:`write_tables` writes one ``<table>.csv`` and one ``<table>.parquet`` per table of
:data:`~.report.COLUMNS` (the Parquet schema is typed from it, and its metadata carries k and
what was suppressed), plus ``anonymity.json``. :func:`write_charts` draws ``heatmap.png``
(time per floor cell over the floor plan), ``footfall.png`` (visits per hour) and ``funnel.png``
(per zone: visitors, then buyers).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ...config import StoreConfig
from ...errors import StoresenseError
from .report import COLUMNS, AnalyticsReport

_ARROW_TYPES = {"str": "string", "int": "int64", "float": "float64", "bool": "bool_"}


def write_tables(report: AnalyticsReport, out: Path, parquet: bool = True) -> list[Path]:
    """Write every table as CSV (and Parquet) into ``out``, and ``anonymity.json``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, cols in COLUMNS.items():
        rows = report.tables.get(name, [])
        path = out / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow([c for c, _, _ in cols])
            for r in rows:
                w.writerow(["" if r.get(c) is None else r.get(c) for c, _, _ in cols])
        written.append(path)
    if parquet:
        written += _write_parquet(report, out)
    note = out / "anonymity.json"
    note.write_text(json.dumps(report.to_json()["anonymity"], indent=1) + "\n", encoding="utf-8")
    written.append(note)
    return written


def _write_parquet(report: AnalyticsReport, out: Path) -> list[Path]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # a declared dependency: only a broken install gets here
        raise StoresenseError("writing Parquet needs pyarrow: pip install pyarrow (or --no-parquet)") from None
    meta = {b"storesense.k": str(report.k).encode(),
            b"storesense.anonymity": json.dumps(report.notes).encode(),
            b"storesense.from": str(report.to_json()["from"]).encode(),
            b"storesense.to": str(report.to_json()["to"]).encode()}
    written = []
    for name, cols in COLUMNS.items():
        rows = report.tables.get(name, [])
        schema = pa.schema([pa.field(c, getattr(pa, _ARROW_TYPES[t])(), nullable=True, metadata={"doc": d})
                            for c, t, d in cols], metadata=meta)
        table = pa.Table.from_pylist([{c: r.get(c) for c, _, _ in cols} for r in rows], schema=schema)
        path = out / f"{name}.parquet"
        pq.write_table(table, path)
        written.append(path)
    return written


def write_charts(report: AnalyticsReport, config: StoreConfig, out: Path, prefix: str = "") -> list[Path]:
    """Draw the heatmap, hourly footfall and zone funnel PNGs into ``out``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon as Patch
    from matplotlib.patches import Rectangle

    out.mkdir(parents=True, exist_ok=True)
    k = report.k
    span = f"{report.to_json()['from'][:16]} to {report.to_json()['to'][:16]}"
    paths = []

    # heatmap over the floor plan
    fig, ax = plt.subplots(figsize=(8, 6))
    cells = report.tables["heatmap"]
    vmax = max((c["seconds"] for c in cells), default=1.0)
    cmap = plt.get_cmap("inferno_r")
    for c in cells:
        ax.add_patch(Rectangle((c["x0_m"], c["y0_m"]), c["cell_m"], c["cell_m"], color=cmap(c["seconds"] / vmax),
                               linewidth=0))
    ax.add_patch(Patch(config.floor.outline, closed=True, fill=False, edgecolor="black", linewidth=1.5))
    for s in config.shelves:
        ax.add_patch(Patch(s.polygon, closed=True, facecolor="#9ca3af", edgecolor="#374151", alpha=0.85))
        cx = sum(p[0] for p in s.polygon) / len(s.polygon)
        cy = sum(p[1] for p in s.polygon) / len(s.polygon)
        ax.text(cx, cy, s.id, ha="center", va="center", fontsize=9)
    for o in config.floor.obstacles:
        ax.add_patch(Patch(o.polygon, closed=True, facecolor="#d1d5db", edgecolor="#6b7280"))
    for z in config.zones:
        if z.kind != "store":
            ax.add_patch(Patch(z.polygon, closed=True, fill=False, edgecolor="#2563eb", linestyle="--", linewidth=1))
    xs = [p[0] for p in config.floor.outline]
    ys = [p[1] for p in config.floor.outline]
    ax.set_xlim(min(xs) - 0.3, max(xs) + 0.3)
    ax.set_ylim(min(ys) - 0.3, max(ys) + 0.3)
    ax.set_aspect("equal")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, vmax / 60.0))
    fig.colorbar(sm, ax=ax, label="shopper-minutes in the cell", shrink=0.8)
    ax.set_title(f"Time spent per {report.cell_m:g} m cell, {span}\n(cells with fewer than {k} visitors not shown)",
                 fontsize=10)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    paths.append(_save(fig, out / f"{prefix}heatmap.png"))

    # hourly footfall
    fig, ax = plt.subplots(figsize=(8, 4))
    hours = report.tables["hourly"]
    labels = [h["hour_start"][11:16] + (f"+{h['hours'] - 1}h" if h["hours"] > 1 else "") for h in hours]
    ax.bar(range(len(hours)), [h["visits"] for h in hours], color="#2563eb", label="visits")
    ax.bar(range(len(hours)), [h["buyers"] for h in hours], color="#93c5fd", width=0.5, label="bought something")
    ax.set_xticks(range(len(hours)), labels, rotation=45, fontsize=8)
    ax.set_ylabel("visits that began in the hour")
    ax.set_title(f"Footfall per hour, {span} (hours under k={k} merged)", fontsize=10)
    ax.legend()
    paths.append(_save(fig, out / f"{prefix}footfall.png"))

    # zone funnel
    fig, ax = plt.subplots(figsize=(8, 4))
    zones = [z for z in report.tables["zones"] if z["kind"] not in ("entry", "exit")]
    total = report.summary["visits"] or 0
    names = ["all visits"] + [z["zone"] for z in zones]
    visitors = [total] + [z["visitors"] for z in zones]
    buyers = [report.summary["buyers"] or 0] + [z["buyers"] for z in zones]
    y = list(range(len(names)))[::-1]
    ax.barh(y, visitors, color="#93c5fd", label="visited")
    ax.barh(y, buyers, color="#16a34a", height=0.5, label="bought from its shelves")
    for yy, v, b in zip(y, visitors, buyers):
        ax.text(v, yy, f" {v} / {b} ({100 * b / v:.0f} %)" if v else "", va="center", fontsize=8)
    ax.set_yticks(y, names)
    ax.set_xlabel("visits")
    ax.set_title(f"Zone funnel, {span} (zones under k={k} suppressed)", fontsize=10)
    ax.legend(loc="lower right")
    paths.append(_save(fig, out / f"{prefix}funnel.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
