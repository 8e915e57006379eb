"""Constant-velocity Kalman filters in the floor plane, shared by fusion and ips.

State ``[x, y, vx, vy]`` in metres and m/s, measurement a floor position with
its own 2×2 covariance (camera floor points, BLE fixes). Process noise is white
acceleration of variance ``q = accel_std²`` (m²/s⁴), as filterpy's
``Q_discrete_white_noise(dim=2, block_size=2, order_by_dim=False)``.

One model, two arithmetics, because each caller's numbers are pinned bit for bit:

- :class:`FastCV` (the fusion floor tracker): the algebra written out for the
  model's block structure on plain Python floats, covariance kept exactly
  symmetric, update ``P - K H P``. No numpy call per predict or update: about
  10× cheaper than numpy on 4×4 arrays, which lets one core fuse tens of
  thousands of observations per second.
- :class:`LeanFilterpyCV` (ips): filterpy's ``KalmanFilter`` equations
  (``F P Fᵀ + Q``, Joseph-form update) with the same numpy calls in the same
  order, hence filterpy's bits, without its per-call bookkeeping.

They cannot be one implementation without changing numbers: the Joseph form
on BLAS products and ``np.linalg.inv`` does not round as the closed form on
floats does, the covariance it gives is not exactly symmetric (so it does not
fit the closed form's ten entries), and the two callers start and advance the
velocity variance differently. Both take ``predict(dt)`` and ``update(z, R)``;
:class:`FastCV` adds the queries the floor tracker costs with (see
:class:`storesense.fusion.tracker.FloorFilter`).
"""

from __future__ import annotations

import numpy as np


def mahalanobis2(d0: float, d1: float, s00: float, s01: float, s10: float, s11: float) -> float:
    """Squared Mahalanobis distance of the offset ``(d0, d1)`` under the 2×2 covariance ``S``; inf if ``S`` is singular."""
    det = s00 * s11 - s01 * s10
    if det <= 0:
        return float("inf")
    return float((s11 * d0 * d0 - (s01 + s10) * d0 * d1 + s00 * d1 * d1) / det)


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

    def position(self) -> tuple[float, float]:
        """Current position, metres."""
        return self.px, self.py

    def velocity(self) -> tuple[float, float]:
        """Current velocity, m/s."""
        return self.vx, self.vy

    def position_cov(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Current position covariance, m²."""
        return (self.a00, self.a01), (self.a01, self.a11)

    def _ahead(self, dt: float) -> tuple:
        """State and covariance entries ``dt`` > 0 seconds ahead (the order of ``__slots__``)."""
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

    def predicted_position(self, dt: float, dt4: float | None = None
                           ) -> tuple[float, float, float, float, float, float]:
        """Position ``dt`` seconds ahead and its covariance: x, y, var x, cov xy, cov yx, var y.

        ``dt4`` is ``dt**4`` when the caller has it (the tracker takes numpy's
        power of all its tracks' ``dt`` at once, as its vectorised path does);
        otherwise Python's power is used.
        """
        if dt <= 0:
            return self.px, self.py, self.a00, self.a01, self.a01, self.a11
        s4, dd = self.q * (dt**4 if dt4 is None else dt4) / 4, dt * dt
        a01 = self.a01 + dt * (self.b01 + self.b10) + dd * self.d01
        return (self.px + dt * self.vx, self.py + dt * self.vy,
                self.a00 + dt * (self.b00 + self.b00) + dd * self.d00 + s4, a01, a01,
                self.a11 + dt * (self.b11 + self.b11) + dd * self.d11 + s4)

    def mahalanobis2(self, dt: float, z, R) -> float:
        """Squared Mahalanobis distance of measurement ``z`` (covariance ``R``) from the prediction ``dt`` ahead."""
        x0, x1, p00, p01, p10, p11 = self.predicted_position(dt)
        (r00, r01), (r10, r11) = R
        return mahalanobis2(float(z[0]) - x0, float(z[1]) - x1,
                            p00 + float(r00), p01 + float(r01), p10 + float(r10), p11 + float(r11))

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


class LeanFilterpyCV:
    """filterpy's ``KalmanFilter`` predict and update for this model, lean (``H`` picks the position).

    The same numpy calls on the same operands, in the same order, as
    ``filterpy.kalman.KalmanFilter`` (so the same bits; ``H`` as the ``[I 0]``
    matrix, ``Q`` as ``Q_discrete_white_noise``), without its per-call
    bookkeeping: prior and posterior copies, the measurement's deep copy,
    likelihood caches. ``x`` and ``P`` are the live arrays (callers may move
    ``x``).
    """

    H = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    HT = H.T
    I4 = np.eye(4)

    def __init__(self, x: float, y: float, pos_cov, vel_var: float, accel_std: float):
        """Start at ``(x, y)`` with position covariance ``pos_cov`` (2×2), velocity 0 of variance ``vel_var``."""
        self.x = np.array([x, y, 0.0, 0.0])
        self.P = np.zeros((4, 4))
        self.P[:2, :2] = pos_cov
        self.P[2, 2] = self.P[3, 3] = vel_var
        self.q = accel_std ** 2

    def predict(self, dt: float) -> None:
        """``x = F x``, ``P = F P Fᵀ + Q`` for a step of ``dt`` seconds."""
        F = np.array([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
        q = self.q
        g00, g01, g11 = dt ** 4 / 4 * q, dt ** 3 / 2 * q, dt ** 2 * q
        Q = np.array([[g00, 0.0, g01, 0.0], [0.0, g00, 0.0, g01], [g01, 0.0, g11, 0.0], [0.0, g01, 0.0, g11]])
        self.x = np.dot(F, self.x)
        self.P = 1.0 * np.dot(np.dot(F, self.P), F.T) + Q

    def update(self, z, R: np.ndarray) -> None:
        """Correct with position ``z`` of covariance ``R`` (Joseph form, as filterpy)."""
        H = self.H
        y = np.asarray(z, dtype=float).reshape(2) - np.dot(H, self.x)
        PHT = np.dot(self.P, self.HT)
        S = np.dot(H, PHT) + R
        K = np.dot(PHT, np.linalg.inv(S))
        self.x = self.x + np.dot(K, y)
        I_KH = self.I4 - np.dot(K, H)
        self.P = np.dot(np.dot(I_KH, self.P), I_KH.T) + np.dot(np.dot(K, R), K.T)
