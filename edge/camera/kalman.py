"""Box filters for the camera tracker: one object holds the filters of all of a camera's tracks.

The tracker talks to its filter through :class:`BoxFilter` only, and gets it from a
factory (``CameraTracker(filter_factory=...)``, as norfair takes a ``filter_factory``),
so another motion model can be swapped in without touching the association code.

Two implementations of the same model are provided: the constant-velocity Kalman filter
of DeepSORT/ByteTrack on (centre x, centre y, aspect w/h, height) with noise proportional
to the box height:

- :class:`ConstantVelocityFilter`: all tracks at once in vectorised numpy (the default:
  one predict is a handful of array operations however many tracks there are);
- :class:`FilterpyFilter`: one ``filterpy.kalman.KalmanFilter`` per track, the reference
  the vectorised one is tested against (same numbers to float precision), and a starting
  point for filterpy's other filters.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

#: Default noise weights (relative to box height) of ByteTrack's Kalman filter.
STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
_DIM_X, _DIM_Z = 8, 4
_F = np.eye(_DIM_X)
_F[:4, 4:] = np.eye(4)
_H = np.eye(_DIM_Z, _DIM_X)


@runtime_checkable
class BoxFilter(Protocol):
    """The filters of a set of tracks; row ``i`` is track ``i`` in the order tracks were added.

    Boxes are ``x1, y1, x2, y2`` pixel arrays (N×4).
    """

    def __len__(self) -> int:
        """Number of tracks held."""

    def add(self, boxes: np.ndarray) -> None:
        """Start one track per box, appended after the existing rows."""

    def predict(self, steps: int = 1) -> None:
        """Advance every track by ``steps`` frames."""

    def update(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """Correct the tracks at ``rows`` with the measured ``boxes`` (same length)."""

    def boxes(self) -> np.ndarray:
        """Current box estimate of every track (N×4)."""

    def keep(self, mask: np.ndarray) -> None:
        """Drop the tracks where the boolean ``mask`` is False (remaining rows keep their order)."""


#: What ``CameraTracker(filter_factory=...)`` takes: a callable giving an empty :class:`BoxFilter`.
FilterFactory = Callable[[], BoxFilter]


#: ``[x1, y1, x2, y2] @ _TO_CXCYWH`` gives centre x, centre y, width, height.
_TO_CXCYWH = np.array([[0.5, 0, -1, 0], [0, 0.5, 0, -1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]])
#: ``[cx, cy, w, h] @ _TO_XYXY`` gives x1, y1, x2, y2.
_TO_XYXY = np.linalg.inv(_TO_CXCYWH)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """Boxes as centre x, centre y, aspect ratio (w/h), height."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) @ _TO_CXCYWH
    out[:, 2] /= np.maximum(out[:, 3], 1e-9)
    return out


def xyah_to_xyxy(state: np.ndarray) -> np.ndarray:
    """Centre x, centre y, aspect, height (first four columns) to ``x1, y1, x2, y2``."""
    s = np.array(np.atleast_2d(state)[:, :4], dtype=np.float64)
    s[:, 2] *= s[:, 3]
    return s @ _TO_XYXY


class _NoiseModel:
    """Height-proportional noise of the DeepSORT/ByteTrack box filter, weights precomputed.

    Standard deviations are ``std_position * h`` for the position terms and
    ``std_velocity * h`` for the velocity terms; the aspect ratio gets small fixed values.
    Methods take heights ``h`` (N) and return variances (per coordinate cx, cy, a, h).
    """

    def __init__(self, std_position: float, std_velocity: float) -> None:
        p, v = std_position, std_velocity
        # rows: position, velocity; shaped to broadcast against (2, N, 4)
        self.process_w = np.array([[p, p, 0, p], [v, v, 0, v]])[:, None, :]
        self.process_c = np.array([[0, 0, 1e-2, 0], [0, 0, 1e-5, 0]])[:, None, :]
        self.initial_w = self.process_w * np.array([2.0, 10.0])[:, None, None]
        self.meas_w = np.array([p, p, 0, p])
        self.meas_c = np.array([0, 0, 1e-1, 0])

    def process(self, h: np.ndarray) -> np.ndarray:
        """Process noise variances, 2×N×4: positions then velocities."""
        std = np.abs(h)[None, :, None] * self.process_w + self.process_c
        return std * std

    def initial(self, h: np.ndarray) -> np.ndarray:
        """Initial state variances, 2×N×4 (twice / ten times the process standard deviations)."""
        std = np.abs(h)[None, :, None] * self.initial_w + self.process_c
        return std * std

    def measurement(self, h: np.ndarray) -> np.ndarray:
        """Measurement noise variances, N×4."""
        std = np.abs(h)[:, None] * self.meas_w + self.meas_c
        return std * std


#: Rows of ``ConstantVelocityFilter.state``, ordered so that each step touches neighbours:
#: (position, velocity), (P_pv, P_pp) for the gain, (P_pp, P_vv) for the process noise.
_POS, _VEL, _PPV, _PPP, _PVV = range(5)
#: One predict step on those rows: F x and, for each coordinate's 2×2 covariance block,
#: F P F' (before adding the process noise).
_PREDICT = np.array([[1, 1, 0, 0, 0],     # pos + vel
                     [0, 1, 0, 0, 0],     # vel
                     [0, 0, 1, 0, 1],     # P_pv + P_vv
                     [0, 0, 2, 1, 1],     # P_pp + 2 P_pv + P_vv
                     [0, 0, 0, 0, 1]],    # P_vv
                    dtype=np.float64)


class ConstantVelocityFilter:
    """Constant-velocity Kalman filter on (cx, cy, a, h) for all tracks at once (vectorised numpy).

    ``std_position``/``std_velocity``: noise standard deviations as fractions of the box height.

    With diagonal process and measurement noise, a diagonal initial covariance and
    ``F = [[I, I], [0, I]]``, ``H = [I, 0]``, the 8×8 covariance stays made of four
    independent 2×2 blocks (each coordinate with its own velocity). The filter keeps just
    those blocks, so predict and update are a few element-wise operations on one 5×N×4
    array ``state`` (position, velocity, P_pv, P_pp, P_vv); the result is the full
    Kalman filter's, exactly (:meth:`covariance` rebuilds the 8×8 matrices; the tests
    compare with filterpy).
    """

    def __init__(self, std_position: float = STD_POSITION, std_velocity: float = STD_VELOCITY) -> None:
        self.std_position = std_position
        self.std_velocity = std_velocity
        self.noise = _NoiseModel(std_position, std_velocity)
        self.state = np.zeros((5, 0, 4))

    def __len__(self) -> int:
        return self.state.shape[1]

    @property
    def x(self) -> np.ndarray:
        """State vectors (N×8): cx, cy, a, h and their rates per frame."""
        return np.concatenate([self.state[_POS], self.state[_VEL]], axis=1)

    def covariance(self) -> np.ndarray:
        """The full N×8×8 state covariances."""
        P = np.zeros((len(self), _DIM_X, _DIM_X))
        i = np.arange(4)
        P[:, i, i] = self.state[_PPP]
        P[:, i, i + 4] = P[:, i + 4, i] = self.state[_PPV]
        P[:, i + 4, i + 4] = self.state[_PVV]
        return P

    def add(self, boxes: np.ndarray) -> None:
        """Start one track per box: position from the box, zero velocity, height-scaled uncertainty."""
        z = xyxy_to_xyah(boxes)
        if len(z) == 0:
            return
        block = np.zeros((5, len(z), 4))
        block[_POS] = z
        block[_PPP:_PVV + 1] = self.noise.initial(z[:, 3])   # P_pp, P_vv
        self.state = np.concatenate([self.state, block], axis=1)

    def predict(self, steps: int = 1) -> None:
        """x <- F x, P <- F P F' + Q, ``steps`` times, Q scaled by each track's height."""
        n = len(self)
        if n == 0:
            return
        for _ in range(max(1, int(steps))):
            q = self.noise.process(self.state[_POS, :, 3])
            self.state = (_PREDICT @ self.state.reshape(5, -1)).reshape(5, n, 4)
            self.state[_PPP:_PVV + 1] += q

    def update(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """Kalman correction of the given rows with H = [I 0] and height-scaled R."""
        if len(rows) == 0:
            return
        b = self.state[:, rows]
        innovation = xyxy_to_xyah(boxes) - b[_POS]
        gain = b[_PPV:_PPP + 1] / (b[_PPP] + self.noise.measurement(b[_POS, :, 3]))   # (k_vel, k_pos)
        b[_POS:_VEL + 1] += gain[::-1] * innovation
        b[_PVV] -= gain[0] * b[_PPV]
        b[_PPV:_PPP + 1] *= 1.0 - gain[1]
        self.state[:, rows] = b

    def boxes(self) -> np.ndarray:
        """Current estimates as ``x1, y1, x2, y2``."""
        return xyah_to_xyxy(self.state[_POS])

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where ``mask`` is False."""
        self.state = self.state[:, np.asarray(mask, dtype=bool)]


class FilterpyFilter:
    """The same model as :class:`ConstantVelocityFilter` with one ``filterpy`` KalmanFilter per track."""

    def __init__(self, std_position: float = STD_POSITION, std_velocity: float = STD_VELOCITY) -> None:
        self.std_position = std_position
        self.std_velocity = std_velocity
        self.noise = _NoiseModel(std_position, std_velocity)
        self.filters: list = []

    def __len__(self) -> int:
        return len(self.filters)

    def add(self, boxes: np.ndarray) -> None:
        """One ``filterpy.kalman.KalmanFilter`` per box."""
        from filterpy.kalman import KalmanFilter

        z = xyxy_to_xyah(boxes)
        initial = self.noise.initial(z[:, 3])
        for zi, p_pos, p_vel in zip(z, initial[0], initial[1]):
            kf = KalmanFilter(dim_x=_DIM_X, dim_z=_DIM_Z)
            kf.F = _F.copy()
            kf.H = _H.copy()
            kf.x = np.r_[zi, np.zeros(4)].reshape(-1, 1)
            kf.P = np.diag(np.r_[p_pos, p_vel])
            self.filters.append(kf)

    def predict(self, steps: int = 1) -> None:
        """``KalmanFilter.predict`` per track with Q set from its current height."""
        for _ in range(max(1, int(steps))):
            for kf in self.filters:
                kf.predict(Q=np.diag(self.noise.process(kf.x[3]).reshape(-1)))

    def update(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """``KalmanFilter.update`` per matched track with R set from its predicted height."""
        z = xyxy_to_xyah(boxes)
        for row, zi in zip(np.asarray(rows, dtype=np.int64).reshape(-1), z):
            kf = self.filters[row]
            kf.update(zi.reshape(-1, 1), R=np.diag(self.noise.measurement(kf.x[3])[0]))

    def boxes(self) -> np.ndarray:
        """Current estimates as ``x1, y1, x2, y2``."""
        if not self.filters:
            return np.zeros((0, 4))
        return xyah_to_xyxy(np.stack([kf.x[:, 0] for kf in self.filters]))

    def keep(self, mask: np.ndarray) -> None:
        """Drop the tracks where ``mask`` is False."""
        self.filters = [kf for kf, k in zip(self.filters, np.asarray(mask, dtype=bool)) if k]
