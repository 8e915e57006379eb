"""Message contracts: encoding, validation of untrusted bytes, de-duplication."""

import logging

import pytest

from storesense.contracts import (
    MESSAGE_TYPES,
    Decoder,
    PersonObservation,
    Stamper,
    decode,
    encode,
    topic_for,
)
from storesense.errors import MessageError


def test_every_type_round_trips_through_json(all_message_samples):
    assert {m.type for m in all_message_samples} == set(MESSAGE_TYPES)
    for msg in all_message_samples:
        data = encode(msg)
        assert decode(data) == msg
        assert encode(decode(data)) == data  # byte-stable


def test_stamper_numbers_per_source_and_ids_are_unique_and_reproducible():
    a, b = Stamper("cam1", "run-1"), Stamper("cam1", "run-1")
    m1 = a.make(PersonObservation, 1.0, camera="cam1", frame=0, track_id=1, bbox=(0, 0, 1, 1), score=0.5)
    m2 = a.make(PersonObservation, 1.1, camera="cam1", frame=1, track_id=1, bbox=(0, 0, 1, 1), score=0.5)
    again = b.make(PersonObservation, 1.0, camera="cam1", frame=0, track_id=1, bbox=(0, 0, 1, 1), score=0.5)
    assert (m1.seq, m2.seq) == (1, 2)
    assert m1.event_id != m2.event_id
    assert again.event_id == m1.event_id  # same run id -> same ids (replay)
    other_run = Stamper("cam1").make(PersonObservation, 1.0, camera="cam1", frame=0, track_id=1,
                                     bbox=(0, 0, 1, 1), score=0.5)
    assert other_run.event_id != m1.event_id  # a restart never reuses ids


def test_stamper_event_ids_are_the_uuid5_of_source_run_and_seq():
    import uuid

    from storesense.contracts import EVENT_NAMESPACE

    for source, run in (("fusion", "run-1"), ("cam/1", "rün"), ("", "")):
        st = Stamper(source, run)
        for seq in [*range(2000), 10**12, 2**70]:
            assert st.event_id(seq) == str(uuid.uuid5(EVENT_NAMESPACE, f"{source}/{run}/{seq}"))
    st = Stamper("cam1", "run-1")
    st.event_id(1)
    st.run_id = "run-2"  # changed after use: the ids follow
    assert st.event_id(1) == str(uuid.uuid5(EVENT_NAMESPACE, "cam1/run-2/1"))


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"v": 1, "type": "teleport"}', "unknown message type 'teleport'"),
        (b'{"v": 9, "type": "receipt"}', "unsupported schema version 9"),
        (b'{"v": 1, "event_id": "e", "source": "ble-1", "seq": 1, "ts": 1.0, "type": "ble_sighting", '
         b'"node": "ble-1", "tag": "t", "rssi": NaN}', "rssi: Input should be a finite number"),
        (b'{"v": 1, "event_id": "e", "source": "cam1", "seq": 1, "ts": 1.0, "type": "person_observation", '
         b'"camera": "cam1", "frame": 0, "track_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9, '
         b'"floor": {"x": 1, "y": 2, "cov": [[0.1, 0.5], [0.5, 0.1]]}}', "floor.cov: .*positive semi-definite"),
    ],
)
def test_decode_rejects_garbage_with_reason(payload, reason):
    with pytest.raises(MessageError, match=reason):
        decode(payload)


def test_decode_names_the_bad_field(all_message_samples):
    obs = next(m for m in all_message_samples if m.type == "person_observation")
    bad = obs.model_dump()
    bad["score"] = 7
    import json

    with pytest.raises(MessageError, match=r"invalid person_observation: score: .*less than or equal to 1"):
        decode(json.dumps(bad))


def test_decoder_counts_logs_and_skips_and_drops_duplicates(all_message_samples, caplog):
    dec = Decoder("hub")
    good = encode(all_message_samples[0])
    with caplog.at_level(logging.WARNING):
        assert dec.decode(b"garbage", "storesense/s/x") is None
    assert "storesense/s/x" in caplog.text and "not JSON" in caplog.text
    assert dec.decode(good) is not None
    assert dec.decode(good) is None  # duplicate event id
    assert (dec.accepted, dec.rejected_total, dec.duplicates) == (1, 1, 1)


def test_topics_follow_the_layout(all_message_samples):
    topics = {m.type: topic_for("shop", m) for m in all_message_samples}
    assert topics["cart_state"].startswith("storesense/shop/carts/")
    assert topics["cart_state"].endswith("/state")
    assert topics["receipt"].startswith("storesense/shop/receipts/")
    assert topics["person_observation"].startswith("storesense/shop/edge/")
    assert all(t.startswith("storesense/shop/") for t in topics.values())


def test_a_cart_change_naming_alternatives_travels_as_cart_event_v2():
    from storesense.contracts import CartChange, CartEvent

    st = Stamper("fusion", "run-1")
    plain = st.make(CartEvent, 1.0, shopper="s-1", phase="update", cart_version=1,
                    change=CartChange(sku="MILK-1L", quantity=1, confidence=0.9))
    assert plain.v == 1 and decode(encode(plain)) == plain
    doubtful = st.make(CartEvent, 2.0, shopper="s-1", phase="update", cart_version=2,
                       change=CartChange(sku="MILK-1L", quantity=1, confidence=0.4, needs_review=True,
                                         alternatives=("s-2",)))
    assert doubtful.v == 2 and decode(encode(doubtful)).change.alternatives == ("s-2",)
    wire = encode(doubtful).replace(b'"v":2', b'"v":1')
    assert wire != encode(doubtful)
    with pytest.raises(MessageError, match="schema version 2"):
        decode(wire)
