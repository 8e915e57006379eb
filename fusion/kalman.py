"""Kalman filters for floor tracks (constant velocity in the floor plane).

The model is :mod:`storesense.geometry.cv_filter`'s (state ``[x, y, vx, vy]``,
white-acceleration process noise of standard deviation ``accel_std``). Two
implementations of the tracker's filter interface
(:class:`~storesense.fusion.tracker.FloorFilter`), injected by a factory:

- :class:`~storesense.geometry.cv_filter.FastCV`, on plain floats: the default.
- :class:`FilterpyCV` wraps :class:`filterpy.kalman.KalmanFilter`: the reference.
  A test checks both agree.
"""

from __future__ import annotations

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

from ..geometry.cv_filter import FastCV, mahalanobis2

__all__ = ["FastCV", "FilterpyCV"]

_H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])


def _initial_P(pos_var: float, vel_var: float) -> np.ndarray:
    return np.diag([pos_var, pos_var, vel_var, vel_var])


class FilterpyCV:
    """The same model on :class:`filterpy.kalman.KalmanFilter` (reference implementation)."""

    def __init__(self, x: float, y: float, pos_var: float = 0.25, vel_var: float = 1.0, accel_std: float = 2.0):
        kf = KalmanFilter(dim_x=4, dim_z=2)
        kf.x = np.array([x, y, 0.0, 0.0])
        kf.H = _H.copy()
        kf.P = _initial_P(pos_var, vel_var)
        self.kf = kf
        self.q = accel_std**2

    @property
    def x(self) -> np.ndarray:
        """State vector."""
        return self.kf.x

    @property
    def P(self) -> np.ndarray:
        """State covariance."""
        return self.kf.P

    def position(self) -> tuple[float, float]:
        """Current position, metres."""
        x = self.kf.x
        return float(x[0]), float(x[1])

    def velocity(self) -> tuple[float, float]:
        """Current velocity, m/s."""
        x = self.kf.x
        return float(x[2]), float(x[3])

    def position_cov(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Current position covariance, m²."""
        P = self.kf.P
        return (float(P[0, 0]), float(P[0, 1])), (float(P[1, 0]), float(P[1, 1]))

    def _matrices(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        F = np.array([[1.0, 0, dt, 0], [0, 1.0, 0, dt], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
        Q = Q_discrete_white_noise(dim=2, dt=dt, var=self.q, block_size=2, order_by_dim=False)
        return F, Q

    def predicted(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """State and covariance ``dt`` seconds ahead, without changing the filter."""
        if dt <= 0:
            return self.kf.x, self.kf.P
        F, Q = self._matrices(dt)
        return F @ self.kf.x, F @ self.kf.P @ F.T + Q

    def predicted_position(self, dt: float, dt4: float | None = None
                           ) -> tuple[float, float, float, float, float, float]:
        """Position ``dt`` seconds ahead and its covariance: x, y, var x, cov xy, cov yx, var y.

        The position block of ``F P Fᵀ + Q`` in closed form (what the tracker
        costs a frame with); ``dt4`` is ``dt**4`` when the caller has it.
        """
        x = self.kf.x.tolist()
        (a00, a01, b00, b01), (a10, a11, b10, b11), (_, _, d00, d01), (_, _, d10, d11) = self.kf.P.tolist()
        if dt <= 0:
            return x[0], x[1], a00, a01, a10, a11
        s4, dd = self.q * (dt**4 if dt4 is None else dt4) / 4, dt * dt
        return (x[0] + dt * x[2], x[1] + dt * x[3],
                a00 + dt * (b00 + b00) + dd * d00 + s4, a01 + dt * (b01 + b10) + dd * d01,
                a10 + dt * (b10 + b01) + dd * d10, a11 + dt * (b11 + b11) + dd * d11 + s4)

    def mahalanobis2(self, dt: float, z, R) -> float:
        """Squared Mahalanobis distance of measurement ``z`` (covariance ``R``) from the prediction ``dt`` ahead."""
        x, P = self.predicted(dt)
        S = P[:2, :2] + R
        d = z - x[:2]
        return mahalanobis2(d[0], d[1], S[0, 0], S[0, 1], S[1, 0], S[1, 1])

    def predict(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds."""
        if dt > 0:
            F, Q = self._matrices(dt)
            self.kf.predict(F=F, Q=Q)

    def update(self, z, R) -> None:
        """Correct with a floor position ``z`` whose covariance is ``R`` (arrays or nested sequences)."""
        self.kf.update(np.asarray(z, dtype=float), R=np.asarray(R, dtype=float))
