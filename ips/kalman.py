"""A constant-velocity Kalman filter (filterpy's equations) that fuses the fixes of several positioners.

Each observation is handed to every positioner (trilateration, fingerprinting);
each fix that comes back updates the filter with its own covariance. A fix whose
Mahalanobis distance to the prediction exceeds the gate is rejected as an
outlier, unless ``reset_after`` fixes in a row were rejected (then the track
restarts there: the tag really is elsewhere). The filtered position is kept on
walkable floor: a move that would cross a wall follows the floor's walking path
instead, no farther than ``max_speed`` allows.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

from .model import Fix, Positioner, RssiObservation, regularised_cov
from ..geometry.cv_filter import LeanFilterpyCV
from ..geometry.walkable import Walkable


class KalmanFusion:
    """Tracker fusing positioner fixes with a constant-velocity model."""

    name = "kalman"

    def __init__(self, positioners: list[Positioner], *, accel_std: float = 0.5, fix_cov_scale: float = 1.0,
                 gate_p: float = 0.999, reset_after: int = 5, max_speed: float = 2.0,
                 reset_after_s: float = 30.0, walkable: Walkable | None = None):
        if not positioners:
            raise ValueError("KalmanFusion needs at least one positioner")
        self.positioners = positioners
        self.accel_std = accel_std
        self.fix_cov_scale = fix_cov_scale
        self.gate = float(chi2.ppf(gate_p, 2))
        self.reset_after = reset_after
        self.max_speed = max_speed
        self.reset_after_s = reset_after_s
        self.walkable = walkable
        self.reset()

    def reset(self) -> None:
        """Forget the track."""
        self.kf: LeanFilterpyCV | None = None
        self.ts: float | None = None
        self.rejected_in_row = 0
        self.rejected = 0

    def _start(self, fix: Fix) -> None:
        scale = self.fix_cov_scale
        self.kf = LeanFilterpyCV(fix.x, fix.y, np.asarray(fix.cov) * scale, 0.5 * scale, self.accel_std)
        self.rejected_in_row = 0

    def update(self, obs: RssiObservation) -> Fix | None:
        """Predict to ``obs.ts``, fold in every positioner's fix, return the filtered fix."""
        fixes = [f for f in (p.locate(obs) for p in self.positioners) if f is not None]
        if self.kf is not None and self.ts is not None and obs.ts - self.ts > self.reset_after_s:
            self.reset()
        if self.kf is None:
            if not fixes:
                return None
            best = min(fixes, key=lambda f: np.trace(f.cov))
            self._start(best)
            self.ts = obs.ts
            fixes = [f for f in fixes if f is not best]
        dt = max(obs.ts - self.ts, 0.0)
        before = self.kf.x[:2].copy()
        if dt > 0:
            self.kf.predict(dt)
        sources: set[str] = set()
        for fix in fixes:
            R = regularised_cov(np.asarray(fix.cov) * self.fix_cov_scale)
            innov = fix.xy - self.kf.x[:2]
            S = self.kf.P[:2, :2] + R
            if float(innov @ np.linalg.solve(S, innov)) > self.gate:
                self.rejected += 1
                self.rejected_in_row += 1
                if self.rejected_in_row >= self.reset_after * len(self.positioners):
                    self._start(fix)
                continue
            self.rejected_in_row = 0
            self.kf.update(fix.xy, R=R)
            sources.update(fix.sources)
        if self.walkable is not None:
            self._keep_on_floor(before, dt)
        self.ts = obs.ts
        return Fix(obs.ts, float(self.kf.x[0]), float(self.kf.x[1]), regularised_cov(self.kf.P[:2, :2]),
                   self.name, tuple(sorted(sources)), obs.tag, {"velocity": self.kf.x[2:].copy()})

    def _keep_on_floor(self, before: np.ndarray, dt: float) -> None:
        """Move the state back onto free floor, walking around walls, at most max_speed·dt + 3σ."""
        target = self.kf.x[:2]
        if self.walkable.segment_free(before, target):
            return
        reach = self.max_speed * dt + 3.0 * np.sqrt(np.trace(self.kf.P[:2, :2]) / 2.0)
        self.kf.x[:2] = self.walkable.walk_towards(before, target, reach)

