"""Positioning algorithms on a synthetic two-room floor where the truth is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from storesense.ips.fingerprint import KnnFingerprint
from storesense.geometry.floor import FloorGrid
from storesense.ips.kalman import KalmanFusion
from storesense.ips.model import Positioner, RssiObservation, Tracker
from storesense.ips.particle import ParticleTracker
from storesense.ips.pathloss import Anchor, expected_rssi_matrix
from storesense.ips.radiomap import RadioMap, SignalField
from storesense.ips.trilateration import Trilateration
from storesense.geometry.walkable import Walkable

# Two rooms 5 m x 6 m side by side, a 0.2 m wall at x = 5..5.2 with a door at y = 0.5..1.5.
OUTLINE = [(0, 0), (5, 0), (5, 0.5), (5.2, 0.5), (5.2, 0), (10.2, 0), (10.2, 6), (5.2, 6), (5.2, 1.5), (5, 1.5),
           (5, 6), (0, 6)]
ANCHORS = {a.id: a for a in [
    Anchor("n1", 0.5, 0.5, 2.5, -59, 2.2), Anchor("n2", 4.5, 5.5, 2.5, -61, 2.0), Anchor("n3", 9.7, 0.5, 2.5, -58, 2.4),
    Anchor("n4", 9.7, 5.5, 2.5, -60, 2.1), Anchor("n5", 2.5, 3.0, 2.8, -59, 2.0), Anchor("n6", 7.7, 3.0, 2.8, -62, 2.3),
]}
NODES = sorted(ANCHORS)


@pytest.fixture(scope="module")
def walkable():
    return Walkable(FloorGrid.from_outline(OUTLINE, resolution=0.1, clearance=0.0))


def observe(p, ts=0.0, noise=0.0, rng=None, drop=()):
    rssi = expected_rssi_matrix([ANCHORS[n] for n in NODES], np.array([p]))[0]
    if noise:
        rssi = rssi + rng.normal(0, noise, len(rssi))
    return RssiObservation(ts, {n: float(v) for n, v in zip(NODES, rssi) if n not in drop}, "tag-1")


def test_interfaces():
    assert isinstance(Trilateration(ANCHORS), Positioner)
    rm = RadioMap(NODES, np.array([[1.0, 1.0]] * 10), np.full((10, 6), -60.0))
    assert isinstance(KnnFingerprint(rm), Positioner)


def test_walkable_queries(walkable):
    assert walkable.free_at(np.array([[2.0, 3.0], [5.1, 3.0], [5.1, 1.0], [-1.0, 1.0]])).tolist() == [
        True, False, True, False]
    # straight through the wall: blocked; through the door: fine
    assert not walkable.segments_free(np.array([[4.0, 3.0]]), np.array([[6.0, 3.0]]))[0]
    assert walkable.segments_free(np.array([[4.0, 1.0]]), np.array([[6.0, 1.0]]))[0]
    assert np.allclose(walkable.snap((5.1, 3.0)), (5.05, 3.05)) or walkable.free_at(walkable.snap((5.1, 3.0))[None])[0]
    # walking from room A to room B heads for the door first, never through the wall
    step = walkable.walk_towards((4.0, 4.0), (6.0, 4.0))
    assert step[0] <= 5.0 and walkable.segments_free(np.array([[4.0, 4.0]]), step[None])[0]
    assert np.hypot(*(walkable.walk_towards((1.0, 1.0), (4.0, 1.0), 1.0) - (1.0, 1.0))) == pytest.approx(1.0, abs=0.11)


def test_trilateration_exact_and_with_an_outlier():
    tri = Trilateration(ANCHORS)
    for p in [(2.0, 2.0), (7.5, 4.0), (9.0, 1.0)]:
        fix = tri.locate(observe(p))
        assert np.hypot(fix.x - p[0], fix.y - p[1]) < 0.05
        assert np.all(np.linalg.eigvalsh(fix.cov) > 0)
    obs = observe((3.0, 2.0))
    bad = dict(obs.rssi, n3=obs.rssi["n3"] + 25.0)  # a reflection makes n3 far too loud
    fix = tri.locate(RssiObservation(0.0, bad))
    assert fix.extra["dropped"] == ("n3",) and "n3" not in fix.sources
    assert np.hypot(fix.x - 3.0, fix.y - 2.0) < 0.1
    assert tri.locate(observe((3.0, 2.0), drop=("n1", "n2", "n3", "n4"))) is None  # 2 nodes are not enough


def test_trilateration_covariance_is_calibrated():
    """With 4 dB shadowing the reported covariance matches the actual scatter (within a factor 2)."""
    tri = Trilateration(ANCHORS, sigma_db=4.0)
    rng = np.random.default_rng(0)
    p = np.array([3.0, 3.0])
    fixes = [tri.locate(observe(p, noise=4.0, rng=rng)) for _ in range(300)]
    err = np.array([[f.x, f.y] for f in fixes]) - p
    mahal = np.array([e @ np.linalg.solve(f.cov, e) for e, f in zip(err, fixes)])
    assert 1.0 < np.mean(mahal) < 4.0  # 2 for a perfectly calibrated 2-D covariance


def test_fingerprinting_on_a_radio_map():
    rng = np.random.default_rng(1)
    pts = np.array([(x, y) for x in np.arange(0.25, 10.2, 0.5) for y in np.arange(0.25, 6, 0.5)])
    rssi = expected_rssi_matrix([ANCHORS[n] for n in NODES], pts) + rng.normal(0, 1.0, (len(pts), 6))
    rssi[rng.random(rssi.shape) < 0.05] = np.nan  # some nodes not heard
    knn = KnnFingerprint(RadioMap(NODES, pts, rssi), k=4)
    fix = knn.locate(observe((6.25, 2.75)))
    assert np.hypot(fix.x - 6.25, fix.y - 2.75) < 0.5
    assert fix.std_m() >= 0.5 and fix.method == "fingerprint"


def test_radio_map_csv_round_trip_and_errors(tmp_path):
    rm = RadioMap(["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[-60.0, np.nan], [-70.5, -80.0]]))
    rm.save_csv(tmp_path / "map.csv")
    back = RadioMap.load_csv(tmp_path / "map.csv")
    assert back.nodes == ["a", "b"] and np.allclose(back.positions, rm.positions)
    assert np.allclose(back.rssi, rm.rssi, equal_nan=True)
    (tmp_path / "bad.csv").write_text("x,y,a\n1,2,-60\n1,2,loud\n")
    from storesense.errors import StoresenseError

    with pytest.raises(StoresenseError, match=r"bad.csv:3: not a number"):
        RadioMap.load_csv(tmp_path / "bad.csv")


def room_to_room_walk():
    """From room A through the door to room B at 0.8 m/s, 3 observations a second."""
    legs = [((1.0, 4.0), (4.5, 1.0)), ((4.5, 1.0), (5.8, 1.0)), ((5.8, 1.0), (9.0, 4.5))]
    pts = []
    for a, b in legs:
        n = int(np.hypot(b[0] - a[0], b[1] - a[1]) / (0.8 / 3)) + 1
        pts += [tuple(np.array(a) + (np.array(b) - np.array(a)) * t) for t in np.linspace(0, 1, n, endpoint=False)]
    return np.array(pts)


@pytest.mark.parametrize("make", ["kalman", "particle"])
def test_trackers_follow_a_walk_through_the_door_and_never_cross_the_wall(walkable, make):
    truth = room_to_room_walk()
    rng = np.random.default_rng(5)
    if make == "kalman":
        tracker: Tracker = KalmanFusion([Trilateration(ANCHORS, sigma_db=6.0, walkable=walkable)], walkable=walkable)
    else:
        tracker = ParticleTracker(SignalField.from_path_loss(walkable, ANCHORS, sigma_db=6.0), n_particles=600,
                                  step_std=1.0, beta=1.0, seed=1)
    assert isinstance(tracker, Tracker)
    fixes = [tracker.update(observe(p, ts=i / 3, noise=6.0, rng=rng)) for i, p in enumerate(truth)]
    est = np.array([[f.x, f.y] for f in fixes])
    err = np.hypot(*(est - truth).T)
    assert np.median(err) < 1.5  # 6 dB shadowing on every sample: single shots are worse (below)
    assert walkable.free_at(est).all()  # always on walkable floor
    assert walkable.segments_free(est[:-1], est[1:]).all()  # and no step goes through the wall
    assert all(np.all(np.linalg.eigvalsh(f.cov) > 0) for f in fixes)
    # the particle filter / Kalman filter is tighter than single shots would be
    single = Trilateration(ANCHORS, sigma_db=6.0)
    rng = np.random.default_rng(5)
    raw = np.array([[f.x, f.y] for f in (single.locate(observe(p, noise=6.0, rng=rng)) for p in truth)])
    assert np.median(err) < np.median(np.hypot(*(raw - truth).T))


def test_locator_assembles_sightings_per_tag():
    from storesense.contracts import BleSighting, Stamper
    from storesense.ips.locator import BleLocator

    seen = []

    class Recorder:
        name = "rec"

        def update(self, obs):
            seen.append(obs)
            return None

        def reset(self):
            pass

    loc = BleLocator(lambda tag: Recorder(), window_s=0.25, tags={"a"})
    st = {n: Stamper(n, run_id="x") for n in ("n1", "n2")}
    msgs = [st["n1"].make(BleSighting, 10.00, node="n1", tag="a", rssi=-60.0),
            st["n2"].make(BleSighting, 10.05, node="n2", tag="a", rssi=-70.0),
            st["n1"].make(BleSighting, 10.10, node="n1", tag="a", rssi=-60.0),  # heard twice in the window
            st["n1"].make(BleSighting, 10.10, node="n1", tag="other", rssi=-50.0),  # not ours
            st["n2"].make(BleSighting, 10.40, node="n2", tag="a", rssi=-72.0)]  # next window
    for m in msgs:
        loc.handle(m)
    assert len(seen) == 1 and seen[0].ts == 10.10 and seen[0].rssi == {"n1": -60.0, "n2": -70.0}
    loc.poll(10.5)  # still inside the second window: nothing
    assert len(seen) == 1
    loc.poll(10.7)
    assert len(seen) == 2 and seen[1].rssi == {"n2": -72.0}
