"""The floor tracker's prune skips its pass while no track can be stale: it deletes what a full pass deletes."""

import numpy as np

from storesense.config import example_store_path, load_store_config
from storesense.datasets.sim.simulator import simulate
from storesense.fusion.tracker import FloorTracker


def _full_pass(tracker, ts, kept_alive):
    """The tracks a prune with no shortcut deletes now."""
    stale = [t for t in tracker.tracks.values()
             if (ts - t.last_camera_ts > tracker.max_age_s if t.confirmed else ts - t.born_ts > tracker.tentative_s)]
    return [t.id for t in stale if not t.confirmed or not (
        t.id in kept_alive and ts - t.last_fix_ts < 2.0 and ts - t.last_camera_ts < tracker.fix_max_age_s)]


def test_prune_deletes_what_a_full_pass_deletes():
    cfg = load_store_config(example_store_path())
    messages = [m for m in simulate(cfg, "quiet", seed=3).messages if m.type == "person_observation" and m.floor]
    tracker = FloorTracker(confirm_hits=2)
    rng = np.random.default_rng(0)
    frame, batch, deleted, merged = None, [], 0, 0
    for m in messages + [None]:
        key = None if m is None else (m.camera, m.frame, m.ts)
        if batch and key != frame:
            ts = frame[2]
            tracker.update_frame(frame[0], ts, batch)
            live = list(tracker.tracks.values())
            kept = {t.id for t in live if rng.random() < 0.3}
            for t in live:
                if t.id in kept and rng.random() < 0.2:
                    t.last_fix_ts = ts  # a BLE fix keeps it alive a while without a camera
            for keep, drop in tracker.find_duplicates(ts):
                tracker.merge(keep, drop)
                merged += 1
            for later in (0.0, float(rng.exponential(1.5))):  # the node prunes after every message, and idle gaps
                want = _full_pass(tracker, ts + later, kept)
                got = [t.id for t in tracker.prune(ts + later, kept_alive=kept)]
                assert got == want
                deleted += len(got)
            batch = []
        frame = key
        if m is not None:
            batch.append(m)
    assert deleted > 20


def test_a_lone_track_confirmed_after_a_pass_is_still_pruned():
    from storesense.contracts import FloorPoint, PersonObservation, Stamper

    st, tracker = Stamper("cam1", "r"), FloorTracker(tentative_s=30.0)  # no pass for a stale tentative track
    for k in range(4):  # tentative at the first prunes (no confirmed track then), confirmed at the third sighting
        ts = 10.0 + 0.1 * k
        tracker.update_frame("cam1", ts, [st.make(PersonObservation, ts, camera="cam1", frame=k, track_id=1,
                                                  bbox=(0, 0, 10, 10), score=0.9,
                                                  floor=FloorPoint(x=2.0, y=2.0, cov=((0.01, 0.0), (0.0, 0.01))))])
        assert tracker.prune(ts + 0.9) == []
    (track,) = tracker.tracks.values()
    assert track.confirmed
    assert tracker.prune(10.3 + tracker.max_age_s) == []
    assert tracker.prune(10.31 + tracker.max_age_s) == [track]
