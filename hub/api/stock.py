"""Shelf stock (viewer role, like the live feed): items lying on the wrong plate, a tidy/restock task list.

The fusion's shelf inventory tells the hub (``shelf_event`` messages of kind
``misplaced``) how many items of a product lie on a plate whose planogram does
not hold it, and since when; the list shrinks when they are taken or tidied.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from .context import Ctx, ViewerTerminal
from .views import product_name

router = APIRouter(tags=["stock"])

# Routes carry no docstrings: FastAPI would publish them as the operation's description.


class MisplacedOut(BaseModel):
    """Items of a product lying on a plate whose planogram does not hold it."""

    shelf: str = Field(description="Shelf id.")
    plate: str = Field(description="Plate id.")
    sku: str = Field(description="The misplaced product.")
    name: str = Field(description="Its name.")
    count: int = Field(description="Items of it believed on the plate.")
    since_ts: float | None = Field(description="Since when they lie there.")
    belongs_on: list[str] = Field(description="Plates whose planogram holds the product (where to take it back).")


@router.get("/api/stock/misplaced", response_model=list[MisplacedOut],
            summary="Misplaced stock: which plate, which product, since when (a tidy/restock task list)")
def misplaced(ctx: Ctx, _viewer: ViewerTerminal) -> list[MisplacedOut]:
    out = []
    for shelf, plate, sku, count, since, _ in ctx.store.misplaced_stock():
        name = product_name(ctx, sku)
        home = [p.id for s in ctx.config.shelves for p in s.plates if sku in p.skus]
        out.append(MisplacedOut(shelf=shelf, plate=plate, sku=sku, name=name, count=count, since_ts=since,
                                belongs_on=home))
    return out
