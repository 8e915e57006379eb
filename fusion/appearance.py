"""Appearance in the fusion node: who is who from the camera nodes' colour descriptors.

A :class:`~storesense.contracts.Appearance` holds two 12-bin colour histograms
(torso, thighs). Here each becomes its element-wise square root, normalised
to unit length per region (:func:`unit`), so the Bhattacharyya coefficient of
two histograms is a dot product and the Hellinger distance
:func:`distance` costs 24 multiplications, in plain floats (the fusion node
compares a few descriptors per camera frame). A running appearance (a track's,
a session's reference) is the normalised running mean of such vectors
(:func:`blend`).
"""

from __future__ import annotations

import math

from ..contracts import Appearance

REGION_BINS = 12
#: observations hidden more than this (quality below it) do not update an appearance
MIN_QUALITY = 0.6


def unit(app: Appearance | None) -> tuple[float, ...] | None:
    """Square-root histograms of a descriptor, unit length per region (an empty region stays zeros)."""
    if app is None:
        return None
    out: list[float] = []
    bins = app.bins
    filled = False
    for r in range(0, len(bins), REGION_BINS):
        region = bins[r:r + REGION_BINS]
        total = sum(region)
        if total <= 0:
            out += [0.0] * REGION_BINS
            continue
        filled = True
        out += [math.sqrt(v / total) for v in region]
    return tuple(out) if filled else None


def distance(a, b) -> float | None:
    """Hellinger distance (0..1) averaged over the regions both unit vectors have; None when none."""
    if a is None or b is None:
        return None
    total, n = 0.0, 0
    for r in range(0, len(a), REGION_BINS):
        bc = 0.0
        na = nb = 0.0
        for i in range(r, r + REGION_BINS):
            x, y = a[i], b[i]
            bc += x * y
            na += x
            nb += y
        if na > 0 and nb > 0:
            total += math.sqrt(max(0.0, 1.0 - bc))
            n += 1
    return total / n if n else None


def blend(current, new, weight: float):
    """``current`` moved towards ``new`` by ``weight`` (0..1), renormalised per region; ``new`` when no current."""
    if current is None:
        return new
    if new is None:
        return current
    out = []
    for r in range(0, len(new), REGION_BINS):
        mixed = [(1.0 - weight) * current[i] + weight * new[i] for i in range(r, r + REGION_BINS)]
        norm = math.sqrt(sum(v * v for v in mixed))
        out += [v / norm for v in mixed] if norm > 0 else mixed
    return tuple(out)


class RunningAppearance:
    """A running appearance: a long memory (who this is) and a short one (who it looks like now)."""

    __slots__ = ("long", "recent", "n", "ts")

    def __init__(self) -> None:
        self.long = None
        self.recent = None
        self.n = 0
        self.ts = float("-inf")

    def add(self, vec, ts: float, long_weight: float = 0.05, recent_weight: float = 0.3) -> None:
        """Take one unit vector seen at ``ts``."""
        if vec is None:
            return
        self.n += 1
        self.long = blend(self.long, vec, max(long_weight, 1.0 / self.n))
        self.recent = blend(self.recent, vec, max(recent_weight, 1.0 / self.n))
        self.ts = ts
