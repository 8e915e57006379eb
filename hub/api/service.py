"""The service route: liveness and what the hub holds (no token)."""

from __future__ import annotations

from fastapi import APIRouter

from .context import Ctx

router = APIRouter(tags=["service"])


#: ingest lag (seconds) past which the hub reports itself degraded
DEGRADED_LAG_S = 30.0
#: a database error this recent (seconds) makes the hub report itself degraded
DEGRADED_ERROR_S = 60.0


@router.get("/api/health", summary="Liveness, ingest lag, the last store error and what the hub holds")
def health(ctx: Ctx) -> dict:
    ingest = ctx.ingest_status() if ctx.ingest_status else None
    degraded = ingest is not None and (
        not ingest["running"] or ingest["lag_s"] > DEGRADED_LAG_S
        or (ingest["last_store_error_age_s"] is not None and ingest["last_store_error_age_s"] < DEGRADED_ERROR_S))
    return {"status": "degraded" if degraded else "ok", "store": ctx.config.store.id, "events": ctx.store.count(),
            "database": ctx.store.db.dialect, "ingest": ingest}
