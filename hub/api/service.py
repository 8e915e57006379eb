"""The service route: liveness and what the hub holds (no token)."""

from __future__ import annotations

from fastapi import APIRouter

from .context import Ctx

router = APIRouter(tags=["service"])


@router.get("/api/health", summary="Liveness and what the hub holds")
def health(ctx: Ctx) -> dict:
    return {"status": "ok", "store": ctx.config.store.id, "events": ctx.store.count(),
            "database": ctx.store.db.dialect}
