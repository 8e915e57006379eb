"""Bodies do not overlap: walking shoppers step around each other and around people standing still.

Each shopper's walk is planned on its own (:mod:`.shoppers`), so two planned
walks may run through the same spot at the same time: before this pass, a
quarter of the shopper pairs in a busy store came within 0.3 m of each other
(centre to centre), closer than two bodies can stand, and the floor tracker
had to tell apart people whose true positions coincided. Real people keep
apart: in the world-coordinate ground truth of the dev videos
(``mot15/TUD-Stadtmitte``, ``mot15/ETH-Bahnhof``), 1 % of the pairs of
people ever seen together come closer than 0.50 m and 0.41 m, and no pair
of TUD-Stadtmitte's 39 closer than 0.5 m (``python tools/closest_approach.py``).

:func:`keep_apart` moves walkers, never anyone standing still (at a shelf, in
the queue, at a gate: the reaches and check-ins planned there stay where
they are). On a time grid, a walker nearer than ``min_m`` to someone standing
steps aside (across their own way) until ``min_m`` apart; two walkers that
near each take half of it. Meeting head on or coming straight at someone
standing, a walker steps to their right; right behind another walker, they
keep back. A walker thus traces an arc around a person standing in the
aisle and two who pass leave each other room, while every
truth that does not depend on the exact walk (actions, reaches, stands,
check-ins) is unchanged. A push that would put a walker into a shelf or a
wall (less than ``wall_m`` from it) falls on the other walker, or is left
out. ``min_m`` is 0.4 m: below the closest approach of 99 % of the real pairs,
so the simulator stays no easier than the dev videos.
"""

from __future__ import annotations

import math

import numpy as np

#: walkers keep at least this far (centre to centre, metres) from anyone else
MIN_SEPARATION_M = 0.4


def keep_apart(shoppers, grid, *, min_m: float = MIN_SEPARATION_M, hz: float = 20.0, wall_m: float = 0.15,
               rounds: int = 6) -> int:
    """Rewrite walkers' keyframes where they come nearer than ``min_m`` to anyone; returns the shoppers changed.

    ``shoppers``: planned :class:`~.shoppers.SimShopper` (keyframes, headings);
    ``grid``: the store's :class:`~storesense.geometry.floor.FloorGrid` (its
    ``clearance_map`` says how far each cell is from walls and shelves).
    Where a walker was pushed, its keyframes become samples at ``hz`` (each
    keeping the heading of the planned leg it lies on); elsewhere they stay
    the planned ones.
    """
    if len(shoppers) < 2:
        return 0
    t0 = min(s.enter_ts for s in shoppers)
    t1 = max(s.exit_ts for s in shoppers)
    times = np.arange(t0, t1 + 1.0 / hz, 1.0 / hz)
    pos = np.stack([s.positions(times) for s in shoppers])  # (S, T, 2), NaN outside
    moving = np.stack([s.moving_at(times) for s in shoppers]) & ~np.isnan(pos[..., 0])
    inside = ~np.isnan(pos[..., 0])
    new = pos.copy()
    m2 = min_m * min_m
    heading = np.stack([s.heading_at(times) for s in shoppers])
    for k in range(len(times)):
        idx = np.flatnonzero(inside[:, k])
        if len(idx) < 2 or not moving[idx, k].any():
            continue
        p = new[idx, k]
        d2 = ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        if d2.min() >= m2:
            continue
        idx = idx[np.any(d2 < (min_m + 0.3) ** 2, axis=1)]  # who is near anyone (a push may bring a third nearer)
        for _ in range(rounds):
            changed = False
            for a_i, a in enumerate(idx):
                for b in idx[a_i + 1:]:
                    if not (moving[a, k] or moving[b, k]):
                        continue  # two people standing: the plan keeps stand spots apart
                    dx, dy = new[b, k, 0] - new[a, k, 0], new[b, k, 1] - new[a, k, 1]
                    d2 = dx * dx + dy * dy
                    if d2 >= m2:
                        continue
                    d = math.sqrt(d2)
                    ux, uy = (dx / d, dy / d) if d > 1e-9 else (0.0, 0.0)
                    ha = (math.cos(heading[a, k]), math.sin(heading[a, k]))
                    hb = (math.cos(heading[b, k]), math.sin(heading[b, k]))
                    head_on = ha[0] * hb[0] + ha[1] * hb[1] < 0.0
                    step_a = _step((-ux, -uy), ha, moving[a, k], head_on or not moving[b, k])
                    step_b = _step((ux, uy), hb, moving[b, k], head_on or not moving[a, k])
                    share_a = 0.5 if moving[a, k] and moving[b, k] else (1.0 if moving[a, k] else 0.0)
                    if _push(new, grid, a, b, k, ((step_a, step_b), ((-ux, -uy), (ux, uy))), min_m - d, share_a,
                             wall_m):
                        changed = True
            if not changed:
                break
    moved = np.any(np.nan_to_num(np.hypot(*(new - pos).transpose(2, 0, 1))) > 1e-6, axis=1)
    for i in np.flatnonzero(moved):
        _rewrite(shoppers[i], times, new[i], pos[i])
    return int(moved.sum())


def _step(away: tuple[float, float], heading: tuple[float, float], walking: bool,
          keep_right: bool) -> tuple[float, float]:
    """Which way a shopper gives way (unit vector), ``away`` being the unit vector from the other to them.

    Someone walking steps aside, across their own way; meeting someone head on
    or coming straight at someone standing, to their right. Someone walking
    right behind another walker keeps back (and the one ahead keeps ahead):
    along the line between them.
    """
    if not walking:
        return away
    along = away[0] * heading[0] + away[1] * heading[1]
    lx, ly = away[0] - along * heading[0], away[1] - along * heading[1]
    n = math.hypot(lx, ly)
    if n >= 0.2:
        return lx / n, ly / n
    if keep_right:
        return heading[1], -heading[0]
    return away if math.hypot(*away) > 0.5 else (heading[1], -heading[0])


def _push(new, grid, a: int, b: int, k: int, ways, gap: float, share_a: float, wall_m: float) -> bool:
    """Move ``a`` and ``b`` apart by their shares of ``gap``, clear of walls, the first of ``ways`` that fits.

    ``ways``: (step of a, step of b) unit vectors: giving way as :func:`_step`
    says, then straight apart. Two walkers share the push; when a wall stops
    one, the other takes it all. Where nothing fits (a narrow aisle), the push
    shrinks to what fits: people squeeze past each other there. Returns
    whether anyone moved.
    """
    shares = (share_a, 1.0, 0.0) if 0.0 < share_a < 1.0 else (share_a,)
    for part, (step_a, step_b) in ((p, w) for p in (1.0, 0.5, 0.25) for w in ways):
        g = gap * part
        for sa in shares:
            pa = (new[a, k, 0] + step_a[0] * g * sa, new[a, k, 1] + step_a[1] * g * sa)
            pb = (new[b, k, 0] + step_b[0] * g * (1.0 - sa), new[b, k, 1] + step_b[1] * g * (1.0 - sa))
            if (sa == 0.0 or _clear(grid, pa, wall_m)) and (sa == 1.0 or _clear(grid, pb, wall_m)):
                new[a, k] = pa
                new[b, k] = pb
                return True
    return False


def _clear(grid, p, wall_m: float) -> bool:
    """Whether a body centred at ``p`` stays ``wall_m`` from every wall, shelf and obstacle."""
    r, c = grid.cell(p)
    x0, y0 = grid.origin
    inside = x0 <= p[0] <= x0 + grid.shape[1] * grid.resolution and y0 <= p[1] <= y0 + grid.shape[0] * grid.resolution
    return inside and bool(grid.clearance_map[r, c] >= wall_m)


def _rewrite(shopper, times: np.ndarray, new: np.ndarray, old: np.ndarray) -> None:
    """Put the pushed samples into the shopper's keyframes.

    The planned keyframes stay, except those between two pushed samples (the
    push replaces that stretch); the samples next to a pushed stretch are put
    in on the plan, so the walk leaves and rejoins its plan there. Each new
    keyframe keeps the heading of the planned leg it lies on.
    """
    pushed = np.nan_to_num(np.hypot(new[:, 0] - old[:, 0], new[:, 1] - old[:, 1])) > 1e-6
    kf, heads = list(shopper.keyframes), list(shopper.headings)
    kt = np.array([f[0] for f in kf])
    inside = ~np.isnan(old[:, 0])
    edge = inside & ~pushed & (np.r_[pushed[1:], False] | np.r_[False, pushed[:-1]])
    points: dict[float, tuple[tuple[float, float, float], float]] = {}
    for i, f in enumerate(kf):
        k = int(np.searchsorted(times, f[0], side="right")) - 1  # the sample at or before the keyframe
        if 0 <= k and (pushed[k] and (times[k] == f[0] or (k + 1 < len(times) and pushed[k + 1]))):
            continue  # inside a pushed stretch: the samples replace it
        points[f[0]] = (f, heads[i])
    for k in np.flatnonzero(pushed | edge):
        t = float(times[k])
        if t in points:
            continue
        leg = int(np.clip(np.searchsorted(kt, t, side="left"), 0, len(heads) - 1))
        xy = new[k] if pushed[k] else old[k]
        points[t] = ((t, float(xy[0]), float(xy[1])), heads[leg])
    order = sorted(points)
    shopper.keyframes = [points[t][0] for t in order]
    shopper.headings = [points[t][1] for t in order]
