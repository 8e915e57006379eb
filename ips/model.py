"""The shared vocabulary of indoor positioning: observations, fixes and the two interfaces.

An :class:`RssiObservation` is what one tag looks like to the receivers at one
moment: the RSSI (dBm) each node heard. A :class:`Fix` is a position on the floor
with its 2x2 covariance (m²), so the fusion node can weigh it against cameras.

Two algorithm families, one interface each:

:class:`Positioner`
    single-shot: one observation in, one fix out (trilateration, fingerprinting).
:class:`Tracker`
    stateful, one per tag: a time series of observations in, a filtered fix out
    (the Kalman fusion of positioners, the particle filter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class RssiObservation:
    """RSSI of one tag as heard by several receiver nodes at time ``ts`` (seconds)."""

    ts: float
    rssi: Mapping[str, float]
    tag: str = ""

    def usable(self, nodes: Mapping[str, object]) -> dict[str, float]:
        """The readings from nodes in ``nodes`` that are finite numbers."""
        return {n: float(v) for n, v in self.rssi.items() if n in nodes and np.isfinite(v)}


@dataclass(frozen=True)
class Fix:
    """A position estimate: floor metres, 2x2 covariance in m², the method and the nodes used."""

    ts: float
    x: float
    y: float
    cov: np.ndarray
    method: str
    sources: tuple[str, ...] = ()
    tag: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def xy(self) -> np.ndarray:
        """The position as a length-2 array."""
        return np.array([self.x, self.y])

    def cov_tuple(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The covariance as nested tuples, the form :mod:`storesense.contracts` uses."""
        c = np.asarray(self.cov, dtype=float)
        return ((float(c[0, 0]), float(c[0, 1])), (float(c[1, 0]), float(c[1, 1])))

    def std_m(self) -> float:
        """Root of the mean variance: one number for 'how sure' in metres."""
        return float(np.sqrt(max(np.trace(np.asarray(self.cov)) / 2.0, 0.0)))


@runtime_checkable
class Positioner(Protocol):
    """Single-shot positioning: one observation to one fix (or ``None`` when it cannot)."""

    name: str

    def locate(self, obs: RssiObservation) -> Fix | None:
        """A fix from this observation alone, or ``None`` when too few nodes were heard."""
        ...


@runtime_checkable
class Tracker(Protocol):
    """Positioning over time for one tag: feed observations in time order, read filtered fixes."""

    name: str

    def update(self, obs: RssiObservation) -> Fix | None:
        """Advance to ``obs.ts``, fold the observation in and return the current fix."""
        ...

    def reset(self) -> None:
        """Forget the track (a new tag, or after a long silence)."""
        ...


def regularised_cov(cov: np.ndarray, floor_var: float = 1e-4) -> np.ndarray:
    """A symmetric positive-definite copy of ``cov`` (eigenvalues at least ``floor_var``)."""
    c = np.asarray(cov, dtype=float)
    c = 0.5 * (c + c.T)
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, floor_var)
    return (v * w) @ v.T


def regularised_cov2(a: float, b: float, d: float, floor_var: float = 1e-4) -> np.ndarray:
    """:func:`regularised_cov` of the symmetric 2x2 ``[[a, b], [b, d]]`` given as floats, in closed form.

    A matrix whose eigenvalues are both at least ``floor_var`` comes back as it
    is; otherwise the eigenvalues below it are raised to it (eigenvectors kept).
    """
    half_tr, half_diff = 0.5 * (a + d), 0.5 * (a - d)
    rad = math.sqrt(half_diff * half_diff + b * b)
    l1, l2 = half_tr + rad, half_tr - rad  # l1 >= l2
    if l2 >= floor_var:
        return np.array([[a, b], [b, d]])
    if rad == 0.0:
        v0, v1 = 1.0, 0.0
    elif half_diff >= 0.0:  # eigenvector of l1, from the better-conditioned row
        v0, v1 = half_diff + rad, b
    else:
        v0, v1 = b, rad - half_diff
    norm = math.hypot(v0, v1)
    v0, v1 = v0 / norm, v1 / norm
    w1, w2 = max(l1, floor_var), max(l2, floor_var)
    # w1 v vᵀ + w2 u uᵀ with u = (-v1, v0)
    return np.array([[w1 * v0 * v0 + w2 * v1 * v1, (w1 - w2) * v0 * v1],
                     [(w1 - w2) * v0 * v1, w1 * v1 * v1 + w2 * v0 * v0]])
