"""The simulator's honesty features: shoppers without the app or BLE, wrists on a neighbour, spurious hands.

Each has its own Level field and its own random stream: at 0 the scenario is
message for message what it was without the feature.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from storesense.contracts import encode
from storesense.datasets.sim.camera import NEIGHBOUR_REACH_M
from storesense.datasets.sim.simulator import HONEST, LEVELS, read_truth, simulate
from storesense.errors import StoresenseError

from .test_simulator import _of, store  # noqa: F401 - the store fixture

OFF = {k: 0.0 for k in HONEST}


#: crowded, the honesty features made frequent so that one short run shows them all
HONEST_OFTEN = dataclasses.replace(LEVELS["crowded"], name="honest-often", shoppers=16, no_app_share=0.4,
                                   ble_off_share=0.4, neighbour_wrist_share=1.0, spurious_hand_per_min=20.0)


@pytest.fixture(scope="module")
def often(store):
    return simulate(store, HONEST_OFTEN, seed=11, camera_fps=5)


def _content(msgs):
    """What the messages say, without their per-source numbering (extra hand events shift a camera's seq)."""
    return [m.model_dump(exclude={"seq", "event_id"}) for m in msgs]


def test_the_levels_have_the_features_on_and_they_validate():
    for lv in LEVELS.values():
        assert all(getattr(lv, k) > 0 for k in HONEST), lv.name
    with pytest.raises(StoresenseError, match="no_app_share"):
        dataclasses.replace(LEVELS["busy"], no_app_share=1.5)
    with pytest.raises(StoresenseError, match="spurious_hand_per_min"):
        dataclasses.replace(LEVELS["busy"], spurious_hand_per_min=-1.0)


def test_shoppers_without_the_app_or_ble_send_no_ble(often):
    no_app = [s for s in often.shoppers if not s.has_app]
    ble_off = [s for s in often.shoppers if s.has_app and s.phone == "none"]
    with_ble = [s for s in often.shoppers if s.phone != "none"]
    assert no_app and ble_off and with_ble
    assert often.stats["no_app"] == len(no_app) and often.stats["ble_off"] == len(ble_off)
    heard = Counter(m.tag for m in _of(often, "ble_sighting"))
    assert not any(heard[s.tag] for s in no_app + ble_off)
    assert all(heard[s.tag] > 10 for s in with_ble)
    # they still check in, with their tag: those without the app by a scanned code
    checkins = {m.tag: m.method for m in _of(often, "check_in")}
    assert all(checkins[s.tag] == "code" for s in no_app) and all(s.phone == "none" for s in no_app)
    assert Counter(checkins[s.tag] for s in ble_off)["app"] >= len(ble_off) / 2  # mostly app (some show a code)


def test_a_neighbour_wrist_event_carries_a_nearby_shoppers_track_id(often):
    msgs = Counter((m.camera, m.ts, m.phase, m.track_id) for m in _of(often, "hand_shelf_interaction"))
    # every hand event sent has its truth, and only those
    assert msgs == Counter((h.camera, h.ts, h.phase, h.track_id) for h in often.hand_events)
    neighbour = [h for h in often.hand_events if h.cause == "neighbour"]
    assert len(neighbour) >= 3
    for h in neighbour:
        assert (h.camera, h.ts, h.phase, h.track_id) in msgs
        owner = often.track_owner(h.camera, h.track_id, h.ts)
        assert owner == h.neighbour and owner != h.shopper
        pos = often.positions_at(h.ts)
        assert np.hypot(*np.subtract(pos[owner], pos[h.shopper])) < NEIGHBOUR_REACH_M
    # the rest carry the hand's own shopper's track id
    for h in often.hand_events:
        if h.cause != "neighbour":
            assert often.track_owner(h.camera, h.track_id, h.ts) == h.shopper


def test_spurious_hand_events_move_no_weight(store, often):
    spurious = [h for h in often.hand_events if h.cause == "spurious"]
    assert len(spurious) >= 5
    # the same scenario without them: identical load cells and check-ins, only hand events differ
    calm = simulate(store, dataclasses.replace(HONEST_OFTEN, spurious_hand_per_min=0.0), seed=11, camera_fps=5)
    for kind in ("weight_change", "check_in", "ble_sighting", "person_observation"):
        assert _content(_of(calm, kind)) == _content(_of(often, kind)), kind
    assert not any(h.cause == "spurious" for h in calm.hand_events)
    extra = Counter((m.camera, m.ts, m.track_id) for m in _of(often, "hand_shelf_interaction"))
    extra.subtract(Counter((m.camera, m.ts, m.track_id) for m in _of(calm, "hand_shelf_interaction")))
    assert sum(v for v in extra.values() if v > 0) == len(spurious)
    assert often.stats["weight_changes"] == calm.stats["weight_changes"]
    assert [w.to_json() for w in often.weight_events] == [w.to_json() for w in calm.weight_events]


@pytest.mark.parametrize("level", ["quiet", "crowded"])
def test_each_feature_at_zero_leaves_the_rest_of_the_scenario_unchanged(store, level):
    """With all four at 0 nothing of them shows; each one on changes only what it owns."""
    base = dataclasses.replace(LEVELS[level], shoppers=6, **OFF)
    off = simulate(store, base, seed=21, camera_fps=3)
    assert off.stats["no_app"] == off.stats["ble_off"] == 0
    assert {h.cause for h in off.hand_events} == {"reach"}
    everything = ("person_observation", "weight_change", "check_in", "ble_sighting")
    hand = "hand_shelf_interaction"
    for feature, value, same in (("neighbour_wrist_share", 1.0, everything),
                                 ("spurious_hand_per_min", 30.0, everything),
                                 ("ble_off_share", 1.0, ("person_observation", "weight_change", "check_in"))):
        on = simulate(store, dataclasses.replace(base, **{feature: value}), seed=21, camera_fps=3)
        for kind in same:
            assert _content(_of(on, kind)) == _content(_of(off, kind)), (feature, kind)
        if feature == "neighbour_wrist_share":  # the same hand events, some on another track
            assert [(m.camera, m.ts, m.phase, m.shelf) for m in _of(on, hand)] == \
                [(m.camera, m.ts, m.phase, m.shelf) for m in _of(off, hand)]
            assert sum(h.cause == "neighbour" for h in on.hand_events) == on.stats["hand_events_neighbour"]
        if feature == "spurious_hand_per_min":
            assert on.stats["hand_events_spurious"] > 0
        if feature == "ble_off_share":
            assert not _of(on, "ble_sighting") and on.stats["ble_off"] == len(on.shoppers)
    # without the app a shopper checks in by code, which takes longer: their walk changes, not who they are
    on = simulate(store, dataclasses.replace(base, no_app_share=1.0), seed=21, camera_fps=3)
    assert on.stats["no_app"] == len(on.shoppers) and not _of(on, "ble_sighting")
    assert {m.method for m in _of(on, "check_in")} == {"code"}
    assert [s.tag for s in on.shoppers] == [s.tag for s in off.shoppers]
    # and the level without them equals itself run twice (the new streams are seeded)
    again = simulate(store, base, seed=21, camera_fps=3)
    assert [encode(m) for m in again.messages] == [encode(m) for m in off.messages]


def test_hand_truth_round_trips(tmp_path, often):
    back = read_truth(often.write_truth(tmp_path / "truth.json"))
    assert [h.to_json() for h in back.hand_events] == [h.to_json() for h in often.hand_events]


def _changes(store, level, seed):
    from storesense.fusion.node import FusionNode

    scenario = simulate(store, level, seed=seed, camera_fps=5)
    out = []
    node = FusionNode(store, out.append, run_id="honest")
    for m in scenario.messages:
        node.handle(m)
    node.flush()
    return scenario, Counter((m.change.shelf, m.change.sku, m.change.quantity, m.change.needs_review)
                             for m in out if m.type == "cart_event" and m.change is not None)


def test_the_fusion_charges_no_spurious_hand_on_a_weighed_shelf(store):
    """A hand with no weight change makes no cart change; without a load cell it is at most a flagged guess."""
    level = dataclasses.replace(LEVELS["busy"], shoppers=8, **{**OFF, "spurious_hand_per_min": 30.0})
    spurious, with_them = _changes(store, level, 3)
    _, without = _changes(store, dataclasses.replace(level, spurious_hand_per_min=0.0), 3)
    seen = Counter(h.shelf for h in spurious.hand_events if h.cause == "spurious")
    weighed = {w.shelf for w in store.weight_sensors}
    assert sum(n for shelf, n in seen.items() if shelf in weighed) >= 20


    def on_weighed(changes):  # what changed on weighed shelves (a nearby spurious hand may add doubt: no flags)
        return Counter({k[:3]: n for k, n in changes.items() if k[0] in weighed})

    assert on_weighed(with_them) == on_weighed(without) and sum(without.values()) > 10
    # hands-only shelves (the bread shelf): a spurious hand may look like a pick, but never silently
    extra = Counter({k: n for k, n in (with_them - without).items() if k[0] not in weighed})
    assert all(needs_review for (_, _, _, needs_review) in extra)
