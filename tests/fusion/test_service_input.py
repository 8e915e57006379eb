"""FusionService's live input: no message ends serve(), and the journal rotates when the store is empty."""

from __future__ import annotations

import logging

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.datasets.sim.synthetic import generate_scenario
from storesense.fusion.journal import InputJournal
from storesense.fusion.service import FusionService, store_empty
from storesense.transport import ZmqPublisher


@pytest.fixture(scope="module")
def cfg():
    return load_store_config(example_store_path())


def test_a_message_the_node_fails_on_is_counted_and_logged_and_serve_goes_on(cfg, caplog):
    messages = generate_scenario(cfg, shoppers=1, seed=3).messages[:400]
    bad = {messages[10].event_id, messages[200].event_id, messages[201].event_id}
    fused: list[str] = []
    service = FusionService(cfg, sinks=[])
    real = service.node.handle

    def handle(msg):
        if msg.event_id in bad:
            raise ValueError(f"cannot fuse {msg.event_id}")
        fused.append(msg.event_id)
        real(msg)

    service.node.handle = handle
    endpoint = service.listen("tcp://127.0.0.1:*")
    service.start()
    thread = service.serve_in_thread(poll_s=0.2, until=len(messages))
    with ZmqPublisher(endpoint, store=cfg.store.id) as pub, caplog.at_level(logging.INFO):
        assert pub.wait_for_subscriber(10.0)
        for msg in messages:
            pub.publish(msg)
        thread.join(30)
    service.close()
    assert not thread.is_alive() and service.error is None
    assert service.handled == len(messages)
    assert fused == [m.event_id for m in messages if m.event_id not in bad]  # everything after a failure too
    assert service.counters["input_errors"] == 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # one line for the first failure; the two that follow within 10 s are counted, not logged
    assert len(errors) == 1 and "ValueError" in errors[0].getMessage() and errors[0].exc_info is None


def test_journal_rotates_when_the_store_is_empty_and_a_restart_carries_on_the_epoch(cfg, tmp_path):
    first = generate_scenario(cfg, shoppers=2, seed=5).messages
    second = generate_scenario(cfg, shoppers=2, seed=6).messages
    shift = first[-1].ts + 60.0 - second[0].ts  # the second group comes a minute after the first left
    second = [m.model_copy(update={"ts": m.ts + shift}) for m in second]
    path = tmp_path / "fusion.journal"

    out: list = []
    service = FusionService(cfg, journal=path, journal_rotate_entries=100, sinks=[out.append]).start()
    run_id = service.run_id
    service.run(first)  # the journal holds > 100 entries; at its end (a flush) the store is empty
    assert store_empty(service.node)
    assert InputJournal(path, cfg.store.id).read().epoch == 1 and service.node.run_id == f"{run_id}.1"
    half = len(second) // 2
    for msg in second[:half]:
        service.handle(msg)
    service.journal.sync()
    n_out = len(out)
    # the process dies here (nothing closed); a new one starts from the journal: epoch 1 only
    again: list = []
    restarted = FusionService(cfg, journal=path, sinks=[again.append]).start()
    assert restarted.run_id == run_id and restarted.node.run_id == f"{run_id}.1"
    assert restarted.recovered == half
    assert [m.event_id for m in again] == [m.event_id for m in out[len(out) - len(again):n_out]]
    for msg in second[half:]:
        service.handle(msg)
        restarted.handle(msg)
    service.flush()
    restarted.flush()
    tail = out[n_out:]
    assert [m.model_dump() for m in again[-len(tail):]] == [m.model_dump() for m in tail]
    receipts = [m for m in out if m.type == "receipt"]
    assert len(receipts) == 4 and len({r.receipt_id for r in receipts}) == 4
    assert len({m.event_id for m in out}) == len(out)  # the epochs' ids never collide


def test_a_journal_of_another_run_or_store_is_refused(cfg, tmp_path):
    path = tmp_path / "j"
    FusionService(cfg, journal=path, run_id="a").start().close()
    with pytest.raises(Exception, match="carries on run 'a'"):
        FusionService(cfg, journal=path, run_id="b")
    other = cfg.model_copy(update={"store": cfg.store.model_copy(update={"id": "other-shop"})})
    with pytest.raises(Exception, match="a journal of store"):
        FusionService(other, journal=path)


def test_no_input_frame_ends_serve_and_the_valid_ones_fuse_as_without_them(cfg, caplog):
    """10,000 malformed frames (the hub fuzz test's) among a scenario's edge messages: serve() keeps
    going, and the outputs equal those of the same messages fused without the garbage."""
    from storesense.contracts import encode
    from storesense.fusion.node import FusionNode, run

    from ..hub.test_fuzz import _fuzz_items

    items, valid_fusion = _fuzz_items(seed=23)
    good = {encode(m) for m in valid_fusion}
    garbage = [(t, p) for t, p in items if p not in good]
    assert len(garbage) == 10_000
    messages = generate_scenario(cfg, shoppers=2, seed=1002).messages
    want: list = []
    run(FusionNode(cfg, want.append, run_id="fz"), messages)

    got: list = []
    service = FusionService(cfg, run_id="fz", sinks=[got.append])
    endpoint = service.listen("tcp://127.0.0.1:*")
    service.start()
    # a long poll: no pause (and so no flush) while the garbage arrives
    thread = service.serve_in_thread(poll_s=5.0, until=len(messages))
    per = len(garbage) // len(messages) + 1
    with ZmqPublisher(endpoint, store=cfg.store.id) as pub, caplog.at_level(logging.WARNING):
        assert pub.wait_for_subscriber(10.0)
        for i, msg in enumerate(messages):
            for topic, payload in garbage[i * per:(i + 1) * per]:
                pub._sock.send_multipart([topic.encode("utf-8"), payload])
            pub.publish(msg)
        thread.join(120)
    service.close()
    assert not thread.is_alive() and service.error is None
    assert service.handled == len(messages) and service.subscriber.decoder.rejected_total == 10_000
    assert [encode(m) for m in got] == [encode(m) for m in want]
    assert not [r for r in caplog.records if r.exc_info] and "Traceback" not in caplog.text


def test_a_clean_stop_with_the_store_empty_leaves_nothing_to_replay(cfg, tmp_path):
    path = tmp_path / "fusion.journal"
    messages = generate_scenario(cfg, shoppers=2, seed=5).messages
    with FusionService(cfg, journal=path, sinks=[]) as service:
        run_id = service.run_id
        half = len(messages) // 2
        for msg in messages[:half]:
            service.handle(msg)
        service.flush()
        assert not store_empty(service.node)
    # stopped with shoppers inside: the next start carries them on
    again = FusionService(cfg, journal=path, sinks=[]).start()
    assert again.recovered == half + 1 and again.run_id == run_id
    assert any(not s.closed for s in again.node.sessions.values())
    for msg in messages[half:]:
        again.handle(msg)
    again.flush()
    assert store_empty(again.node)
    again.close()
    # stopped with the store empty: a new epoch, nothing to replay, same run
    third = FusionService(cfg, journal=path, sinks=[]).start()
    assert third.recovered == 0 and third.run_id == run_id and third.node.run_id == f"{run_id}.1"
    third.close()
