"""The pick decider skips its expiry pass while no hand visit can be due: the visits it keeps are those a full pass
after every event keeps."""

import numpy as np

from storesense.cart.decisions import PickDecider
from storesense.config import example_store_path, load_store_config
from storesense.contracts import HandShelfInteraction, Stamper


def _kept(visits, ts, memory_s):
    return [v for v in visits if (v.exit_ts is None and ts - v.enter_ts <= memory_s)
            or (v.exit_ts is not None and ts - v.exit_ts <= memory_s)]


def test_expire_keeps_what_a_full_pass_keeps():
    store = load_store_config(example_store_path())
    shelves = [s.id for s in store.shelves][:2]
    cam = Stamper("cam3", "r")
    rng = np.random.default_rng(5)
    decider = PickDecider(store, memory_s=3.0)
    ts, reopened = 0.0, 0
    for _ in range(3000):
        ts += float(rng.exponential(0.25))
        shopper, shelf = f"S{rng.integers(3)}", shelves[int(rng.integers(len(shelves)))]
        phase = "enter" if rng.random() < 0.5 else "exit"
        dwell = float(rng.uniform(0.0, 8.0)) if phase == "exit" else 0.0  # long dwells: exits long after enters
        before = [v for v in decider.visits if v.shopper == shopper and v.shelf == shelf and v.exit_ts is not None
                  and ts - v.exit_ts < 0.3]
        decider.hand(shopper, cam.make(HandShelfInteraction, ts, camera="cam3", track_id=1, shelf=shelf,
                                       face=f"{shelf}-front", phase=phase, hand="left", dwell_s=dwell,
                                       keypoint_score=0.9), {})
        reopened += phase == "enter" and any(v.exit_ts is None for v in before)  # an exit taken back
        want = _kept(decider.visits, ts, decider.memory_s)
        decider.expire(ts)
        assert decider.visits == want
        for _ in range(int(rng.integers(3))):  # the node expires after every message, hands or not
            ts += float(rng.exponential(0.5))
            want = _kept(decider.visits, ts, decider.memory_s)
            decider.expire(ts)
            assert decider.visits == want
    assert reopened > 10


def test_median_of_a_visit_is_numpys_to_the_bit():
    from storesense.cart.decisions import _median

    rng = np.random.default_rng(7)
    for n in range(1, 40):
        for _ in range(50):
            values = [float(v) for v in rng.normal(1.0, 0.3, n) * 10.0 ** rng.integers(-3, 3)]
            if rng.random() < 0.3:
                values += values[: int(rng.integers(n)) + 1]  # repeated heights (one reach seen by two cameras)
            if rng.random() < 0.1:  # signed zeros: numpy's sums start at 0.0
                for k in rng.integers(len(values), size=int(rng.integers(1, 4))):
                    values[int(k)] = -0.0 if rng.random() < 0.7 else 0.0
            want = float(np.median(values))
            assert _median(values).hex() == want.hex()
    for values in ([-0.0], [-0.0, -0.0], [0.0, -0.0], [-0.0, 1.0, -0.0], [-1e-300, 1e-300]):
        assert _median(values).hex() == float(np.median(values)).hex()
    assert np.isnan(_median([1.0, float("nan"), 2.0]))
