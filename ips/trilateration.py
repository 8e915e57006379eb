"""Trilateration: position from RSSI through each node's path-loss model.

The position minimises the weighted residuals in the RSSI domain,
``(rssi_i - model_i(|p - node_i|)) / sigma_db``, which is the maximum-likelihood
estimate under log-normal shadowing (a residual in dB is a relative error in
distance, so far nodes are not over-trusted). scipy's trust-region least squares
solves it with a ``soft_l1`` robust loss; then outlier rejection drops the node
with the largest residual while the fit's chi² says the set is inconsistent and
at least ``min_nodes`` remain. The covariance is ``(JᵀJ)⁻¹`` scaled by the fit's
residual variance (never below the nominal ``sigma_db``).

The solver is a small Levenberg–Marquardt loop with the ``soft_l1`` robust loss
applied by iteratively reweighted least squares (2 unknowns: closed-form 2x2
solves), about 40 times faster per fix than calling
``scipy.optimize.least_squares`` (bench/bench_ips.py compares the two).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import chi2

from .model import Fix, RssiObservation, regularised_cov
from .pathloss import DEFAULT_TAG_HEIGHT_M, MIN_DISTANCE_M, Anchor
from ..geometry.walkable import Walkable

_LN10 = np.log(10.0)
_MIN_D2 = MIN_DISTANCE_M ** 2


class Trilateration:
    """Weighted non-linear least squares on the path-loss models, with outlier rejection."""

    name = "trilateration"

    def __init__(self, anchors: dict[str, Anchor], *, sigma_db: float = 6.0, tag_height: float = DEFAULT_TAG_HEIGHT_M,
                 min_nodes: int = 3, reject_p: float = 0.01, f_scale: float = 1.5, walkable: Walkable | None = None,
                 bounds: tuple[tuple[float, float], tuple[float, float]] | None = None):
        if len(anchors) < min_nodes:
            raise ValueError(f"trilateration needs at least {min_nodes} nodes, the config has {len(anchors)}")
        self.anchors = anchors
        self.sigma_db = sigma_db
        self.tag_height = tag_height
        self.min_nodes = min_nodes
        self.reject_p = reject_p
        self.f_scale = f_scale
        self._chi2_cache: dict[int, float] = {}
        self.walkable = walkable
        xy = np.array([[a.x, a.y] for a in anchors.values()])
        if bounds is None:
            lo, hi = xy.min(axis=0) - 2.0, xy.max(axis=0) + 2.0
            if walkable is not None:
                g = walkable
                lo = np.minimum(lo, g.origin)
                hi = np.maximum(hi, g.origin + np.array([g.cols, g.rows]) * g.resolution)
            bounds = ((float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1])))
        self.bounds = bounds

    def _chi2(self, dof: int) -> float:
        if dof not in self._chi2_cache:
            self._chi2_cache[dof] = float(chi2.ppf(1.0 - self.reject_p, dof))
        return self._chi2_cache[dof]

    def _start(self, ids: list[str], rssi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Node positions, box bounds, and the start: the RSSI-weighted centroid (strongest node pulls hardest)."""
        axy = np.array([[self.anchors[i].x, self.anchors[i].y] for i in ids])
        w = 10.0 ** ((rssi - rssi.max()) / 20.0)
        x0 = (axy * w[:, None]).sum(axis=0) / w.sum()
        lo, hi = np.array(self.bounds[0]), np.array(self.bounds[1])
        return axy, np.clip(x0, lo, hi), np.array(self.bounds)

    def _solve(self, ids: list[str], rssi: np.ndarray):
        """Fit one set of nodes: position, residuals and Jacobian there (arrays).

        Fewer than 8 nodes (the usual case) are fitted by :class:`_PathLossProblem`
        on plain floats, bit-identical to :meth:`_solve_numpy`, which fits more.
        """
        if len(ids) >= 8:
            return self._solve_numpy(ids, rssi)
        _, x0, _ = self._start(ids, rssi)
        problem = _PathLossProblem([self.anchors[i] for i in ids], rssi.tolist(), self.tag_height, self.sigma_db)
        x = problem.solve(float(x0[0]), float(x0[1]), self.bounds[0], self.bounds[1], self.f_scale)
        return np.array(x), np.array(problem.residual(*x)), np.array(problem.jac(*x))

    def _solve_numpy(self, ids: list[str], rssi: np.ndarray):
        """:meth:`_solve` with numpy residuals and :func:`levenberg_marquardt`."""
        a = [self.anchors[i] for i in ids]
        axy, x0, (lo, hi) = self._start(ids, rssi)
        dz2 = np.array([(n.z - self.tag_height) ** 2 for n in a])
        p0 = np.array([n.rssi_at_1m for n in a])
        ex = np.array([n.exponent for n in a])

        def residual(p):
            d = np.maximum(np.sqrt(((p - axy) ** 2).sum(axis=1) + dz2), MIN_DISTANCE_M)
            return (rssi - (p0 - 10.0 * ex * np.log10(d))) / self.sigma_db

        def jac(p):
            diff = p - axy
            d2 = np.maximum((diff ** 2).sum(axis=1) + dz2, MIN_DISTANCE_M ** 2)
            # d(rssi_model)/dp = -10 n / ln10 * diff / d²; residual = (rssi - model)/sigma
            return (10.0 * ex / _LN10)[:, None] * diff / d2[:, None] / self.sigma_db

        x = levenberg_marquardt(residual, jac, x0, lo, hi, f_scale=self.f_scale)
        return x, residual(x), jac(x)

    def locate(self, obs: RssiObservation) -> Fix | None:
        """A fix from the nodes heard in ``obs`` (None with fewer than ``min_nodes``)."""
        heard = obs.usable(self.anchors)
        if len(heard) < self.min_nodes:
            return None
        ids = sorted(heard)
        rssi = np.array([heard[i] for i in ids])
        dropped: list[str] = []
        while True:
            x, res, J = self._solve(ids, rssi)
            dof = len(ids) - 2
            cost = float((res ** 2).sum())
            if dof >= 2 and len(ids) > self.min_nodes and cost > self._chi2(dof):
                worst = int(np.argmax(np.abs(res)))
                dropped.append(ids.pop(worst))
                rssi = np.delete(rssi, worst)
                continue
            break
        scale = max(cost / dof, 1.0) if dof > 0 else 1.0
        try:
            cov = np.linalg.inv(J.T @ J) * scale
        except np.linalg.LinAlgError:
            cov = np.eye(2) * 25.0
        cov = regularised_cov(cov, 0.01)
        xy = x
        if self.walkable is not None:
            xy = self.walkable.snap(xy)
        return Fix(obs.ts, float(xy[0]), float(xy[1]), cov, self.name, tuple(ids), obs.tag,
                   {"dropped": tuple(dropped), "chi2": cost})


def levenberg_marquardt(residual, jac, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, f_scale: float = 1.5,
                        max_iter: int = 50, tol: float = 1e-3) -> np.ndarray:
    """Minimise the ``soft_l1`` robust cost of ``residual`` over 2 unknowns within a box.

    Each iteration solves the damped, reweighted normal equations
    ``(JᵀWJ + λ diag(JᵀWJ)) δ = -JᵀWr`` with weights ``1/sqrt(1 + (r/f)²)``
    (iteratively reweighted least squares); a step that does not lower the cost
    is retried with more damping.
    """

    def cost(r):
        return float((2.0 * (np.sqrt(1.0 + (r / f_scale) ** 2) - 1.0)).sum())

    x = np.asarray(x0, dtype=float).copy()
    r = residual(x)
    c = cost(r)
    lam = 1e-6
    for _ in range(max_iter):
        J = jac(x)
        w = 1.0 / np.sqrt(1.0 + (r / f_scale) ** 2)
        a = (J[:, 0] * w * J[:, 0]).sum()
        b = (J[:, 0] * w * J[:, 1]).sum()
        d = (J[:, 1] * w * J[:, 1]).sum()
        g0 = (J[:, 0] * w * r).sum()
        g1 = (J[:, 1] * w * r).sum()
        while True:
            aa, dd = a * (1.0 + lam) + 1e-12, d * (1.0 + lam) + 1e-12
            det = aa * dd - b * b
            step = np.array([-(dd * g0 - b * g1) / det, -(aa * g1 - b * g0) / det])
            xn = np.clip(x + step, lo, hi)
            rn = residual(xn)
            cn = cost(rn)
            if cn <= c or lam > 1e6:
                break
            lam *= 10.0
        moved = float(np.abs(xn - x).max())
        if cn <= c:
            x, r, c = xn, rn, cn
            lam = max(lam / 10.0, 1e-7)
        if moved < tol:
            break
    return x



class _PathLossProblem:
    """The trilateration fit of one observation (fewer than 8 nodes) on plain floats.

    Operation for operation what :meth:`Trilateration._solve`'s numpy residual
    and Jacobian with :func:`levenberg_marquardt` compute, in the same order
    (numpy sums fewer than 8 terms left to right from 0.0; its ``log10`` is
    called on an array, once per evaluation), so the fix is bit-identical at a
    fraction of the per-call overhead of numpy on arrays of five.
    """

    def __init__(self, anchors: list[Anchor], rssi: list[float], tag_height: float, sigma_db: float):
        if len(anchors) >= 8:
            raise ValueError("numpy sums 8 terms or more pairwise: use levenberg_marquardt")
        self.nodes = [(n.x, n.y, (n.z - tag_height) ** 2, float(10.0 * n.exponent / _LN10)) for n in anchors]
        self.model = [(z, n.rssi_at_1m, 10.0 * n.exponent) for z, n in zip(rssi, anchors)]
        self.sigma = sigma_db

    def residual(self, px: float, py: float) -> list[float]:
        """``(rssi - model(|p - node|)) / sigma`` per node."""
        d = []
        for ax, ay, dz2, _ in self.nodes:
            ex, ey = px - ax, py - ay
            r = math.sqrt(ex * ex + ey * ey + dz2)
            d.append(r if r >= MIN_DISTANCE_M else MIN_DISTANCE_M)
        s = self.sigma
        return [(z - (p0 - tn * lg)) / s for (z, p0, tn), lg in zip(self.model, np.log10(np.array(d)).tolist())]

    def jac(self, px: float, py: float) -> list[tuple[float, float]]:
        """Rows ``d residual / d (x, y)`` per node."""
        s = self.sigma
        out = []
        for ax, ay, dz2, k in self.nodes:
            ex, ey = px - ax, py - ay
            d2 = ex * ex + ey * ey + dz2
            if not d2 >= _MIN_D2:
                d2 = _MIN_D2
            out.append((k * ex / d2 / s, k * ey / d2 / s))
        return out

    def solve(self, x0: float, x1: float, lo, hi, f_scale: float, max_iter: int = 50, tol: float = 1e-3
              ) -> tuple[float, float]:
        """:func:`levenberg_marquardt` from ``(x0, x1)`` within the box ``lo``-``hi``."""
        (lo0, lo1), (hi0, hi1) = lo, hi
        nodes, model, s, f = self.nodes, self.model, self.sigma, f_scale
        sqrt, log10 = math.sqrt, np.log10

        def evaluate(px, py):  # residuals and their soft_l1 cost
            d = []
            for ax, ay, dz2, _ in nodes:
                ex, ey = px - ax, py - ay
                dist = sqrt(ex * ex + ey * ey + dz2)
                d.append(dist if dist >= MIN_DISTANCE_M else MIN_DISTANCE_M)
            r = [(z - (p0 - tn * lg)) / s for (z, p0, tn), lg in zip(model, log10(d).tolist())]
            c = 0.0
            for v in r:
                u = v / f
                c += 2.0 * (sqrt(1.0 + u * u) - 1.0)
            return r, c

        r, c = evaluate(x0, x1)
        lam = 1e-6
        for _ in range(max_iter):
            # reweighted normal equations: JᵀWJ = [[a, b], [b, d]], JᵀWr = (g0, g1)
            a = b = d = g0 = g1 = 0.0
            for (ax, ay, dz2, k), ri in zip(nodes, r):
                ex, ey = x0 - ax, x1 - ay
                d2 = ex * ex + ey * ey + dz2
                if not d2 >= _MIN_D2:
                    d2 = _MIN_D2
                j0, j1 = k * ex / d2 / s, k * ey / d2 / s
                u = ri / f
                wi = 1.0 / sqrt(1.0 + u * u)
                a += j0 * wi * j0
                b += j0 * wi * j1
                d += j1 * wi * j1
                g0 += j0 * wi * ri
                g1 += j1 * wi * ri
            while True:
                aa, dd = a * (1.0 + lam) + 1e-12, d * (1.0 + lam) + 1e-12
                det = aa * dd - b * b
                n0 = x0 + -(dd * g0 - b * g1) / det
                n1 = x1 + -(aa * g1 - b * g0) / det
                n0 = lo0 if n0 < lo0 else hi0 if n0 > hi0 else n0  # np.clip
                n1 = lo1 if n1 < lo1 else hi1 if n1 > hi1 else n1
                rn, cn = evaluate(n0, n1)
                if cn <= c or lam > 1e6:
                    break
                lam *= 10.0
            moved = max(abs(n0 - x0), abs(n1 - x1))
            if cn <= c:
                x0, x1, r, c = n0, n1, rn, cn
                lam = max(lam / 10.0, 1e-7)
            if moved < tol:
                break
        return x0, x1
