"""Trilateration: position from RSSI through each node's path-loss model.

The position minimises the weighted residuals in the RSSI domain,
``(rssi_i - model_i(|p - node_i|)) / sigma_db``, which is the maximum-likelihood
estimate under log-normal shadowing (a residual in dB is a relative error in
distance, so far nodes are not over-trusted), under a ``soft_l1`` robust loss
(as ``scipy.optimize.least_squares(loss="soft_l1")``); then outlier rejection
drops the node with the largest residual while the fit's chi² says the set is
inconsistent and at least ``min_nodes`` remain. The covariance is ``(JᵀJ)⁻¹``
scaled by the fit's residual variance (never below the nominal ``sigma_db``).

The solver (:class:`_PathLossProblem`, plain floats, 2 unknowns):

1. **Start** at the RSSI-weighted centroid of the nodes heard (the strongest
   pulls hardest). A global start (the best point of a coarse grid) was
   tried: it finds the cost's global minimum, which cross-validation on the
   Kolakowski calibration runs scored no better (trilateration median 1.71 ->
   1.77 m, Kalman fusion 0.79 -> 0.80 m), so the start stays local.
2. **Newton steps** on the robust cost with its exact Hessian (the
   residuals' own curvature included), damped Levenberg–Marquardt style; where
   the Hessian is not positive definite, the reweighted Gauss–Newton matrix
   (iteratively reweighted least squares) takes its place. This converges in
   about six evaluations where plain reweighted Gauss–Newton crawled (on the
   Kolakowski robot track one fix in nine stopped at 50 iterations still
   moving). Steps stop at 1 cm (Newton: the rest is below 1 mm).

``bench/bench_ips.py`` compares it with ``scipy.optimize.least_squares`` on
the same residuals; ``tests/ips/test_fast_paths.py`` checks it ends in a
minimum, scipy's own from the same start in 199 of 200 random fits.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import chi2

from .model import Fix, RssiObservation, regularised_cov2
from .pathloss import DEFAULT_TAG_HEIGHT_M, MIN_DISTANCE_M, Anchor
from ..geometry.walkable import Walkable

_LN10 = math.log(10.0)
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
        # per node, for the solver: (x, y, (z - tag height)², 10 n / ln 10, rssi at 1 m, 10 n)
        self._node = {i: (a.x, a.y, (a.z - tag_height) ** 2, 10.0 * a.exponent / _LN10, a.rssi_at_1m,
                          10.0 * a.exponent) for i, a in anchors.items()}

    def _chi2(self, dof: int) -> float:
        if dof not in self._chi2_cache:
            self._chi2_cache[dof] = float(chi2.ppf(1.0 - self.reject_p, dof))
        return self._chi2_cache[dof]

    def start(self, ids: list[str], rssi: list[float]) -> tuple[float, float]:
        """The RSSI-weighted centroid of the nodes (the strongest pulls hardest), within the box."""
        top = max(rssi)
        sw = sx = sy = 0.0
        for i, z in zip(ids, rssi):
            w = 10.0 ** ((z - top) / 20.0)
            a = self.anchors[i]
            sw += w
            sx += a.x * w
            sy += a.y * w
        (l0, l1), (h0, h1) = self.bounds
        return min(max(sx / sw, l0), h0), min(max(sy / sw, l1), h1)

    def _solve(self, ids: list[str], rssi: list[float]):
        """Fit one set of nodes: the position, and the residuals and Jacobian rows there."""
        x0, x1 = self.start(ids, rssi)
        problem = _PathLossProblem([self._node[i] for i in ids], rssi, self.sigma_db)
        x = problem.solve(x0, x1, self.bounds[0], self.bounds[1], self.f_scale)
        res, jac = problem.residual(*x), problem.jac(*x)
        return x, res, jac

    def locate(self, obs: RssiObservation) -> Fix | None:
        """A fix from the nodes heard in ``obs`` (None with fewer than ``min_nodes``)."""
        anchors, isfinite = self.anchors, math.isfinite
        heard = {n: float(v) for n, v in obs.rssi.items() if n in anchors and isfinite(v)}
        if len(heard) < self.min_nodes:
            return None
        ids = sorted(heard)
        rssi = [heard[i] for i in ids]
        dropped: list[str] = []
        while True:
            x, res, J = self._solve(ids, rssi)
            dof = len(ids) - 2
            cost = 0.0
            for v in res:
                cost += v * v
            if dof >= 2 and len(ids) > self.min_nodes and cost > self._chi2(dof):
                worst = max(range(len(res)), key=lambda k: abs(res[k]))
                dropped.append(ids.pop(worst))
                rssi.pop(worst)
                continue
            break
        scale = max(cost / dof, 1.0) if dof > 0 else 1.0
        a = b = d = 0.0
        for j0, j1 in J:
            a += j0 * j0
            b += j0 * j1
            d += j1 * j1
        det = a * d - b * b
        if det > 0.0 and math.isfinite(det):
            k = scale / det
            cov = regularised_cov2(d * k, -b * k, a * k, 0.01)
        else:
            cov = regularised_cov2(25.0, 0.0, 25.0, 0.01)
        px, py = x
        w = self.walkable
        if w is not None and not w.free_at_point(px, py):
            px, py = w.snap((px, py)).tolist()
        return Fix(obs.ts, px, py, cov, self.name, tuple(ids), obs.tag, {"dropped": tuple(dropped), "chi2": cost})


class _PathLossProblem:
    """The robust fit of one observation on plain floats (see the module docstring).

    ``nodes``: per node ``(x, y, (z - tag height)², 10 n / ln 10, rssi at 1 m, 10 n)``.
    """

    def __init__(self, nodes: list[tuple], rssi: list[float], sigma_db: float):
        self.nodes = nodes
        self.rssi = rssi
        self.sigma = sigma_db

    def residual(self, px: float, py: float) -> list[float]:
        """``(rssi - model(|p - node|)) / sigma`` per node."""
        s, sqrt, log10 = self.sigma, math.sqrt, math.log10
        out = []
        for (ax, ay, dz2, _, p0, tn), z in zip(self.nodes, self.rssi):
            ex, ey = px - ax, py - ay
            dist = sqrt(ex * ex + ey * ey + dz2)
            out.append((z - (p0 - tn * log10(dist if dist >= MIN_DISTANCE_M else MIN_DISTANCE_M))) / s)
        return out

    def jac(self, px: float, py: float) -> list[tuple[float, float]]:
        """Rows ``d residual / d (x, y)`` per node."""
        s = self.sigma
        out = []
        for ax, ay, dz2, k, _, _ in self.nodes:
            ex, ey = px - ax, py - ay
            d2 = ex * ex + ey * ey + dz2
            if not d2 >= _MIN_D2:
                d2 = _MIN_D2
            out.append((k * ex / d2 / s, k * ey / d2 / s))
        return out

    def cost(self, px: float, py: float, f_scale: float) -> float:
        """The ``soft_l1`` cost ``sum 2 (sqrt(1 + (r/f)²) - 1)`` at ``(px, py)``."""
        c = 0.0
        for v in self.residual(px, py):
            u = v / f_scale
            c += 2.0 * (math.sqrt(1.0 + u * u) - 1.0)
        return c

    def solve(self, x0: float, x1: float, lo, hi, f_scale: float, max_iter: int = 50, tol: float = 1e-2,
              max_step: float = 3.0) -> tuple[float, float]:
        """Damped Newton on the robust cost from ``(x0, x1)`` within the box ``lo``-``hi``.

        Gradient and Hessian of ``sum rho(r_i)`` (``rho`` soft_l1, common factor
        ``2/f²`` dropped): ``g = sum w r j``, ``H = sum w³ j jᵀ + w r ∇²r`` with
        ``w = 1/sqrt(1 + (r/f)²)``, ``j = ∇r``, ``∇²r = k/(σ d²) (I - 2 e eᵀ/d²)``.
        Where ``H`` is not positive definite the reweighted Gauss–Newton matrix
        ``sum w j jᵀ`` is used. A step is at most ``max_step`` metres; a
        coordinate on the box's edge that the step would push out stays there
        (the other takes its own Newton step). A step that does not lower the
        cost is retried with more damping; iterations stop when a step moves less than ``tol``
        (taken if it does not raise the cost).
        """
        (lo0, lo1), (hi0, hi1) = lo, hi
        nodes, rssi, s = self.nodes, self.rssi, self.sigma
        sqrt, log10 = math.sqrt, math.log10
        inv_f2 = 1.0 / (f_scale * f_scale)

        def evaluate(px, py):
            """Cost (without the factor 2), gradient and the step's matrix at ``(px, py)``, in one pass."""
            c = a = b = d = g0 = g1 = 0.0  # Newton matrix [[a, b], [b, d]] and gradient
            ga = gb = gd = 0.0  # Gauss-Newton matrix
            for (ax, ay, dz2, k, p0, tn), z in zip(nodes, rssi):
                ex, ey = px - ax, py - ay
                d2 = ex * ex + ey * ey + dz2
                if not d2 >= _MIN_D2:  # clipped distance: the residual is flat there
                    r = (z - (p0 - tn * log10(MIN_DISTANCE_M))) / s
                    c += sqrt(1.0 + r * r * inv_f2) - 1.0
                    continue
                r = (z - (p0 - tn * log10(sqrt(d2)))) / s
                u = 1.0 + r * r * inv_f2
                su = sqrt(u)
                c += su - 1.0
                w = 1.0 / su
                curv = k / (s * d2)
                j0, j1 = curv * ex, curv * ey
                w3 = w / u
                wr = w * r
                h = wr * curv  # the residual's own curvature: h (I - 2 e eᵀ / d²)
                h2 = 2.0 * h / d2
                wj0, wj1 = w3 * j0, w3 * j1
                a += wj0 * j0 + h - h2 * ex * ex
                b += wj0 * j1 - h2 * ex * ey
                d += wj1 * j1 + h - h2 * ey * ey
                wj0, wj1 = w * j0, w * j1
                ga += wj0 * j0
                gb += wj0 * j1
                gd += wj1 * j1
                g0 += wj0 * r
                g1 += wj1 * r
            if not (a > 0.0 and a * d - b * b > 0.0):
                a, b, d = ga, gb, gd
            return c, a, b, d, g0, g1

        c, a, b, d, g0, g1 = evaluate(x0, x1)
        lam = 1e-6
        for _ in range(max_iter):
            while True:
                aa, dd = a * (1.0 + lam) + 1e-12, d * (1.0 + lam) + 1e-12
                det = aa * dd - b * b
                s0, s1 = -(dd * g0 - b * g1) / det, -(aa * g1 - b * g0) / det
                # a coordinate on its bound that the step pushes out stays there; the other takes a 1-D step
                if (x0 <= lo0 and s0 < 0.0) or (x0 >= hi0 and s0 > 0.0):
                    s0, s1 = 0.0, -g1 / dd
                elif (x1 <= lo1 and s1 < 0.0) or (x1 >= hi1 and s1 > 0.0):
                    s0, s1 = -g0 / aa, 0.0
                big = max(abs(s0), abs(s1))
                if big > max_step:
                    s0, s1 = s0 * (max_step / big), s1 * (max_step / big)
                n0, n1 = x0 + s0, x1 + s1
                n0 = lo0 if n0 < lo0 else hi0 if n0 > hi0 else n0
                n1 = lo1 if n1 < lo1 else hi1 if n1 > hi1 else n1
                moved = max(abs(n0 - x0), abs(n1 - x1))
                new = evaluate(n0, n1)
                if new[0] <= c or moved < tol or lam > 1e6:  # a step below tol: converged, however it rounds
                    break
                lam = lam * 10.0 if lam >= 0.1 else 0.1
            if new[0] <= c:
                x0, x1 = n0, n1
                c, a, b, d, g0, g1 = new
                lam = max(lam / 10.0, 1e-7)
            if moved < tol:
                break
        return x0, x1
