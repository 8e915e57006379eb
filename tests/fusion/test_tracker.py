"""FloorTracker: the plain-float association of small frames decides exactly as the vectorised one, for any filter."""

from __future__ import annotations

import numpy as np
import pytest

from storesense.contracts import FloorPoint, PersonObservation, Stamper
from storesense.fusion import tracker as tracker_mod
from storesense.fusion.kalman import FastCV, FilterpyCV
from storesense.fusion.tracker import FloorTracker


def frames(seed: int, people: int = 6, steps: int = 150):
    """Camera frames of people walking (and a few false positives), from two cameras with their own ids."""
    rng = np.random.default_rng(seed)
    st = Stamper("cam", "t")
    pos = rng.uniform([0, 0], [10, 8], size=(people, 2))
    vel = rng.normal(0, 0.8, size=(people, 2))
    out = []
    for k in range(steps):
        ts = 100.0 + k * 0.1
        pos += vel * 0.1
        for cam in ("cam1", "cam2"):
            obs = []
            for p in range(people):
                if rng.random() < 0.25:
                    continue  # not seen by this camera this frame
                c = float(rng.uniform(0.002, 0.05))
                xy = pos[p] + rng.normal(0, 0.05, 2)
                obs.append(st.make(PersonObservation, ts, camera=cam, frame=k, track_id=p + (100 if cam == "cam2" else 0),
                                   bbox=(0, 0, 10, 10), score=0.9,
                                   floor=FloorPoint(x=float(xy[0]), y=float(xy[1]), cov=((c, c / 4), (c / 4, c)))))
            if rng.random() < 0.1:  # someone nobody follows
                xy = rng.uniform([0, 0], [10, 8])
                obs.append(st.make(PersonObservation, ts, camera=cam, frame=k, track_id=int(rng.integers(500, 600)),
                                   bbox=(0, 0, 10, 10), score=0.5,
                                   floor=FloorPoint(x=float(xy[0]), y=float(xy[1]), cov=((0.05, 0.0), (0.0, 0.05)))))
            rng.shuffle(obs)
            out.append((cam, ts, obs))
    return out


def run(tracker: FloorTracker, fr):
    log = []
    for cam, ts, obs in fr:
        log.append([(o.event_id, t.id) for o, t in tracker.update_frame(cam, ts, obs)])
        tracker.prune(ts)
    return log


@pytest.mark.parametrize("seed, factory", [(0, FastCV), (1, FastCV), (2, FastCV), (3, FilterpyCV)])
def test_scalar_association_matches_the_vectorised_one(monkeypatch, seed, factory):
    fr = frames(seed, steps=150 if factory is FastCV else 50)
    fast = FloorTracker(factory)
    fast_log = run(fast, fr)
    monkeypatch.setattr(tracker_mod, "_SCALAR_MAX_PAIRS", -1)  # every frame through numpy and scipy
    slow = FloorTracker(factory)
    slow_log = run(slow, fr)
    assert fast_log == slow_log
    assert fast.tracks.keys() == slow.tracks.keys() and fast.bindings == slow.bindings
    for tid, t in fast.tracks.items():
        assert np.array_equal(t.filter.x, slow.tracks[tid].filter.x)
        assert np.array_equal(t.filter.P, slow.tracks[tid].filter.P)
        assert t.history == slow.tracks[tid].history


def test_numpy_log_and_power_of_one_value_are_those_of_an_array():
    # the small-frame path takes numpy's log one value at a time and remembers numpy's dt**4 per value; the
    # vectorised path takes both over arrays: the same bits only if numpy's result per element does not depend
    # on the array around it (true of its SIMD loops, which can differ from math.log)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(1e-8, 1.0, 5000), rng.uniform(1.0, 1e3, 5000), 10.0 ** rng.uniform(-12, 6, 5000)])
    whole_log, whole_pow = np.log(values).tolist(), (values ** 4).tolist()
    assert [float(tracker_mod._log1(v)) for v in values.tolist()] == whole_log
    assert [tracker_mod._np_pow4([v])[0] for v in values[:2000].tolist()] == whole_pow[:2000]


def test_reference_filter_tracks_alike():
    fr = frames(4, steps=40)
    ours, ref = FloorTracker(), FloorTracker(filter_factory=FilterpyCV)
    assert [[t for _, t in f] for f in run(ours, fr)] == [[t for _, t in f] for f in run(ref, fr)]
    for tid, t in ours.tracks.items():
        assert np.allclose(t.filter.x, ref.tracks[tid].filter.x, atol=1e-9)


def test_fast_filter_state_views():
    f = FastCV(1.0, 2.0)
    f.predict(0.3)
    f.update((1.1, 2.05), ((0.02, 0.001), (0.001, 0.03)))
    x, P = f.x, f.P
    assert np.array_equal(P, P.T) and x.shape == (4,)
    xp, Pp = f.predicted(0.2)
    assert f.predicted_position(0.2) == (xp[0], xp[1], Pp[0, 0], Pp[0, 1], Pp[1, 0], Pp[1, 1])
    assert f.predicted_position(0.0) == (x[0], x[1], P[0, 0], P[0, 1], P[1, 0], P[1, 1])
    assert np.array_equal(f.x, x)  # predicted() does not move the filter
    assert f.position() == tuple(x[:2]) and f.velocity() == tuple(x[2:])
    assert f.position_cov() == ((P[0, 0], P[0, 1]), (P[1, 0], P[1, 1]))


def test_both_filters_answer_the_tracker_alike():
    rng = np.random.default_rng(5)
    fast, ref = FastCV(1.0, 2.0), FilterpyCV(1.0, 2.0)
    R = ((0.03, 0.004), (0.004, 0.05))
    for _ in range(30):
        dt = float(rng.uniform(0.02, 0.4))
        z = (float(rng.normal(1.0, 0.3)), float(rng.normal(2.0, 0.3)))
        assert np.allclose(fast.predicted_position(dt), ref.predicted_position(dt), atol=1e-9)
        assert np.isclose(fast.mahalanobis2(dt, z, R), ref.mahalanobis2(dt, np.array(z), np.array(R)))
        for f in (fast, ref):
            f.predict(dt)
            f.update(z, R)
        assert np.allclose(fast.position(), ref.position(), atol=1e-9)
        assert np.allclose(fast.velocity(), ref.velocity(), atol=1e-9)
        assert np.allclose(fast.position_cov(), ref.position_cov(), atol=1e-9)
