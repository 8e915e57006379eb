"""Appearance in the fusion node: who is who from the camera nodes' colour descriptors.

A :class:`~storesense.contracts.Appearance` holds two 12-bin colour histograms
(torso, thighs). Here each becomes its element-wise square root, normalised
to unit length per region (:func:`unit`), so the Bhattacharyya coefficient of
two histograms is a dot product and the Hellinger distance
:func:`distance` costs 24 multiplications, in plain floats (the fusion node
compares a few descriptors per camera frame). A running appearance (a track's,
a session's reference) is the normalised running mean of such vectors
(:func:`blend`).

Speed: the fusion node does this for every observation (a floor track's and a
camera track's running appearance, the association cost), so :func:`distance`
and :func:`blend` are written out over the 24 entries (no loops or index
arithmetic: about 2.5 times faster in CPython); :func:`unit` looks each bin (a byte) up in a table of
square roots per region total, built with the same division and square root.
The arithmetic is the element-wise loop's, operation for operation and in the
same order (dot products, bin totals and norms left to right; the norm from
0.0, as CPython 3.11's ``sum`` of floats added it before, written out: 10 %
faster per blend), so the results are the same bits. :func:`unit` keeps the last few descriptors' vectors: the
tracker and the node ask for the same observation's vector in turn.
"""

from __future__ import annotations

import math
from collections import deque

from ..contracts import APPEARANCE_BINS, Appearance

REGION_BINS = 12
#: observations hidden more than this (quality below it) do not update an appearance
MIN_QUALITY = 0.6
assert APPEARANCE_BINS == 2 * REGION_BINS  # the written-out arithmetic below is for two regions of 12

_sqrt = math.sqrt
_ZEROS = (0.0,) * REGION_BINS
#: id(descriptor) -> (descriptor, its unit vector), the last few asked for; the descriptor (frozen) is held,
#: so no other object can have its id while it is here
_units: dict[int, tuple[Appearance, tuple[float, ...] | None]] = {}
_UNITS_KEPT = 64
#: region total -> :func:`_roots` table; a descriptor's bins are bytes summing to about 255, so few totals occur
_tables: dict[int, dict[int, float]] = {}
_TABLES_KEPT = 64


def _roots(total) -> dict:
    """``{k: sqrt(k / total)}`` for every byte value ``k``: a region's unit-vector entries when its bins sum to
    ``total`` (the same division and square root as computed one by one, so the same bits)."""
    table = _tables.get(total)
    if table is None:
        if len(_tables) >= _TABLES_KEPT:
            _tables.clear()
        table = _tables[total] = {k: _sqrt(k / total) for k in range(256)}
    return table


def unit(app: Appearance | None) -> tuple[float, ...] | None:
    """Square-root histograms of a descriptor, unit length per region (an empty region stays zeros)."""
    if app is None:
        return None
    known = _units.get(id(app))
    if known is not None and known[0] is app:
        return known[1]
    bins = app.bins
    (b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11,
     b12, b13, b14, b15, b16, b17, b18, b19, b20, b21, b22, b23) = bins
    t = b0 + b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8 + b9 + b10 + b11
    u = b12 + b13 + b14 + b15 + b16 + b17 + b18 + b19 + b20 + b21 + b22 + b23
    try:  # the bins are bytes (the contract's ints 0..255): each entry is looked up in its region total's table
        if t > 0:
            r = _roots(t)
            top = (r[b0], r[b1], r[b2], r[b3], r[b4], r[b5], r[b6], r[b7], r[b8], r[b9], r[b10], r[b11])
        else:
            top = _ZEROS  # that region was not visible
        if u > 0:
            r = _roots(u)
            vec = top + (r[b12], r[b13], r[b14], r[b15], r[b16], r[b17], r[b18], r[b19], r[b20], r[b21], r[b22],
                         r[b23])
        else:
            vec = top + _ZEROS if t > 0 else None  # neither region visible: no appearance
    except KeyError:  # not bytes (a descriptor built without validation): computed entry by entry
        vec = _unit_of(bins, t, u)
    if len(_units) >= _UNITS_KEPT:
        _units.clear()
    _units[id(app)] = (app, vec)
    return vec


def _unit_of(bins, t, u) -> tuple[float, ...] | None:
    """:func:`unit`'s vector of ``bins`` whose regions sum to ``t`` and ``u``, entry by entry."""
    top = tuple(_sqrt(b / t) for b in bins[:REGION_BINS]) if t > 0 else _ZEROS
    if u > 0:
        return top + tuple(_sqrt(b / u) for b in bins[REGION_BINS:])
    return top + _ZEROS if t > 0 else None


def distance(a, b) -> float | None:
    """Hellinger distance (0..1) averaged over the regions both unit vectors have; None when none.

    A region is there when its entries (all ≥ 0) sum above zero, i.e. when
    any of them is not zero (tested in that form: it stops at the first); the
    Bhattacharyya coefficient is the regions' dot product, summed left to right.
    """
    if a is None or b is None:
        return None
    (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11,
     a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23) = a
    (b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11,
     b12, b13, b14, b15, b16, b17, b18, b19, b20, b21, b22, b23) = b
    total, n = 0.0, 0
    if ((a0 or a1 or a2 or a3 or a4 or a5 or a6 or a7 or a8 or a9 or a10 or a11)
            and (b0 or b1 or b2 or b3 or b4 or b5 or b6 or b7 or b8 or b9 or b10 or b11)):
        bc = (a0 * b0 + a1 * b1 + a2 * b2 + a3 * b3 + a4 * b4 + a5 * b5 + a6 * b6 + a7 * b7 + a8 * b8 + a9 * b9
              + a10 * b10 + a11 * b11)
        bc = 1.0 - bc
        total += _sqrt(bc if bc > 0.0 else 0.0)
        n += 1
    if ((a12 or a13 or a14 or a15 or a16 or a17 or a18 or a19 or a20 or a21 or a22 or a23)
            and (b12 or b13 or b14 or b15 or b16 or b17 or b18 or b19 or b20 or b21 or b22 or b23)):
        bc = (a12 * b12 + a13 * b13 + a14 * b14 + a15 * b15 + a16 * b16 + a17 * b17 + a18 * b18 + a19 * b19
              + a20 * b20 + a21 * b21 + a22 * b22 + a23 * b23)
        bc = 1.0 - bc
        total += _sqrt(bc if bc > 0.0 else 0.0)
        n += 1
    return total / n if n else None


def _mix(current, new, weight: float) -> tuple[float, ...]:
    """``(1 - weight) × current + weight × new``, each region scaled to unit length (left as is when all zero)."""
    keep = 1.0 - weight
    (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11,
     c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23) = current
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11,
     v12, v13, v14, v15, v16, v17, v18, v19, v20, v21, v22, v23) = new
    m0, m1, m2, m3 = keep * c0 + weight * v0, keep * c1 + weight * v1, keep * c2 + weight * v2, keep * c3 + weight * v3
    m4, m5, m6, m7 = keep * c4 + weight * v4, keep * c5 + weight * v5, keep * c6 + weight * v6, keep * c7 + weight * v7
    m8, m9 = keep * c8 + weight * v8, keep * c9 + weight * v9
    m10, m11 = keep * c10 + weight * v10, keep * c11 + weight * v11
    m12, m13 = keep * c12 + weight * v12, keep * c13 + weight * v13
    m14, m15 = keep * c14 + weight * v14, keep * c15 + weight * v15
    m16, m17 = keep * c16 + weight * v16, keep * c17 + weight * v17
    m18, m19 = keep * c18 + weight * v18, keep * c19 + weight * v19
    m20, m21 = keep * c20 + weight * v20, keep * c21 + weight * v21
    m22, m23 = keep * c22 + weight * v22, keep * c23 + weight * v23
    # the norms summed left to right from 0.0, as CPython 3.11's sum() of floats does (no tuple, no call)
    n0 = _sqrt(0.0 + m0 * m0 + m1 * m1 + m2 * m2 + m3 * m3 + m4 * m4 + m5 * m5 + m6 * m6 + m7 * m7 + m8 * m8 + m9 * m9
               + m10 * m10 + m11 * m11)
    n1 = _sqrt(0.0 + m12 * m12 + m13 * m13 + m14 * m14 + m15 * m15 + m16 * m16 + m17 * m17 + m18 * m18 + m19 * m19
               + m20 * m20 + m21 * m21 + m22 * m22 + m23 * m23)
    if n0 > 0 and n1 > 0:  # the usual case: one tuple, the same quotients
        return (m0 / n0, m1 / n0, m2 / n0, m3 / n0, m4 / n0, m5 / n0, m6 / n0, m7 / n0, m8 / n0, m9 / n0, m10 / n0,
                m11 / n0, m12 / n1, m13 / n1, m14 / n1, m15 / n1, m16 / n1, m17 / n1, m18 / n1, m19 / n1, m20 / n1,
                m21 / n1, m22 / n1, m23 / n1)
    r0 = ((m0 / n0, m1 / n0, m2 / n0, m3 / n0, m4 / n0, m5 / n0, m6 / n0, m7 / n0, m8 / n0, m9 / n0, m10 / n0,
           m11 / n0) if n0 > 0 else (m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11))
    r1 = ((m12 / n1, m13 / n1, m14 / n1, m15 / n1, m16 / n1, m17 / n1, m18 / n1, m19 / n1, m20 / n1, m21 / n1,
           m22 / n1, m23 / n1) if n1 > 0 else (m12, m13, m14, m15, m16, m17, m18, m19, m20, m21, m22, m23))
    return r0 + r1


def blend(current, new, weight: float):
    """``current`` moved towards ``new`` by ``weight`` (0..1), renormalised per region; ``new`` when no current."""
    if current is None:
        return new
    if new is None:
        return current
    return _mix(current, new, weight)


class RunningAppearance:
    """A running appearance: a long memory (who this is) and a short one (who it looks like now).

    The short memory is read rarely (a hand event's camera track, a BLE swap
    claim) and most running appearances are never asked for it, so its blends
    wait: the last ``held`` views are kept and blended, in order and with the
    weights they came with, when :attr:`recent` is read (the same blends, so
    the same bits); older ones are blended as they fall out of that window,
    which bounds the memory held (about 0.8 kB a view, shared by the floor
    track's and the camera track's memories of the same view).
    """

    __slots__ = ("long", "_recent", "_waiting", "_held", "n", "ts")

    def __init__(self, held: int = 64) -> None:
        self._held = held
        self.long = None
        self._recent = None
        self._waiting: deque | None = None  # (vector, weight) not yet blended into ``_recent``, oldest first
        self.n = 0
        self.ts = float("-inf")

    @property
    def recent(self):
        """The short memory: every view so far blended in (the waiting ones now)."""
        waiting = self._waiting
        if waiting:
            recent = self._recent
            for vec, w in waiting:
                recent = vec if recent is None else _mix(recent, vec, w)
            waiting.clear()
            self._recent = recent
        return self._recent

    def add(self, vec, ts: float, long_weight: float | None = 0.05, recent_weight: float | None = 0.3) -> None:
        """Take one unit vector seen at ``ts``.

        A weight of None keeps that memory out (it stays None): for a running
        appearance whose owner never reads it, which saves half the work.
        """
        if vec is None:
            return
        self.n += 1
        first = 1.0 / self.n  # the weights are at least this: the first vectors are averaged
        if long_weight is not None:
            long = self.long
            w = first if first > long_weight else long_weight
            self.long = vec if long is None else _mix(long, vec, w)
        if recent_weight is not None:
            waiting = self._waiting
            if waiting is None:
                waiting = self._waiting = deque()
            waiting.append((vec, first if first > recent_weight else recent_weight))
            if len(waiting) > self._held:  # the oldest waiting view is blended in now
                old, w = waiting.popleft()
                recent = self._recent
                self._recent = old if recent is None else _mix(recent, old, w)
        self.ts = ts


_LONG = RunningAppearance.long  # the slot that holds the long memory (below, behind a property)


class LazyLongAppearance(RunningAppearance):
    """A running appearance whose long memory, too, is blended when read.

    For a memory that is often dropped unread (the fusion node's look of a
    floor track since it last met anyone is forgotten at every meeting): each
    view waits with the weight it came with, and :attr:`long` blends the
    waiting ones in order (the same blends, so the same bits); older ones are
    blended as they fall out of a window of ``held_long`` views.
    """

    __slots__ = ("_long_waiting", "_held_long")

    def __init__(self, held: int = 64, held_long: int = 64) -> None:
        self._long_waiting: deque = deque()  # (vector, weight) not yet blended into the long memory, oldest first
        self._held_long = held_long
        super().__init__(held)

    @property
    def long(self):
        """The long memory: every view so far blended in (the waiting ones now)."""
        waiting = self._long_waiting
        if waiting:
            long = _LONG.__get__(self)
            for vec, w in waiting:
                long = vec if long is None else _mix(long, vec, w)
            waiting.clear()
            _LONG.__set__(self, long)
        return _LONG.__get__(self)

    @long.setter
    def long(self, value) -> None:
        self._long_waiting.clear()
        _LONG.__set__(self, value)

    def add(self, vec, ts: float, long_weight: float | None = 0.05, recent_weight: float | None = 0.3) -> None:
        """:meth:`RunningAppearance.add`, the long memory's blend left waiting."""
        super().add(vec, ts, None, recent_weight)  # counts the view, keeps the short memory and the time
        if vec is None or long_weight is None:
            return
        first = 1.0 / self.n
        waiting = self._long_waiting
        waiting.append((vec, first if first > long_weight else long_weight))
        if len(waiting) > self._held_long:  # the oldest waiting view is blended in now
            old, w = waiting.popleft()
            long = _LONG.__get__(self)
            _LONG.__set__(self, old if long is None else _mix(long, old, w))
