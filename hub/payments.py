"""Payment behind one small interface, with a local provider for tests and demos.

A :class:`PaymentProvider` charges an amount for a receipt. Charges are
idempotent on the receipt id: asking again for the same receipt returns the
first result instead of charging twice, so a terminal that retries after a
timeout cannot double-charge. A real acquirer plugs in by implementing
:meth:`PaymentProvider.charge`.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PaymentResult:
    """What a provider answered: approved or not, its reference and a message for the terminal."""

    approved: bool
    reference: str
    message: str = ""


class PaymentProvider(Protocol):
    """Charges money for a receipt."""

    name: str

    def charge(self, receipt_id: str, amount: float, currency: str, method: str) -> PaymentResult:
        """Charge ``amount`` in ``currency`` for ``receipt_id`` paid by ``method`` (e.g. ``card``)."""
        ...


class LocalPaymentProvider:
    """An in-process provider: approves up to ``limit`` per charge, declines the method ``decline``.

    It keeps every charge in memory (:attr:`charges`), which is what tests and
    the demo need; it moves no money.
    """

    name = "local"

    def __init__(self, limit: float = 1000.0):
        self.limit = limit
        self.charges: dict[str, tuple[float, str, PaymentResult]] = {}
        self._lock = threading.Lock()

    def charge(self, receipt_id: str, amount: float, currency: str, method: str) -> PaymentResult:
        """See :meth:`PaymentProvider.charge`."""
        with self._lock:
            if receipt_id in self.charges:
                return self.charges[receipt_id][2]
            if amount < 0:
                result = PaymentResult(False, "", f"negative amount {amount:.2f}")
            elif method == "decline":
                result = PaymentResult(False, "", "declined by the local provider (method 'decline')")
            elif amount > self.limit:
                result = PaymentResult(False, "", f"{amount:.2f} {currency} is over the local limit of {self.limit:.2f}")
            else:
                result = PaymentResult(True, f"local-{uuid.uuid4().hex[:12]}", "approved")
            if result.approved:
                self.charges[receipt_id] = (amount, currency, result)
            return result
