"""The virtual cart: an event-sourced ledger per shopper session.

A :class:`CartLedger` is the list of :class:`~storesense.contracts.CartChange`
applied to one session, keyed by the id of the evidence that produced each
change, so applying the same change twice does nothing. The current lines and
the receipt are derived from the changes, never stored separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import StoreConfig
from ..contracts import CartChange, CartLine, ReceiptLine


def money(value: float) -> float:
    """Round an amount to cents (half away from zero)."""
    return float(f"{value + (1e-9 if value >= 0 else -1e-9):.2f}")


@dataclass
class CartLedger:
    """All changes to one shopper's cart, in the order they were decided."""

    shopper: str
    catalog: StoreConfig
    opened_ts: float
    changes: dict[str, CartChange] = field(default_factory=dict)  # change key -> change
    decided_ts: dict[str, float] = field(default_factory=dict)  # change key -> when it was applied
    closed_ts: float | None = None

    @property
    def version(self) -> int:
        """Number of changes applied."""
        return len(self.changes)

    def apply(self, key: str, change: CartChange, ts: float = 0.0) -> bool:
        """Apply ``change`` under ``key`` (the deciding evidence's id) at time ``ts``.

        Returns False, changing nothing, when that key was applied before or the
        cart is closed.
        """
        if key in self.changes or self.closed_ts is not None:
            return False
        self.changes[key] = change
        self.decided_ts[key] = ts
        return True

    def quantities(self) -> dict[str, int]:
        """SKU -> items in the cart (never negative; a put-back of an item not in
        the cart is ignored for the receipt but kept in the ledger)."""
        qty: dict[str, int] = {}
        for c in self.changes.values():
            qty[c.sku] = max(0, qty.get(c.sku, 0) + c.quantity)
        return {k: v for k, v in qty.items() if v > 0}

    def lines(self) -> list[CartLine]:
        """Current cart lines, sorted by SKU, with the weakest confidence behind each."""
        out = []
        for sku, qty in sorted(self.quantities().items()):
            product = self.catalog.product(sku)
            behind = [c for c in self.changes.values() if c.sku == sku]
            out.append(
                CartLine(sku=sku, name=product.name, quantity=qty, unit_price=product.price,
                         confidence=min(c.confidence for c in behind),
                         needs_review=any(c.needs_review for c in behind))
            )
        return out

    def total(self) -> float:
        """Cart total in the store's currency."""
        return money(sum(line.quantity * line.unit_price for line in self.lines()))

    def receipt_lines(self) -> list[ReceiptLine]:
        """The receipt's lines for the current content."""
        return [
            ReceiptLine(sku=line.sku, name=line.name, quantity=line.quantity, unit_price=line.unit_price,
                        amount=money(line.quantity * line.unit_price))
            for line in self.lines()
        ]
