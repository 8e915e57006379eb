"""One site's BLE positioning set up from a store config: anchors, floor, radio map, parameters.

:class:`IpsSetup` builds each positioning method (``trilateration``,
``fingerprint``, ``kalman``, ``particle``, ``fused``) with :data:`DEFAULT_PARAMS`, and a
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
from .kalman import KalmanFusion, TrackerPositioner
from .locator import BleLocator
from .model import Tracker
from .particle import ParticleTracker
from .pathloss import Anchor
from .radiomap import RadioMap, SignalField
from .trilateration import Trilateration

if TYPE_CHECKING:  # calibration builds on ips (the path-loss model); the fits are only carried here
    from ..calibration.ble import PathLossFit

METHODS = ("trilateration", "fingerprint", "kalman", "particle", "fused")

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
    "fused_pf_cov_scale": 1.0,  # inflation of the particle filter's covariance in the "fused" Kalman fusion
    "map_bandwidth_m": 0.0,  # kernel bandwidth of the radio-map field; 0: from the map's spacing
    "map_prior_weight": 0.5,  # weight (in samples) of the path-loss prior in the field
    "window_s": 0.25,  # sightings of a tag closer than this form one observation
    "history_s": 0.0,  # sliding per-node observation window (s); 0: the batch's packets only
}

#: Observation window per method (s), chosen by leave-one-calibration-run-out cross-validation
#: (docs/ips.md); a method not listed uses ``DEFAULT_PARAMS["history_s"]``.
#: Scored by median + p90 of the pooled errors over windows {0, 1, 2, 3, 5} s: trilateration 3 s
#: (6.14 m at 0 s -> 5.08 m), kNN 2 s (3.55 -> 3.08 m; 3 s tied, the shorter kept), Kalman fusion 1 s
#: (3.11 -> 3.06 m), particle filter 0 s (its own filter already integrates; 1 s: 2.07 -> 2.19 m).
#: "fused" (the Kalman fusion of trilateration, kNN and the particle filter; issue #17): 0 s
#: (1 s: 2.00 -> 2.70 m, its particle filter integrates already), with the particle filter's covariance as it
#: comes (x4: 2.26 m at 1 s, x16: 2.65 m).
DEFAULT_HISTORY_S: dict[str, float] = {"trilateration": 3.0, "fingerprint": 2.0, "kalman": 1.0, "particle": 0.0,
                                       "fused": 0.0}


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
    _explicit: frozenset = frozenset()  # parameters set by the caller (override the per-method defaults)

    @property
    def map_bandwidth_m(self) -> float:
        """The radio-map kernel bandwidth: ``params["map_bandwidth_m"]``, or from the map's spacing when 0."""
        h = float(self.params["map_bandwidth_m"])
        if h > 0 or self.radio_map is None:
            return h
        return self.radio_map.spacing_bandwidth(min_m=2.0 * self.walkable.resolution)

    def history_s(self, method: str) -> float:
        """The observation window of ``method``: ``params["history_s"]`` when set, else the method's default."""
        if "history_s" in self._explicit:
            return float(self.params["history_s"])
        return float(DEFAULT_HISTORY_S.get(method, self.params["history_s"]))

    @property
    def signal_field(self) -> SignalField:
        """Radio-map field when there is a map, else the path-loss field (built once)."""
        if self._field is None:
            if self.radio_map is not None:
                self._field = SignalField.from_radio_map(
                    self.walkable, self.radio_map, self.anchors, bandwidth_m=self.map_bandwidth_m,
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
        if method == "fused":
            pos = [self.trilateration()] + ([self.fingerprint()] if self.radio_map is not None else [])
            pos.append(TrackerPositioner(self.tracker("particle", seed), self.params["fused_pf_cov_scale"]))
            return KalmanFusion(pos, accel_std=self.params["kalman_accel_std"],
                                fix_cov_scale=self.params["kalman_fix_cov_scale"], walkable=self.walkable)
        if method == "particle":
            return ParticleTracker(self.signal_field, n_particles=int(self.params["pf_particles"]),
                                   step_std=self.params["pf_step_std"], beta=self.params["pf_beta"],
                                   nu=self.params["pf_nu"], jump_sigmas=self.params["pf_jump_sigmas"],
                                   seed=seed)
        raise ValueError(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")

    def locator(self, method: str, seed: int = 0) -> BleLocator:
        """A locator that makes a ``method`` tracker for every tag, with the setup's observation window."""
        return BleLocator(lambda tag: self.tracker(method, seed), window_s=float(self.params["window_s"]),
                          history_s=self.history_s(method))



def make_setup(anchors: dict[str, Anchor], walkable: Walkable, radio_map: RadioMap | None, tag_height: float,
               params: dict | None = None, fits: dict | None = None) -> IpsSetup:
    """An :class:`IpsSetup` with :data:`DEFAULT_PARAMS` overridden by ``params`` (those stay explicit)."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown positioning parameter(s) {', '.join(unknown)} "
                         f"(expected some of {', '.join(DEFAULT_PARAMS)})")
    return IpsSetup(anchors, walkable, radio_map, tag_height, {**DEFAULT_PARAMS, **params}, dict(fits or {}),
                    _explicit=frozenset(params))


def setup_from_config(config, *, radio_map: RadioMap | None = None, params: dict | None = None,
                      resolution: float = 0.1, clearance: float = 0.2, tag_height: float | None = None) -> IpsSetup:
    """An :class:`IpsSetup` for a store config (its BLE nodes, its floor) and an optional radio map.

    The config's ``ble`` section sets the tag height and the observation window
    (``window_s``, ``history_s``) unless ``tag_height`` / ``params`` give them.
    """
    from ..errors import StoresenseError
    from ..geometry.floor import FloorGrid
    from .pathloss import DEFAULT_TAG_HEIGHT_M, anchors_from_config

    anchors = anchors_from_config(config)
    if len(anchors) < 3:
        raise StoresenseError(f"the store config has {len(anchors)} BLE nodes; positioning needs at least 3")
    ble = getattr(config, "ble", None)
    merged: dict = {}
    if ble is not None:
        merged["window_s"] = ble.window_s
        if ble.history_s is not None:
            merged["history_s"] = ble.history_s
        if tag_height is None:
            tag_height = ble.tag_height
    merged.update(params or {})
    return make_setup(anchors, Walkable(FloorGrid(config, resolution, clearance)), radio_map,
                      tag_height if tag_height is not None else DEFAULT_TAG_HEIGHT_M, merged)
