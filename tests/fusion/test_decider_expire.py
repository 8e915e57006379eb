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
