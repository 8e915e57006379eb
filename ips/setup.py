"""One site's BLE positioning set up from a store config: anchors, floor, radio map, parameters.

:class:`IpsSetup` builds each positioning method (``trilateration``,
``fingerprint``, ``kalman``, ``particle``) with :data:`DEFAULT_PARAMS`, and a
:class:`~storesense.ips.locator.BleLocator` of one of them;
:func:`setup_from_config` makes one for a store config (the fusion node's BLE
fixes). :mod:`storesense.datasets.scoring.ips` scores the methods on recorded
tracks; that is how :data:`DEFAULT_PARAMS` were chosen (docs/ips.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..geometry.walkable import Walkable
from .fingerprint import KnnFingerprint
from .kalman import KalmanFusion
from .locator import BleLocator
from .model import Tracker
from .particle import ParticleTracker
from .pathloss import Anchor
from .radiomap import RadioMap, SignalField
from .trilateration import Trilateration

if TYPE_CHECKING:  # calibration builds on ips (the path-loss model); the fits are only carried here
    from ..calibration.ble import PathLossFit

METHODS = ("trilateration", "fingerprint", "kalman", "particle")

#: Parameters chosen by leave-one-run-out cross-validation on the calibration runs (never on a test track).
DEFAULT_PARAMS: dict[str, float] = {
    "tri_sigma_db": 6.0,  # nominal RSSI spread for trilateration's covariance
    "knn_k": 10,  # neighbours for fingerprinting
    "kalman_accel_std": 0.5,  # m/s² process noise of the Kalman fusion
    "kalman_fix_cov_scale": 2.0,  # inflation of single-shot fix covariances
    "pf_particles": 1000,
    "pf_step_std": 0.3,  # m/√s random walk of the particles
    "pf_beta": 0.5,  # likelihood tempering
    "pf_nu": 4.0,  # Student-t degrees of freedom
    "pf_jump_sigmas": 1.0,  # the fix moves at most max_speed·dt + this many σ per update
    "map_bandwidth_m": 0.25,  # kernel bandwidth of the radio-map field
    "map_prior_weight": 0.5,  # weight (in samples) of the path-loss prior in the field
}


class _SingleShot:
    """A positioner used as a tracker (no memory): for the single-shot rows of the table."""

    def __init__(self, positioner):
        self.p = positioner
        self.name = positioner.name

    def update(self, obs):
        return self.p.locate(obs)

    def reset(self):
        pass


@dataclass
class IpsSetup:
    """Everything the methods need for one site: calibrated anchors, floor, radio map and parameters."""

    anchors: dict[str, Anchor]
    walkable: Walkable
    radio_map: RadioMap | None
    tag_height: float
    params: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    fits: dict[str, PathLossFit] = field(default_factory=dict)
    _field: SignalField | None = None

    @property
    def signal_field(self) -> SignalField:
        """Radio-map field when there is a map, else the path-loss field (built once)."""
        if self._field is None:
            if self.radio_map is not None:
                self._field = SignalField.from_radio_map(
                    self.walkable, self.radio_map, self.anchors, bandwidth_m=self.params["map_bandwidth_m"],
                    prior_weight=self.params["map_prior_weight"], tag_height=self.tag_height)
            else:
                self._field = SignalField.from_path_loss(self.walkable, self.anchors,
                                                         sigma_db=self.params["tri_sigma_db"],
                                                         tag_height=self.tag_height)
        return self._field

    def trilateration(self) -> Trilateration:
        """The trilateration positioner."""
        return Trilateration(self.anchors, sigma_db=self.params["tri_sigma_db"], tag_height=self.tag_height,
                             walkable=self.walkable)

    def fingerprint(self) -> KnnFingerprint:
        """The kNN positioner (needs a radio map)."""
        if self.radio_map is None:
            raise ValueError("fingerprinting needs a radio map")
        return KnnFingerprint(self.radio_map, k=int(self.params["knn_k"]), walkable=self.walkable)

    def tracker(self, method: str, seed: int = 0) -> Tracker:
        """A fresh tracker for ``method`` (one of :data:`METHODS`)."""
        if method == "trilateration":
            return _SingleShot(self.trilateration())
        if method == "fingerprint":
            return _SingleShot(self.fingerprint())
        if method == "kalman":
            pos = [self.trilateration()] + ([self.fingerprint()] if self.radio_map is not None else [])
            return KalmanFusion(pos, accel_std=self.params["kalman_accel_std"],
                                fix_cov_scale=self.params["kalman_fix_cov_scale"], walkable=self.walkable)
        if method == "particle":
            return ParticleTracker(self.signal_field, n_particles=int(self.params["pf_particles"]),
                                   step_std=self.params["pf_step_std"], beta=self.params["pf_beta"],
                                   nu=self.params["pf_nu"], jump_sigmas=self.params["pf_jump_sigmas"],
                                   seed=seed)
        raise ValueError(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")

    def locator(self, method: str, seed: int = 0) -> BleLocator:
        """A locator that makes a ``method`` tracker for every tag."""
        return BleLocator(lambda tag: self.tracker(method, seed))



def setup_from_config(config, *, radio_map: RadioMap | None = None, params: dict | None = None,
                      resolution: float = 0.1, clearance: float = 0.2, tag_height: float | None = None) -> IpsSetup:
    """An :class:`IpsSetup` for a store config (its BLE nodes, its floor) and an optional radio map."""
    from ..errors import StoresenseError
    from ..geometry.floor import FloorGrid
    from .pathloss import DEFAULT_TAG_HEIGHT_M, anchors_from_config

    anchors = anchors_from_config(config)
    if len(anchors) < 3:
        raise StoresenseError(f"the store config has {len(anchors)} BLE nodes; positioning needs at least 3")
    return IpsSetup(anchors, Walkable(FloorGrid(config, resolution, clearance)), radio_map,
                    tag_height if tag_height is not None else DEFAULT_TAG_HEIGHT_M, {**DEFAULT_PARAMS, **(params or {})})
