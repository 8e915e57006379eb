"""Kalman filters for floor tracks (constant velocity in the floor plane).

State ``[x, y, vx, vy]`` in metres and m/s, measurement a floor position with
its own 2×2 covariance (camera floor points, BLE fixes). Process noise is white
acceleration with standard deviation ``accel_std`` (m/s²), as filterpy's
``Q_discrete_white_noise(dim=2, block_size=2, order_by_dim=False)``.

Two implementations with one interface (``x``, ``P``, ``predict(dt)``,
``update(z, R)``, ``predicted(dt)``), injected into the tracker by a factory:

- :class:`FilterpyCV` wraps :class:`filterpy.kalman.KalmanFilter`: the reference.
- :class:`FastCV` does the same algebra written out for this model's block
  structure on plain Python floats (no numpy call per predict or update); about
  10× cheaper per update than numpy on 4×4 arrays, which is what lets one core
  fuse tens of thousands of observations per second. A test checks both agree.
"""

from __future__ import annotations

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter

_H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])


def _initial_P(pos_var: float, vel_var: float) -> np.ndarray:
    return np.diag([pos_var, pos_var, vel_var, vel_var])


class FastCV:
    """Constant-velocity Kalman filter, closed-form for the block structure, on plain floats.

    The covariance ``[[A, B], [Bᵀ, D]]`` (2×2 blocks: position, position-velocity,
    velocity) is kept as its ten distinct entries (it stays exactly symmetric),
    so a predict or an update is a few dozen float operations and no numpy call.
    ``x`` and ``P`` give the state and covariance as arrays (copies).
    """

    __slots__ = ("px", "py", "vx", "vy", "a00", "a01", "a11", "b00", "b01", "b10", "b11", "d00", "d01", "d11", "q")

    def __init__(self, x: float, y: float, pos_var: float = 0.25, vel_var: float = 1.0, accel_std: float = 2.0):
        self.px, self.py, self.vx, self.vy = float(x), float(y), 0.0, 0.0
        self.a00 = self.a11 = float(pos_var)
        self.d00 = self.d11 = float(vel_var)
        self.a01 = self.b00 = self.b01 = self.b10 = self.b11 = self.d01 = 0.0
        self.q = accel_std**2

    @property
    def x(self) -> np.ndarray:
        """State vector ``[x, y, vx, vy]`` (a copy)."""
        return np.array([self.px, self.py, self.vx, self.vy])

    @property
    def P(self) -> np.ndarray:
        """State covariance (a copy)."""
        return np.array([[self.a00, self.a01, self.b00, self.b01], [self.a01, self.a11, self.b10, self.b11],
                         [self.b00, self.b10, self.d00, self.d01], [self.b01, self.b11, self.d01, self.d11]])

    def _state(self) -> tuple:
        return (self.px, self.py, self.vx, self.vy, self.a00, self.a01, self.a11, self.b00, self.b01, self.b10,
                self.b11, self.d00, self.d01, self.d11)

    def _ahead(self, dt: float) -> tuple:
        """State and covariance entries ``dt`` > 0 seconds ahead (the order of ``_state``)."""
        q = self.q
        s4, s3, s2 = q * dt**4 / 4, q * dt**3 / 2, q * dt * dt
        dd = dt * dt
        b01, b10, d00, d01, d11 = self.b01, self.b10, self.d00, self.d01, self.d11
        return (self.px + dt * self.vx, self.py + dt * self.vy, self.vx, self.vy,
                self.a00 + dt * (self.b00 + self.b00) + dd * d00 + s4,
                self.a01 + dt * (b01 + b10) + dd * d01,
                self.a11 + dt * (self.b11 + self.b11) + dd * d11 + s4,
                self.b00 + dt * d00 + s3, b01 + dt * d01, b10 + dt * d01, self.b11 + dt * d11 + s3,
                d00 + s2, d01, d11 + s2)

    def predicted(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """State and covariance ``dt`` seconds ahead, without changing the filter."""
        if dt <= 0:
            return self.x, self.P
        (px, py, vx, vy, a00, a01, a11, b00, b01, b10, b11, d00, d01, d11) = self._ahead(dt)
        return (np.array([px, py, vx, vy]),
                np.array([[a00, a01, b00, b01], [a01, a11, b10, b11], [b00, b10, d00, d01], [b01, b11, d01, d11]]))

    def predicted_position(self, dt: float) -> tuple[float, float, float, float, float]:
        """Position ``dt`` seconds ahead and its covariance: x, y, var x, cov xy, var y."""
        if dt <= 0:
            return self.px, self.py, self.a00, self.a01, self.a11
        q = self.q
        s4, dd = q * dt**4 / 4, dt * dt
        return (self.px + dt * self.vx, self.py + dt * self.vy,
                self.a00 + dt * (self.b00 + self.b00) + dd * self.d00 + s4,
                self.a01 + dt * (self.b01 + self.b10) + dd * self.d01,
                self.a11 + dt * (self.b11 + self.b11) + dd * self.d11 + s4)

    def predict(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds."""
        if dt > 0:
            (self.px, self.py, self.vx, self.vy, self.a00, self.a01, self.a11, self.b00, self.b01, self.b10,
             self.b11, self.d00, self.d01, self.d11) = self._ahead(dt)

    def update(self, z, R) -> None:
        """Correct with a floor position ``z`` whose covariance is ``R`` (arrays or nested sequences)."""
        (r00, r01), (r10, r11) = R
        a00, a01, a11 = self.a00, self.a01, self.a11
        b00, b01, b10, b11 = self.b00, self.b01, self.b10, self.b11
        d00, d01, d11 = self.d00, self.d01, self.d11
        a, b, c, d = a00 + float(r00), a01 + float(r01), a01 + float(r10), a11 + float(r11)
        det = a * d - b * c
        i00, i01, i10, i11 = d / det, -b / det, -c / det, a / det  # S⁻¹
        # K = P[:, :2] S⁻¹, rows: x, y, vx, vy
        k00, k01 = a00 * i00 + a01 * i10, a00 * i01 + a01 * i11
        k10, k11 = a01 * i00 + a11 * i10, a01 * i01 + a11 * i11
        k20, k21 = b00 * i00 + b10 * i10, b00 * i01 + b10 * i11
        k30, k31 = b01 * i00 + b11 * i10, b01 * i01 + b11 * i11
        ex, ey = float(z[0]) - self.px, float(z[1]) - self.py
        self.px += k00 * ex + k01 * ey
        self.py += k10 * ex + k11 * ey
        self.vx += k20 * ex + k21 * ey
        self.vy += k30 * ex + k31 * ey
        # P - K P[:2, :], symmetrised; P[:2, :] rows: (a00 a01 b00 b01), (a01 a11 b10 b11)
        self.a00 = a00 - (k00 * a00 + k01 * a01)
        self.a01 = ((a01 - (k00 * a01 + k01 * a11)) + (a01 - (k10 * a00 + k11 * a01))) / 2
        self.a11 = a11 - (k10 * a01 + k11 * a11)
        self.b00 = ((b00 - (k00 * b00 + k01 * b10)) + (b00 - (k20 * a00 + k21 * a01))) / 2
        self.b01 = ((b01 - (k00 * b01 + k01 * b11)) + (b01 - (k30 * a00 + k31 * a01))) / 2
        self.b10 = ((b10 - (k10 * b00 + k11 * b10)) + (b10 - (k20 * a01 + k21 * a11))) / 2
        self.b11 = ((b11 - (k10 * b01 + k11 * b11)) + (b11 - (k30 * a01 + k31 * a11))) / 2
        self.d00 = d00 - (k20 * b00 + k21 * b10)
        self.d01 = ((d01 - (k20 * b01 + k21 * b11)) + (d01 - (k30 * b00 + k31 * b10))) / 2
        self.d11 = d11 - (k30 * b01 + k31 * b11)


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

    def predict(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds."""
        if dt > 0:
            F, Q = self._matrices(dt)
            self.kf.predict(F=F, Q=Q)

    def update(self, z: np.ndarray, R: np.ndarray) -> None:
        """Correct with a floor position ``z`` whose covariance is ``R``."""
        self.kf.update(np.asarray(z, dtype=float), R=np.asarray(R, dtype=float))
