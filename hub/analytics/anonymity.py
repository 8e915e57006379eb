"""k-anonymity for the analytics outputs: groups with fewer than k visitors never leave the hub.

Every output row is a group of visits (an hour, a floor cell, a zone, a shelf plate, a dwell
bin). :func:`suppress` drops the rows of fewer than ``k`` visitors and counts what it dropped;
:func:`merge_runs` joins neighbouring rows (consecutive hours, adjacent dwell bins) until each
holds at least ``k``. Both report what they did in a :class:`Suppression`, which every export
carries, so a reader knows that the sums of the rows shown can be smaller than the totals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Suppression:
    """What k-anonymity did to one table."""

    table: str
    k: int
    rows_in: int = 0
    rows_suppressed: int = 0  # dropped: fewer than k visitors
    rows_merged: int = 0  # joined into a neighbour to reach k
    visitors_suppressed: int = 0  # visitors in the dropped rows (a visit can be in several cell rows)

    def to_json(self) -> dict:
        """Plain JSON-ready dict."""
        return asdict(self)

    @property
    def note(self) -> str:
        """One line for a reader of the export."""
        parts = [f"k={self.k}"]
        if self.rows_suppressed:
            parts.append(f"{self.rows_suppressed} of {self.rows_in} rows with fewer than {self.k} visitors "
                         f"suppressed ({self.visitors_suppressed} visitor entries)")
        if self.rows_merged:
            parts.append(f"{self.rows_merged} rows with fewer than {self.k} visitors merged into neighbours")
        if len(parts) == 1:
            parts.append("nothing suppressed")
        return f"{self.table}: " + "; ".join(parts)


def suppress(rows: list[dict], k: int, table: str, key: str = "visitors") -> tuple[list[dict], Suppression]:
    """The rows with at least ``k`` in ``key``, and what was dropped."""
    sup = Suppression(table, k, rows_in=len(rows))
    kept = []
    for r in rows:
        if r[key] >= k:
            kept.append(r)
        else:
            sup.rows_suppressed += 1
            sup.visitors_suppressed += int(r[key])
    return kept, sup


def merge_runs(rows: list[dict], k: int, table: str, combine: Callable[[list[dict]], dict],
               key: str = "visits") -> tuple[list[dict], Suppression]:
    """Join consecutive ``rows`` (in order) into groups of at least ``k`` in ``key``.

    A group closes as soon as it holds ``k``; a last group short of ``k`` joins the group before
    it, and when all rows together hold fewer than ``k`` nothing is returned. ``combine`` makes one
    row of a group (and is called for single rows too).
    """
    sup = Suppression(table, k, rows_in=len(rows))
    groups: list[list[dict]] = []
    current: list[dict] = []
    for r in rows:
        current.append(r)
        if sum(x[key] for x in current) >= k:
            groups.append(current)
            current = []
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            sup.rows_suppressed = len(current)
            sup.visitors_suppressed = int(sum(x[key] for x in current))
            return [], sup
    out = []
    for g in groups:
        if len(g) > 1:
            sup.rows_merged += len(g) - 1
        out.append(combine(g))
    return out, sup
