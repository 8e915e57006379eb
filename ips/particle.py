"""A particle filter on the walkable floor with a radio-map (or path-loss) likelihood.

Each particle is a floor position. Between observations particles take a random
walk (``step_std`` metres per √second); a particle whose move would cross a
wall, shelf or the outline is dropped, so the cloud flows through doors and
never through walls. Each observation weighs particles by a Student-t
likelihood of the RSSI each node heard against the :class:`SignalField`'s
expectation at the particle, tempered by ``beta`` (consecutive BLE samples are
correlated, so treating them as independent would make the filter
over-confident). Resampling is systematic when the effective sample size falls
below half. The fix is the weighted mean and the weighted covariance; the
reported position moves from the previous one at most ``max_speed`` · dt plus
``jump_sigmas`` standard deviations, along the floor's walking path when a
straight move would cross a wall (a posterior that splits between two rooms
does not make the fix teleport).

A seeded generator makes runs reproducible.
"""

from __future__ import annotations

import numpy as np

from .model import Fix, RssiObservation, regularised_cov
from .radiomap import SignalField


class ParticleTracker:
    """Particle filter tracker for one tag."""

    name = "particle"

    def __init__(self, field: SignalField, *, n_particles: int = 1000, step_std: float = 0.5, beta: float = 0.5,
                 nu: float = 4.0, max_dt: float = 5.0, reset_after_s: float = 30.0, max_speed: float = 2.0,
                 min_nodes: int = 2, jump_sigmas: float = 1.0, seed: int = 0):
        self.field = field
        self.walkable = field.walkable
        self.n = n_particles
        self.step_std = step_std
        self.beta = beta
        self.nu = nu
        self.max_dt = max_dt
        self.reset_after_s = reset_after_s
        self.max_speed = max_speed
        self.min_nodes = min_nodes
        self.jump_sigmas = jump_sigmas
        self.seed = seed
        self._col = {n: j for j, n in enumerate(field.nodes)}
        self.reset()

    def reset(self) -> None:
        """Forget the track: particles spread uniformly over the free floor at the next update."""
        self.rng = np.random.default_rng(self.seed)
        self.particles: np.ndarray | None = None
        self.weights = np.full(self.n, 1.0 / self.n)
        self.ts: float | None = None
        self.last_xy: np.ndarray | None = None

    def _spread(self) -> np.ndarray:
        centres = self.walkable.free_centres
        pick = self.rng.integers(0, len(centres), self.n)
        half = self.walkable.resolution / 2.0
        return centres[pick] + self.rng.uniform(-half, half, (self.n, 2))

    def _move(self, dt: float) -> None:
        step = self.rng.normal(0.0, self.step_std * np.sqrt(dt), (self.n, 2))
        new = self.particles + step
        ok = self.walkable.segments_free(self.particles, new)
        self.particles = np.where(ok[:, None], new, self.particles)
        self.weights = np.where(ok, self.weights, 0.0)

    def _weigh(self, heard: dict[str, float]) -> None:
        cols = [self._col[n] for n in heard]
        z = np.array(list(heard.values()))
        mu = self.field.expected(self.particles)[:, cols]
        e = (z - mu) / self.field.sigma_db[cols]
        loglik = (-(self.nu + 1.0) / 2.0 * np.log1p(e ** 2 / self.nu)).sum(axis=1) * self.beta
        self.weights = self.weights * np.exp(loglik - loglik.max())

    def _resample(self) -> None:
        cum = np.cumsum(self.weights)
        cum[-1] = 1.0
        idx = np.searchsorted(cum, (self.rng.random() + np.arange(self.n)) / self.n)
        self.particles = self.particles[idx]
        self.weights = np.full(self.n, 1.0 / self.n)

    def update(self, obs: RssiObservation) -> Fix | None:
        """Move the particles to ``obs.ts``, weigh them by the RSSI heard, and return the fix."""
        heard = obs.usable(self._col)
        if self.ts is not None and obs.ts - self.ts > self.reset_after_s:
            self.reset()
        if self.particles is None:
            if len(heard) < self.min_nodes:
                return None
            self.particles = self._spread()
        elif self.ts is not None and obs.ts > self.ts:
            dt = min(obs.ts - self.ts, self.max_dt)
            self._move(dt)
        if len(heard) >= 1:
            self._weigh(heard)
        total = self.weights.sum()
        if not np.isfinite(total) or total <= 0.0:
            # every particle crossed a wall or contradicts the signal: start afresh
            self.particles = self._spread()
            self.weights = np.full(self.n, 1.0 / self.n)
            if heard:
                self._weigh(heard)
            total = self.weights.sum()
        self.weights /= total
        mean = self.weights @ self.particles
        d = self.particles - mean
        cov = (self.weights[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0)
        if 1.0 / (self.weights ** 2).sum() < self.n / 2:
            self._resample()
        dt = 0.0 if self.ts is None else max(obs.ts - self.ts, 0.0)
        if self.last_xy is None:
            xy = self.walkable.snap(mean)
        else:
            reach = self.max_speed * dt + self.jump_sigmas * np.sqrt(np.trace(cov) / 2.0)
            xy = self.walkable.walk_towards(self.last_xy, mean, reach)
        self.last_xy = xy
        self.ts = obs.ts
        return Fix(obs.ts, float(xy[0]), float(xy[1]), regularised_cov(cov, 0.01), self.name,
                   tuple(sorted(heard)), obs.tag)
