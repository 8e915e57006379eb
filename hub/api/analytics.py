"""Store analytics (viewer role): the anonymous aggregates of docs/analytics.md as JSON, and their page.

``GET /api/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD[&k=K]`` answers every table of the range (the
same :func:`~storesense.hub.analytics.build_report` as the CLI export) with the k-anonymity notes;
``GET /api/analytics/{table}`` one table. The page (``/analytics``) is open; its data needs a
terminal token with the ``viewer`` role, as for the live feed.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse

from ...errors import StoresenseError
from ..analytics import COLUMNS, build_report, day_range
from .context import Ctx, ViewerTerminal

router = APIRouter()


@router.get("/analytics", response_class=HTMLResponse, include_in_schema=False)
def analytics_page() -> str:
    return resources.files("storesense.hub").joinpath("static/analytics.html").read_text(encoding="utf-8")


def _report(ctx, date_from: str | None, date_to: str | None, k: int | None):
    tz = ctx.config.store.timezone
    try:
        first = dt.date.fromisoformat(date_from) if date_from else None
        last = dt.date.fromisoformat(date_to) if date_to else None
    except ValueError:
        raise HTTPException(422, "from and to must be dates YYYY-MM-DD") from None
    if first is None and last is None:
        from zoneinfo import ZoneInfo

        first = last = dt.datetime.now(ZoneInfo(tz)).date()
    first = first or last
    last = last or first
    try:
        start, end = day_range(first, last, tz)  # type: ignore[arg-type]
        return build_report(ctx.config, ctx.store.db, start, end, k=k)
    except StoresenseError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/api/analytics", tags=["analytics"],
            summary="Anonymous store analytics of a date range: every table, with the k-anonymity notes")
def analytics(ctx: Ctx, _viewer: ViewerTerminal, date_from: str | None = Query(None, alias="from"),
              date_to: str | None = Query(None, alias="to"), k: int | None = Query(None, ge=1)) -> dict:
    return _report(ctx, date_from, date_to, k).to_json()


@router.get("/api/analytics/{table}", tags=["analytics"], summary="One analytics table of a date range")
def analytics_table(table: str, ctx: Ctx, _viewer: ViewerTerminal, date_from: str | None = Query(None, alias="from"),
                    date_to: str | None = Query(None, alias="to"), k: int | None = Query(None, ge=1)) -> dict:
    if table not in COLUMNS:
        raise HTTPException(404, f"no analytics table {table!r}; tables: {', '.join(COLUMNS)}")
    rep = _report(ctx, date_from, date_to, k)
    return {"table": table, "k": rep.k, "rows": rep.tables[table],
            "anonymity": [s.to_json() for s in rep.suppression if s.table == table]}
