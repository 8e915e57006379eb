"""Geofencing: zone membership as a probability, and enter / dwell / exit events without flicker.

Membership is the probability that the shopper is inside the zone polygon given
the fix and its covariance: the share of a fixed set of Gaussian samples (drawn
once, scaled by the covariance's Cholesky factor) that fall inside the polygon.

Events come from a two-threshold state machine per (shopper, zone), the cure for
a shopper standing on a boundary and flickering in and out:

- ``enter`` once the probability has stayed at or above ``enter_p`` for
  ``enter_hold_s`` seconds;
- ``exit`` once it has stayed at or below ``exit_p`` for ``exit_hold_s`` seconds;
- in between nothing changes (hysteresis band);
- ``dwell`` once per visit, when the shopper has been inside for the zone's
  ``min_dwell_s``.

Entering a zone of kind ``store`` is the event that switches the shopper's app to
in-store mode (:func:`is_in_store_event`); leaving it switches back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.path import Path as PolygonPath

from ..config import Zone
from ..contracts import Stamper, ZoneEvent


@dataclass
class _State:
    inside: bool = False
    since: float | None = None  # when the candidate change started
    entered: float = 0.0
    dwelled: bool = False


class Geofence:
    """Zone events for many shoppers from their fixes."""

    def __init__(self, zones: list[Zone], *, source: str = "geofence", enter_p: float = 0.7, exit_p: float = 0.3,
                 enter_hold_s: float = 1.0, exit_hold_s: float = 2.0, n_samples: int = 256, seed: int = 7,
                 stamper: Stamper | None = None):
        if not 0.0 <= exit_p < enter_p <= 1.0:
            raise ValueError(f"need 0 <= exit_p < enter_p <= 1, got exit_p={exit_p}, enter_p={enter_p}")
        self.zones = list(zones)
        self.enter_p = enter_p
        self.exit_p = exit_p
        self.enter_hold_s = enter_hold_s
        self.exit_hold_s = exit_hold_s
        self._paths = {z.id: PolygonPath(np.asarray(z.polygon, dtype=float)) for z in self.zones}
        self._samples = np.random.default_rng(seed).standard_normal((n_samples, 2))
        self.stamper = stamper or Stamper(source)
        self._state: dict[tuple[str, str], _State] = {}

    def membership(self, x: float, y: float, cov=None) -> dict[str, float]:
        """Probability of being inside each zone for a position with covariance ``cov`` (m²)."""
        centre = np.array([x, y], dtype=float)
        if cov is None or not np.any(np.asarray(cov)):
            pts = centre[None]
        else:
            c = np.asarray(cov, dtype=float)
            c = 0.5 * (c + c.T) + np.eye(2) * 1e-9
            try:
                L = np.linalg.cholesky(c)
            except np.linalg.LinAlgError:
                w, v = np.linalg.eigh(c)
                L = v * np.sqrt(np.maximum(w, 0.0))
            pts = centre + self._samples @ L.T
        return {zid: float(path.contains_points(pts).mean()) for zid, path in self._paths.items()}

    def update(self, shopper: str, ts: float, x: float, y: float, cov=None) -> list[ZoneEvent]:
        """Fold in one fix of ``shopper``; return the zone events it triggers."""
        probs = self.membership(x, y, cov)
        events: list[ZoneEvent] = []
        for zone in self.zones:
            p = probs[zone.id]
            st = self._state.setdefault((shopper, zone.id), _State())
            if not st.inside:
                if p >= self.enter_p:
                    st.since = ts if st.since is None else st.since
                    if ts - st.since >= self.enter_hold_s:
                        st.inside, st.since, st.entered, st.dwelled = True, None, st.since, False
                        events.append(self._event(ts, shopper, zone, "enter", 0.0, p))
                else:
                    st.since = None
            else:
                if p <= self.exit_p:
                    st.since = ts if st.since is None else st.since
                    if ts - st.since >= self.exit_hold_s:
                        left_at = st.since
                        st.inside, st.since = False, None
                        events.append(self._event(ts, shopper, zone, "exit", max(left_at - st.entered, 0.0), p))
                        continue
                else:
                    st.since = None
                if not st.dwelled and ts - st.entered >= zone.min_dwell_s:
                    st.dwelled = True
                    events.append(self._event(ts, shopper, zone, "dwell", ts - st.entered, p))
        return events

    def inside(self, shopper: str) -> list[str]:
        """Zones the shopper is currently in (after hysteresis)."""
        return [z.id for z in self.zones if self._state.get((shopper, z.id), _State()).inside]

    def forget(self, shopper: str, ts: float) -> list[ZoneEvent]:
        """The shopper is gone (session closed, track lost): exit every zone they were in."""
        events = []
        for zone in self.zones:
            st = self._state.pop((shopper, zone.id), None)
            if st is not None and st.inside:
                events.append(self._event(ts, shopper, zone, "exit", max(ts - st.entered, 0.0), 0.0))
        return events

    def _event(self, ts: float, shopper: str, zone: Zone, phase: str, dwell: float, p: float) -> ZoneEvent:
        return self.stamper.make(ZoneEvent, ts, shopper=shopper, zone=zone.id, phase=phase,
                                 dwell_s=round(dwell, 3), probability=round(min(max(p, 0.0), 1.0), 4))


def is_in_store_event(event: ZoneEvent, zones: list[Zone]) -> bool | None:
    """True for entering a ``store`` zone (app to in-store mode), False for leaving one, None otherwise."""
    kinds = {z.id: z.kind for z in zones}
    if kinds.get(event.zone) != "store" or event.phase == "dwell":
        return None
    return event.phase == "enter"
