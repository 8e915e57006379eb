"""The hub's view of a cart: the fusion's changes, review decisions and terminal corrections.

A cart is never stored as arithmetic: :func:`build_cart` replays a session's
stored cart changes into a :class:`~storesense.cart.ledger.CartLedger` (the same
ledger the fusion node uses), leaving out changes rejected in review, marking
accepted ones as confirmed, and adding terminal corrections as changes of
their own. Lines, totals and the receipt therefore follow every decision.

A paid receipt never changes. What the shopper takes after paying (a pick the
hub hears of after the settlement) is a *follow-up*: the difference, per
product, between the cart now and everything paid so far (the settlement and
earlier follow-up charges). :attr:`HubCart.followup` lists it; the terminal
settles it as a receipt of its own (``<receipt id>-2``, ``-3``, ...). A put-back
after paying (a negative follow-up line) is never refunded automatically: it
waits for staff.

When the hub joined after a session started (its first subscription missed the
session's first cart events), the fusion's retained ``cart_state`` seeds the
ledger and only later changes are replayed on top; a rejected change already
inside that state is taken out again with a compensating change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..cart.ledger import CartLedger, money
from ..config import StoreConfig
from ..contracts import CartChange, Receipt, ReceiptLine, Stamper
from .store import Correction, HubStore, Settlement, StoredChange

#: confidence given to a change a person confirmed (review accepted, terminal correction)
CONFIRMED = 1.0


@dataclass(frozen=True)
class HubLine:
    """One line of a cart as a checkout terminal sees it."""

    sku: str
    name: str
    quantity: int
    unit_price: float
    amount: float
    confidence: float
    needs_review: bool
    pending_review: tuple[str, ...] = ()  # event ids of the changes awaiting a decision
    corrected: bool = False


@dataclass
class HubCart:
    """A session's cart: lines with confidence and review state, and its status."""

    shopper: str
    status: str  # open | closed | settled
    lines: list[HubLine]
    total: float
    currency: str
    changes: list[StoredChange]
    corrections: list[Correction]
    opened_ts: float | None
    closed_ts: float | None
    history_complete: bool = True
    unknown_skus: list[str] = field(default_factory=list)
    ledger: CartLedger | None = None
    paid: list[Settlement] = field(default_factory=list)  # the settlement, then follow-up charges
    followup: list[HubLine] = field(default_factory=list)  # taken (+) or put back (-) since the last payment

    @property
    def paid_total(self) -> float:
        """What was paid for this session so far."""
        return money(sum(p.receipt.total for p in self.paid))

    @property
    def followup_total(self) -> float:
        """The amount of the follow-up lines (negative when more was put back than taken)."""
        return money(sum(l.amount for l in self.followup))

    @property
    def pending_review(self) -> list[str]:
        """Event ids of changes that still await review."""
        return [c.event_id for c in self.changes if c.review == "pending"]

    def quantity(self, sku: str) -> int:
        """Items of ``sku`` currently in the cart."""
        return next((line.quantity for line in self.lines if line.sku == sku), 0)


def build_cart(config: StoreConfig, store: HubStore, shopper: str) -> HubCart | None:
    """The hub's current view of ``shopper``'s cart, or None for an unknown session."""
    session = store.session(shopper)
    state = store.cart(shopper)
    changes = store.changes(shopper)
    if session is None and state is None and not changes:
        return None
    corrections = store.corrections(shopper)
    known_skus = {p.sku for p in config.products}
    opened = session.opened_ts if session and session.opened_ts is not None else (state.ts if state else 0.0)
    ledger = CartLedger(shopper, config, opened_ts=opened)
    unknown: set[str] = set()

    def apply(key: str, change: CartChange) -> None:
        if change.sku not in known_skus:
            unknown.add(change.sku)
            return
        ledger.apply(key, change)

    versions = {c.cart_version for c in changes}
    complete = state is None or all(v in versions for v in range(1, state.cart_version + 1))
    covered_version = 0 if complete else state.cart_version  # type: ignore[union-attr]
    corrected_skus = {c.sku for c in corrections}
    if not complete:
        for line in state.lines:  # type: ignore[union-attr]
            covered = [c for c in changes if c.change.sku == line.sku and c.cart_version <= covered_version]
            flagged = [c for c in covered if c.review != "none"]
            settled_flags = bool(flagged) and all(c.review in ("accepted", "rejected") for c in flagged)
            needs_review = line.needs_review and not settled_flags and line.sku not in corrected_skus
            apply(f"state:{line.sku}", CartChange(
                sku=line.sku, quantity=line.quantity, confidence=line.confidence, needs_review=needs_review,
                reason="cart state published before the hub's history starts"))
    for c in changes:
        covered = c.cart_version <= covered_version
        if c.review == "rejected":
            if covered:
                apply(f"review:{c.event_id}", CartChange(
                    sku=c.change.sku, quantity=-c.change.quantity, confidence=CONFIRMED,
                    reason=f"change {c.event_id} rejected in review"))
            continue
        if covered:
            continue
        change = c.change
        if c.review == "accepted":
            change = change.model_copy(update={"needs_review": False, "confidence": CONFIRMED})
        apply(c.event_id, change)
    for corr in corrections:
        apply(f"correction:{corr.id}", CartChange(
            sku=corr.sku, quantity=corr.quantity_after - corr.quantity_before, confidence=CONFIRMED,
            reason=f"corrected at {corr.terminal}: {corr.reason}"))

    pending_by_sku: dict[str, list[str]] = {}
    for c in changes:
        if c.review == "pending":
            pending_by_sku.setdefault(c.change.sku, []).append(c.event_id)
    lines = [
        HubLine(sku=l.sku, name=l.name, quantity=l.quantity, unit_price=l.unit_price,
                amount=money(l.quantity * l.unit_price), confidence=l.confidence, needs_review=l.needs_review,
                pending_review=tuple(pending_by_sku.get(l.sku, ())), corrected=l.sku in corrected_skus)
        for l in ledger.lines()
    ]
    status = session.status if session else ("closed" if state and state.status == "closed" else "open")
    settlement = store.settlement(shopper)
    paid = [settlement, *store.followups(shopper)] if settlement else []
    return HubCart(
        shopper=shopper, status=status, lines=lines, total=ledger.total(), currency=config.store.currency,
        changes=changes, corrections=corrections, opened_ts=session.opened_ts if session else None,
        closed_ts=session.closed_ts if session else None, history_complete=complete,
        unknown_skus=sorted(unknown), ledger=ledger, paid=paid, followup=_followup(config, lines, paid),
    )


def _followup(config: StoreConfig, lines: list[HubLine], paid: list[Settlement]) -> list[HubLine]:
    """Per product, what the cart holds beyond (or short of) everything paid; empty when unpaid or even."""
    if not paid:
        return []
    paid_qty: dict[str, int] = {}
    for p in paid:
        for rl in p.receipt.lines:
            paid_qty[rl.sku] = paid_qty.get(rl.sku, 0) + rl.quantity
    now = {l.sku: l for l in lines}
    out = []
    for sku in sorted(set(paid_qty) | set(now)):
        diff = (now[sku].quantity if sku in now else 0) - paid_qty.get(sku, 0)
        if diff == 0:
            continue
        line = now.get(sku)
        try:
            product = config.product(sku)
            name, price = product.name, product.price
        except KeyError:
            name, price = sku, line.unit_price if line else 0.0
        out.append(HubLine(sku=sku, name=name, quantity=diff, unit_price=price, amount=money(diff * price),
                           confidence=line.confidence if line else CONFIRMED,
                           needs_review=line.needs_review if line else False,
                           pending_review=line.pending_review if line else (), corrected=line.corrected if line else False))
    return out


def followup_receipt(config: StoreConfig, cart: HubCart, now: float) -> Receipt:
    """The receipt of a follow-up charge for ``cart``'s follow-up lines: ``<first receipt id>-<part>``."""
    first = cart.paid[0].receipt
    lines = tuple(ReceiptLine(sku=l.sku, name=l.name, quantity=l.quantity, unit_price=l.unit_price, amount=l.amount)
                  for l in cart.followup)
    return Stamper("hub").make(  # type: ignore[return-value]
        Receipt, now, shopper=cart.shopper, receipt_id=f"{first.receipt_id}-{len(cart.paid) + 1}", lines=lines,
        total=cart.followup_total, currency=config.store.currency, opened_ts=cart.paid[-1].settled_ts, closed_ts=now,
        needs_review=False,
    )


def final_receipt(config: StoreConfig, store: HubStore, cart: HubCart, now: float) -> Receipt:
    """The receipt a settlement records for ``cart`` (keeps the fusion's receipt id when there is one)."""
    fusion = store.receipt_for(cart.shopper)
    receipt_id = fusion.receipt_id if fusion else "r-" + uuid.uuid5(uuid.NAMESPACE_OID, f"hub/{cart.shopper}").hex[:12]
    lines = cart.ledger.receipt_lines() if cart.ledger else []
    opened = cart.opened_ts if cart.opened_ts is not None else (fusion.opened_ts if fusion else now)
    closed = cart.closed_ts if cart.closed_ts is not None else now
    return Stamper("hub").make(  # type: ignore[return-value]
        Receipt, now, shopper=cart.shopper, receipt_id=receipt_id, lines=tuple(lines), total=cart.total,
        currency=config.store.currency, opened_ts=opened, closed_ts=closed, needs_review=False,
    )


def receipt_text(config: StoreConfig, settlement: Settlement, corrections: list[Correction] = (),
                 width: int = 42) -> str:
    """A printable plain-text receipt for a settled checkout."""
    r = settlement.receipt
    tz = _zone(config.store.timezone)
    when = datetime.fromtimestamp(settlement.settled_ts, tz).strftime("%Y-%m-%d %H:%M")
    rule = "-" * width
    out = [config.store.name.center(width).rstrip(), rule, f"Receipt {r.receipt_id}", f"Date    {when}",
           f"Session {r.shopper}", rule]
    for line in r.lines:
        name = line.name if len(line.name) <= width - 16 else line.name[: width - 19] + "..."
        left = f"{line.quantity:>3} x {name}"
        out.append(f"{left:<{width - 10}}{line.amount:>10.2f}")
        if line.quantity > 1:
            out.append(f"{'':6}@ {line.unit_price:.2f}")
    if not r.lines:
        out.append("(no items)")
    out += [rule, f"{'TOTAL ' + r.currency:<{width - 10}}{r.total:>10.2f}", rule,
            f"Paid    {settlement.provider} {settlement.payment_ref}", f"Till    {settlement.terminal}"]
    for corr in corrections:
        out.append(f"Corrected {corr.sku}: {corr.quantity_before} -> {corr.quantity_after} ({corr.reason})")
    return "\n".join(out) + "\n"


def _zone(name: str):
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - an unknown zone or no tz database: print UTC
        return timezone.utc
