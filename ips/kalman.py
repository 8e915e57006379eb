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

import math

import numpy as np
from scipy.stats import chi2

from .model import Fix, Positioner, RssiObservation, regularised_cov2
from ..geometry.cv_filter import FastCV, mahalanobis2
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
        self.kf: FastCV | None = None
        self.ts: float | None = None
        self.rejected_in_row = 0
        self.rejected = 0

    def _start(self, fix: Fix) -> None:
        scale = self.fix_cov_scale
        c = fix.cov
        kf = self.kf = FastCV(fix.x, fix.y, 0.0, 0.5 * scale, self.accel_std)
        kf.a00, kf.a01, kf.a11 = float(c[0, 0]) * scale, float(c[0, 1]) * scale, float(c[1, 1]) * scale
        self.rejected_in_row = 0

    def update(self, obs: RssiObservation) -> Fix | None:
        """Predict to ``obs.ts``, fold in every positioner's fix, return the filtered fix."""
        fixes = [f for f in (p.locate(obs) for p in self.positioners) if f is not None]
        if self.kf is not None and self.ts is not None and obs.ts - self.ts > self.reset_after_s:
            self.reset()
        if self.kf is None:
            if not fixes:
                return None
            best = min(fixes, key=lambda f: float(f.cov[0, 0] + f.cov[1, 1]))
            self._start(best)
            self.ts = obs.ts
            fixes = [f for f in fixes if f is not best]
        kf = self.kf
        dt = max(obs.ts - self.ts, 0.0)
        before = (kf.px, kf.py)
        if dt > 0:
            kf.predict(dt)
        sources: set[str] = set()
        scale = self.fix_cov_scale
        for fix in fixes:
            (c00, c01), (_, c11) = fix.cov.tolist()
            R = regularised_cov2(c00 * scale, c01 * scale, c11 * scale).tolist()
            (r00, r01), (r10, r11) = R
            if mahalanobis2(fix.x - kf.px, fix.y - kf.py, kf.a00 + r00, kf.a01 + r01, kf.a01 + r10,
                            kf.a11 + r11) > self.gate:
                self.rejected += 1
                self.rejected_in_row += 1
                if self.rejected_in_row >= self.reset_after * len(self.positioners):
                    self._start(fix)
                    kf = self.kf
                continue
            self.rejected_in_row = 0
            kf.update((fix.x, fix.y), R)
            sources.update(fix.sources)
        if self.walkable is not None:
            self._keep_on_floor(before, dt)
        self.ts = obs.ts
        return Fix(obs.ts, kf.px, kf.py, regularised_cov2(kf.a00, kf.a01, kf.a11), self.name,
                   tuple(sorted(sources)), obs.tag, {"velocity": np.array([kf.vx, kf.vy])})

    def _keep_on_floor(self, before: tuple[float, float], dt: float) -> None:
        """Move the state back onto free floor, walking around walls, at most max_speed·dt + 3σ."""
        kf = self.kf
        target = (kf.px, kf.py)
        if self.walkable.segment_free(before, target):
            return
        reach = self.max_speed * dt + 3.0 * math.sqrt(max(kf.a00 + kf.a11, 0.0) / 2.0)
        kf.px, kf.py = self.walkable.walk_towards(np.array(before), np.array(target), reach).tolist()


class TrackerPositioner:
    """A tracker's fixes as a positioner's, covariance scaled by ``cov_scale``: so a Kalman fusion can take
    the particle filter's output next to the single-shot fixes (the ``fused`` method of :mod:`.setup`)."""

    def __init__(self, tracker, cov_scale: float = 1.0):
        self.tracker = tracker
        self.cov_scale = cov_scale
        self.name = tracker.name

    def locate(self, obs: RssiObservation) -> Fix | None:
        """The tracker's fix after ``obs`` (the tracker advances: call once per observation)."""
        f = self.tracker.update(obs)
        if f is None:
            return None
        return Fix(f.ts, f.x, f.y, np.asarray(f.cov) * self.cov_scale, f.method, f.sources, f.tag)
