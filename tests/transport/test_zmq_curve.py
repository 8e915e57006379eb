"""ZeroMQ CURVE between edge nodes and the fusion node: only listed keys deliver anything."""

from __future__ import annotations

import logging
import time

import pytest
import zmq
import zmq.auth

from storesense.contracts import Stamper, WeightChange
from storesense.errors import TransportError
from storesense.transport import ZmqPublisher, ZmqSubscriber
from storesense.transport.zeromq import CurveKeys

STORE = "teststore"

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq is built without CURVE")


def _weights(source: str, n: int) -> list:
    st = Stamper(source, run_id=f"curve-{source}")
    return [st.make(WeightChange, 1.0 + i, sensor="ws-a1", shelf="shelf-a", plate="a1", delta_g=-410.0,
                    total_g=2000.0 - i, started_ts=0.5 + i) for i in range(n)]


def _drain(sub: ZmqSubscriber, seconds: float) -> list:
    got, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        m = sub.recv(0.05)
        if m is not None:
            got.append(m)
    return got


def test_only_listed_keys_deliver(caplog):
    server_pub, server_sec = zmq.curve_keypair()
    good_pub, good_sec = zmq.curve_keypair()
    bad_pub, bad_sec = zmq.curve_keypair()
    sub = ZmqSubscriber("tcp://127.0.0.1:*", curve=CurveKeys(server_pub, server_sec, allowed=frozenset({good_pub})))
    good = ZmqPublisher(sub.endpoint, store=STORE, curve=CurveKeys(good_pub, good_sec, server_key=server_pub))
    unlisted = ZmqPublisher(sub.endpoint, store=STORE, curve=CurveKeys(bad_pub, bad_sec, server_key=server_pub))
    plain = ZmqPublisher(sub.endpoint, store=STORE)  # no CURVE at all
    try:
        with caplog.at_level(logging.WARNING):
            deadline = time.monotonic() + 5
            while not good.wait_for_subscriber(0.05) and time.monotonic() < deadline:
                sub.recv(0.01)
            assert good.wait_for_subscriber(0.01), "the listed edge node never got the subscription"
            _drain(sub, 0.5)  # the unlisted ones keep retrying meanwhile
            assert not unlisted.wait_for_subscriber(0.01) and not plain.wait_for_subscriber(0.01)
            sent = {"shelf-a": _weights("shelf-a", 50), "shelf-x": _weights("shelf-x", 50),
                    "shelf-p": _weights("shelf-p", 50)}
            for a, x, p in zip(*sent.values()):
                good.publish(a)
                unlisted.publish(x)
                plain.publish(p)
            got = _drain(sub, 1.5)
        assert [m.event_id for m in got] == [m.event_id for m in sent["shelf-a"]]
        assert set(sub.allow_list.refused) == {bad_pub}  # the plain one never gets as far as a key
        refusals = [r for r in caplog.records if "unlisted CURVE key" in r.getMessage()]
        assert len(refusals) == 1 and bad_pub.decode() in refusals[0].getMessage()  # logged once per peer
    finally:
        for pub in (good, unlisted, plain):
            pub.close(0)
        sub.close()


def test_keys_load_from_zmq_auth_files(tmp_path):
    clients = tmp_path / "edge-keys"
    clients.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(str(tmp_path), "fusion")
    cam_public, cam_secret = zmq.auth.create_certificates(str(tmp_path), "cam1")
    (clients / "cam1.key").write_text((tmp_path / "cam1.key").read_text())
    server = CurveKeys.load(server_secret, allowed_dir=clients)
    client = CurveKeys.load(cam_secret, server_key_file=server_public)
    assert client.server_key == server.public and server.allowed == {client.public}
    assert "secret" not in repr(client).replace("secret=", "")
    with pytest.raises(TransportError, match="cannot load CURVE keys"):
        CurveKeys.load(server_public)  # a public key file has no secret
    with pytest.raises(TransportError, match="server's public key"):
        ZmqPublisher("tcp://127.0.0.1:1", store=STORE, curve=CurveKeys(client.public, client.secret))
