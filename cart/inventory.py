"""The shelf inventory: what the store believes lies on each plate.

:class:`ShelfInventory` starts from the planogram (each plate's ``stock`` of
each product the plate holds) and follows every decided load change: a pick
takes items of a product off a plate, a put-back lays them on it. Items of a
product the plate's planogram does not hold are *misplaced*: they are counted
with the time they arrived, so the pick decision knows they are there (a later
pick of that weight from that plate is that item) and the hub can list them as
a tidy/restock task.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import StoreConfig

PlateKey = tuple[str, str]  # (shelf id, plate id)


@dataclass(frozen=True)
class Misplaced:
    """Items of a product lying on a plate whose planogram does not hold it."""

    shelf: str
    plate: str
    sku: str
    count: int  # 0: none left there (taken or tidied)
    since_ts: float | None


class ShelfInventory:
    """Items per product on every plate, misplaced ones included (see the module docstring)."""

    def __init__(self, config: StoreConfig):
        self.items: dict[PlateKey, dict[str, int]] = {}
        self.planned: dict[PlateKey, tuple[str, ...]] = {}
        self.since: dict[tuple[str, str, str], float] = {}  # (shelf, plate, sku) -> misplaced since
        self.changed: list[Misplaced] = []  # misplaced counts changed since the caller last drained them
        for shelf in config.shelves:
            for plate in shelf.plates:
                key = (shelf.id, plate.id)
                self.planned[key] = tuple(plate.skus)
                self.items[key] = {sku: plate.stock for sku in plate.skus}

    def count(self, shelf: str, plate: str, sku: str) -> int:
        """Items of ``sku`` believed on the plate."""
        return self.items.get((shelf, plate), {}).get(sku, 0)

    def misplaced(self, shelf: str, plate: str) -> dict[str, int]:
        """SKU -> items on the plate that its planogram does not hold (only those with items)."""
        key = (shelf, plate)
        planned = self.planned.get(key, ())
        return {sku: n for sku, n in self.items.get(key, {}).items() if n > 0 and sku not in planned}

    def all_misplaced(self) -> list[Misplaced]:
        """Every plate's misplaced items now, by shelf, plate and SKU."""
        return [Misplaced(s, p, sku, n, self.since.get((s, p, sku)))
                for (s, p) in sorted(self.items) for sku, n in sorted(self.misplaced(s, p).items())]

    def take(self, shelf: str, plate: str, sku: str, quantity: int, ts: float) -> None:
        """Record ``quantity`` items of ``sku`` taken off the plate at ``ts`` (negative: laid on it)."""
        key = (shelf, plate)
        if key not in self.items:
            return
        stock = self.items[key]
        before = stock.get(sku, 0)
        after = max(0, before - quantity)  # a planned product's count is only a belief: never below zero
        stock[sku] = after
        if sku in self.planned[key] or before == after:
            return
        if before == 0:
            self.since[(shelf, plate, sku)] = ts
        since = self.since.get((shelf, plate, sku))
        if after == 0:
            self.since.pop((shelf, plate, sku), None)
        self.changed.append(Misplaced(shelf, plate, sku, after, since))

    def drain(self) -> list[Misplaced]:
        """The misplaced counts that changed since the last call, oldest first."""
        out, self.changed = self.changed, []
        return out
