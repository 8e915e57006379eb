"""``storesense analytics | analytics-eval | simulate-day``: store analytics export, checked on simulated days.

The work lives in hub/analytics (rollup, k-anonymity, report, export) and datasets/sim/day.py
(the simulated day and its truth); docs/analytics.md documents the tables.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import StoresenseError
from .common import CONFIG_OPTION, console, load_config


def _date(text: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise StoresenseError(f"{option} {text!r}: expected a date YYYY-MM-DD") from None


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
        except ValueError:
            raise StoresenseError(f"--seeds {text!r}: give seeds like 1000-1004 or 1000,1007") from None
    if not out:
        raise StoresenseError("--seeds: no seed given")
    return out


def analytics(
    db: str = typer.Option(..., "--db", help="The hub's database: SQLite file or postgresql://... URL."),
    date_from: str = typer.Option(..., "--from", help="First day, YYYY-MM-DD in the store's time zone."),
    date_to: str = typer.Option(..., "--to", help="Last day (inclusive), YYYY-MM-DD."),
    out: Path = typer.Option(Path("analytics"), "--out", help="Folder for the CSV, Parquet and PNG files."),
    k: Optional[int] = typer.Option(None, "--k", min=1, help="k-anonymity threshold (default: the config's "
                                                              "hub.analytics.k, 5)."),
    config: Optional[Path] = CONFIG_OPTION,
    charts: bool = typer.Option(True, "--charts/--no-charts", help="Draw the PNG charts."),
) -> None:
    """Export the store's anonymous analytics of a date range: CSV, Parquet and PNG charts."""
    from ..hub.analytics import build_report, day_range
    from ..hub.analytics.export import write_charts, write_tables
    from ..hub.db import open_database

    cfg = load_config(config)
    start, end = day_range(_date(date_from, "--from"), _date(date_to, "--to"), cfg.store.timezone)
    if not db.startswith(("postgresql://", "postgres://", "sqlite:///")) and not Path(db).is_file():
        raise StoresenseError(f"--db {db}: no such database file")
    database = open_database(db)
    try:
        report = build_report(cfg, database, start, end, k=k)
    finally:
        database.close()
    paths = write_tables(report, out)
    if charts:
        paths += write_charts(report, cfg, out)
    s = report.summary
    if s["suppressed"]:
        console.print(f"[yellow]fewer than k={report.k} visits from {date_from} to {date_to}: every figure "
                      f"withheld[/]")
    else:
        console.print(f"{s['visits']} visits from {date_from} to {date_to}; median visit {s['dwell_median_s']} s; "
                      f"conversion {s['conversion']}")
    for note in report.notes:
        console.print(f"  anonymity: {note}", highlight=False)
    console.print(f"wrote {len(paths)} files to {out}", highlight=False)


def analytics_eval(
    seeds: str = typer.Option("1000-1004", help="Day seeds: 1000-1004 or 1000,1003 (tune on < 1000, report "
                                                ">= 1000)."),
    visitors: float = typer.Option(400.0, min=1.0, help="Expected visitors per day."),
    open_hour: float = typer.Option(8.0, help="Opening hour (store time)."),
    close_hour: float = typer.Option(20.0, help="Closing hour (store time)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the comparison here as JSON."),
    charts: Optional[Path] = typer.Option(None, help="Draw the first seed's charts into this folder."),
    through_fusion: bool = typer.Option(False, "--through-fusion", help="Instead of a modelled day, run "
                                        "--shoppers shoppers of the simulator --level through rendered cameras, "
                                        "BLE and load cells and the real fusion node (minutes, not a day)."),
    level: str = typer.Option("quiet", help="Simulator level with --through-fusion."),
    shoppers: int = typer.Option(60, min=1, max=500, help="Shoppers with --through-fusion."),
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Simulate shop days and compare the hub's analytics with the simulator's truth."""
    from ..datasets.sim.day import TOLERANCES, compare_day, feed_hub, simulate_day
    from ..datasets.sim.day import through_fusion as run_through_fusion
    from ..hub.analytics import Rollup, build_report
    from ..hub.analytics.export import write_charts
    from ..hub.store import HubStore

    cfg = load_config(config)
    results = []
    table = Table(title="store analytics vs simulator truth")
    for col in ("seed", "visits truth/hub", "footfall err", "dwell median truth/hub s", "dwell err",
                "worst zone conv. err (pts)", "ok"):
        table.add_column(col)
    for i, seed in enumerate(_seeds(seeds)):
        if through_fusion:
            day = run_through_fusion(cfg, seed, level=level, shoppers=shoppers)
        else:
            day = simulate_day(cfg, seed, visitors=visitors, open_hour=open_hour, close_hour=close_hour)
        store = HubStore(":memory:")
        try:
            feed_hub(day, store, Rollup(cfg, store.db, wall_guard_s=0))
            report = build_report(cfg, store.db, day.open_ts - 3600, day.close_ts + 3600, k=1)
            res = compare_day(cfg, day, report)
            if charts is not None and i == 0:
                write_charts(build_report(cfg, store.db, day.open_ts - 3600, day.close_ts + 3600), cfg, charts,
                             prefix="analytics-")
        finally:
            store.close()
        results.append(res)
        f, d, z = res["footfall"], res["dwell_median_s"], res["zone_conversion"]
        ok = f["ok"] and d["ok"] and z["ok"]
        table.add_row(str(seed), f"{f['truth']}/{f['hub']}", f"{100 * f['error_rel']:+.2f} %",
                      f"{d['truth']}/{d['hub']}", f"{100 * d['error_rel']:+.2f} %", f"{z['worst_error_points']:.2f}",
                      "[green]yes[/]" if ok else "[red]no[/]")
    console.print(table)
    console.print(f"tolerances: footfall {100 * TOLERANCES['footfall_rel']:g} %, dwell median "
                  f"{100 * TOLERANCES['dwell_median_rel']:g} %, zone conversion {TOLERANCES['conversion_points']:g} "
                  f"points", highlight=False)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        mode = ({"mode": "through-fusion", "level": level, "shoppers": shoppers} if through_fusion
                else {"mode": "modelled-day", "visitors": visitors, "open_hour": open_hour, "close_hour": close_hour})
        json_out.write_text(json.dumps({"seeds": _seeds(seeds), **mode, "tolerances": TOLERANCES,
                                        "results": results}, indent=1) + "\n")
        console.print(f"wrote {json_out}", highlight=False)


def simulate_day_cmd(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Recording of the fusion-to-hub messages "
                                                                  "(JSON lines)."),
    mqtt: Optional[str] = typer.Option(None, help="Publish the day to this broker (a running hub ingests it)."),
    seed: int = typer.Option(1, help="Day seed."),
    visitors: float = typer.Option(400.0, min=1.0, help="Expected visitors."),
    date: str = typer.Option("2026-03-02", help="The day, YYYY-MM-DD (store time)."),
    open_hour: float = typer.Option(8.0, help="Opening hour."),
    close_hour: float = typer.Option(20.0, help="Closing hour."),
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Simulate a shop day: what the fusion node publishes to the hub, recorded or sent to a broker."""
    from ..datasets.sim.day import simulate_day

    if out is None and mqtt is None:
        raise StoresenseError("nowhere to send the day: give --out FILE and/or --mqtt URL")
    cfg = load_config(config)
    day = simulate_day(cfg, seed, date=date, visitors=visitors, open_hour=open_hour, close_hour=close_hour)
    if out is not None:
        from ..transport.recording import record

        n = record(day.messages, out, cfg.store.id)
        console.print(f"wrote {n} messages ({len(day.shoppers)} shoppers) to {out}", highlight=False)
    if mqtt is not None:
        from ..transport import MqttPublisher

        pub = MqttPublisher(mqtt, store=cfg.store.id, node="fusion", kind="fusion",
                            client_id=f"storesense-day-{seed}").connect()
        try:
            for msg in day.messages:
                pub.publish(msg)
            if not pub.flush(60):
                raise StoresenseError(f"the broker at {mqtt} did not take every message within 60 s")
        finally:
            pub.close()
        console.print(f"published {len(day.messages)} messages to {mqtt}", highlight=False)
