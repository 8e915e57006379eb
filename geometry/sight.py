"""Line of sight on an occupancy grid: does a straight segment stay on free cells.

:func:`cells_crossed` lists, exactly, every cell a segment passes through (it is
cut where it crosses grid lines; the middle of each piece lies inside one
traversed cell). :func:`segments_clear` asks that of many segments at once,
by that exact rule or, where a caller still needs it, by the older sampled
rule (points evenly spaced along the segment), which can miss a cell whose
corner the segment clips.
"""

from __future__ import annotations

import numpy as np

_LINSPACE: dict[int, np.ndarray] = {}  # np.linspace(0, 1, n) by n


def cells_crossed(origin, resolution: float, a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and segment numbers of every cell each segment ``a[i]``-``b[i]`` passes through.

    ``a`` and ``b`` are floor points ``(n, 2)`` (either may be a single point);
    ``origin`` is the floor point of the grid's corner and ``resolution`` the cell
    size. A segment that only touches a cell's corner or edge does not pass
    through it. Rows and columns are not clipped to any grid.
    """
    a = np.asarray(a, dtype=float).reshape(-1, 2)
    b = np.asarray(b, dtype=float).reshape(-1, 2)
    a, b = np.broadcast_arrays(a, b)
    n = len(a)
    ax, ay = (a[:, 0] - origin[0]) / resolution, (a[:, 1] - origin[1]) / resolution
    bx, by = (b[:, 0] - origin[0]) / resolution, (b[:, 1] - origin[1]) / resolution
    seg = [np.arange(n), np.arange(n)]
    cuts = [np.zeros(n), np.ones(n)]
    for p0, p1 in ((ax, bx), (ay, by)):
        moving = p1 != p0
        first = np.ceil(np.minimum(p0, p1))
        count = np.where(moving, np.floor(np.maximum(p0, p1)) - first + 1, 0).astype(np.int64)
        count = np.maximum(count, 0)
        owner = np.repeat(np.arange(n), count)
        lines = np.repeat(first, count) + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        seg.append(owner)
        cuts.append((lines - p0[owner]) / (p1[owner] - p0[owner]))
    seg_all = np.concatenate(seg)
    t = np.clip(np.concatenate(cuts), 0.0, 1.0)
    order = np.lexsort((t, seg_all))
    seg_all, t = seg_all[order], t[order]
    keep = np.r_[True, (seg_all[1:] != seg_all[:-1]) | (t[1:] != t[:-1])]  # np.unique per segment
    seg_all, t = seg_all[keep], t[keep]
    piece = seg_all[1:] == seg_all[:-1]  # consecutive cuts of one segment bound a piece (0 and 1 are always cuts)
    owner = seg_all[:-1][piece]
    mid = (t[:-1][piece] + t[1:][piece]) / 2
    cols = np.floor(ax[owner] + mid * (bx[owner] - ax[owner])).astype(np.int64)
    rows = np.floor(ay[owner] + mid * (by[owner] - ay[owner])).astype(np.int64)
    return rows, cols, owner


def segments_clear(free: np.ndarray, origin, resolution: float, a, b, *, samples=None,
                   outside_blocked: bool = True) -> np.ndarray:
    """True where the straight segment ``a[i]``-``b[i]`` stays on free cells of the grid ``free`` (True = free).

    ``a`` and ``b`` are floor points ``(n, 2)`` (either may be a single point).
    With ``samples=None`` the rule is exact: every cell the segment passes
    through (:func:`cells_crossed`) must be free. With ``samples`` (a count, or
    one count per segment) the segment is tested only at that many points
    evenly spaced from ``a`` to ``b``, each in the cell ``int((x - origin) /
    resolution)``; that sampled rule can miss a cell whose corner the segment
    clips, and is kept for the callers whose figures depend on it. A cell off
    the grid counts as blocked, or, with ``outside_blocked=False``, as the
    nearest grid cell on the border.
    """
    h, w = free.shape
    if samples is None:
        rows, cols, owner = cells_crossed(origin, resolution, a, b)
        ok = free[np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)]
        if outside_blocked:
            ok &= (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        n = max(len(np.asarray(a).reshape(-1, 2)), len(np.asarray(b).reshape(-1, 2)))
        return np.bincount(owner, weights=~ok, minlength=n) == 0
    a = np.asarray(a, dtype=float).reshape(-1, 2)
    b = np.asarray(b, dtype=float).reshape(-1, 2)
    d = b - a
    if np.ndim(samples) == 0:  # one count for all: a (samples, n) grid of points, no per-segment bookkeeping
        k = int(samples)
        if k not in _LINSPACE:
            _LINSPACE[k] = np.linspace(0.0, 1.0, k)
        t = _LINSPACE[k][:, None]
        x = a[:, 0] + t * d[:, 0]
        y = a[:, 1] + t * d[:, 1]
        cols = ((x - origin[0]) / resolution).astype(np.int64)
        rows = ((y - origin[1]) / resolution).astype(np.int64)
        ok = free[np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)]
        if outside_blocked:
            ok &= (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w) & (x >= origin[0]) & (y >= origin[1])
        return ok.all(axis=0)
    counts = np.broadcast_to(np.asarray(samples, dtype=np.int64), (len(d),))
    for k in np.unique(counts).tolist():
        if k not in _LINSPACE:
            _LINSPACE[k] = np.linspace(0.0, 1.0, k)
    t = np.concatenate([_LINSPACE[k] for k in counts.tolist()])
    ax, ay = (np.repeat(a[:, 0], counts), np.repeat(a[:, 1], counts)) if len(a) > 1 else (a[0, 0], a[0, 1])
    x = ax + t * np.repeat(d[:, 0], counts)
    y = ay + t * np.repeat(d[:, 1], counts)
    cols = ((x - origin[0]) / resolution).astype(np.int64)
    rows = ((y - origin[1]) / resolution).astype(np.int64)
    ok = free[np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)]
    if outside_blocked:  # int() truncates towards zero: points just below the origin must not land in cell 0
        ok &= (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w) & (x >= origin[0]) & (y >= origin[1])
    return np.logical_and.reduceat(ok, np.cumsum(counts) - counts)
