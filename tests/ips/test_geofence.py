"""Geofencing: membership probability, hysteresis and minimum dwell on grazing and crossing paths."""

from __future__ import annotations

import numpy as np
import pytest

from storesense.config import Zone, example_store_path, load_store_config
from storesense.contracts import ZoneEvent, decode, encode
from storesense.ips.geofence import Geofence, is_in_store_event

AISLE = Zone(id="aisle-1", kind="aisle", polygon=[(2.0, 0.0), (4.0, 0.0), (4.0, 6.0), (2.0, 6.0)], min_dwell_s=3.0)
COV = np.diag([0.3 ** 2, 0.3 ** 2])  # a BLE fix's typical uncertainty


def walk(fence, xs, ys, dt=0.5, cov=COV, shopper="s1", t0=0.0):
    events = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        events += fence.update(shopper, t0 + i * dt, float(x), float(y), cov)
    return events


def test_membership_probability_follows_the_covariance():
    fence = Geofence([AISLE])
    assert fence.membership(3.0, 3.0, COV)["aisle-1"] == 1.0
    assert fence.membership(8.0, 3.0, COV)["aisle-1"] == 0.0
    on_edge = fence.membership(4.0, 3.0, COV)["aisle-1"]
    assert 0.35 < on_edge < 0.65
    # a point 0.3 m inside with sigma 0.3 m: about 84 % inside
    assert 0.75 < fence.membership(3.7, 3.0, COV)["aisle-1"] < 0.92
    assert fence.membership(3.9, 3.0, None)["aisle-1"] == 1.0  # no covariance: yes/no


def test_a_path_grazing_the_boundary_does_not_flicker():
    """A shopper walking along the aisle's edge, the fix jittering across it, gives no event at all."""
    rng = np.random.default_rng(0)
    n = 120  # a minute at 2 Hz
    ys = np.linspace(0.5, 5.5, n)
    xs = 4.0 + rng.normal(0.0, 0.15, n)  # straddling x = 4.0, the aisle's east edge
    naive = np.abs(np.diff((xs < 4.0).astype(int))).sum()
    assert naive > 20  # a plain inside/outside test would flicker
    assert walk(Geofence([AISLE]), xs, ys) == []


def test_standing_on_the_boundary_after_entering_stays_inside():
    fence = Geofence([AISLE])
    events = walk(fence, np.linspace(6.0, 3.0, 20), np.full(20, 3.0))
    events += walk(fence, 4.0 + np.random.default_rng(1).normal(0, 0.1, 60), np.full(60, 3.0), t0=10.0)
    assert [e.phase for e in events] == ["enter", "dwell"]
    assert fence.inside("s1") == ["aisle-1"]


def test_a_path_crossing_the_zone_gives_exactly_one_enter_and_one_exit():
    fence = Geofence([AISLE])
    xs = np.linspace(0.0, 6.0, 61)  # 6 m in 30 s across a 2 m wide aisle
    events = walk(fence, xs, np.full(len(xs), 3.0) + np.random.default_rng(2).normal(0, 0.1, len(xs)))
    assert [e.phase for e in events] == ["enter", "dwell", "exit"]  # 10 s inside: one dwell event too
    enter, _, exit_ = events
    assert isinstance(enter, ZoneEvent) and decode(encode(enter)) == enter
    assert enter.zone == exit_.zone == "aisle-1" and enter.shopper == "s1"
    assert enter.probability >= 0.7 and exit_.probability <= 0.3
    assert 8.0 < exit_.dwell_s < 12.0  # 2 m at 0.2 m/s
    assert enter.ts < exit_.ts


def test_dwell_once_per_visit_and_forget_closes_zones():
    fence = Geofence([AISLE])
    events = walk(fence, np.full(30, 3.0), np.full(30, 3.0))  # 15 s standing inside
    assert [e.phase for e in events] == ["enter", "dwell"]
    assert events[1].dwell_s >= AISLE.min_dwell_s
    gone = fence.forget("s1", 100.0)
    assert [e.phase for e in gone] == ["exit"] and fence.inside("s1") == []


def test_entering_the_store_zone_switches_the_app_to_in_store_mode():
    cfg = load_store_config(example_store_path())
    fence = Geofence(cfg.zones)
    store = cfg.zones_of("store")[0]
    xs = np.linspace(-2.0, 1.5, 15)  # from the street into the shop
    events = walk(fence, xs, np.full(len(xs), 0.8))
    modes = [is_in_store_event(e, cfg.zones) for e in events]
    assert modes.count(True) == 1 and False not in modes
    assert next(e for e, m in zip(events, modes) if m).zone == store.id
    back = walk(fence, xs[::-1], np.full(len(xs), 0.8), t0=100.0)
    assert [is_in_store_event(e, cfg.zones) for e in back if e.zone == store.id] == [False]


def test_bad_thresholds_are_rejected():
    with pytest.raises(ValueError, match="exit_p < enter_p"):
        Geofence([AISLE], enter_p=0.3, exit_p=0.5)
