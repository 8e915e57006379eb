"""ZeroMQ CURVE from the command line: keys from `storesense security init`, a live `storesense fusion`
with the keys in its config accepts what `storesense replay --curve-keys` sends as a listed edge node,
nothing from an unlisted key or a plain client, and nothing a listed node sends under another node's name."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
import zmq

from storesense.config import example_store_path, load_store_config
from storesense.contracts import NodeStatus, Stamper
from storesense.fusion.journal import FLUSH
from storesense.transport import ZmqPublisher
from storesense.transport.local_broker import free_port
from storesense.transport.recording import record
from storesense.transport.zeromq import CurveKeys

from ..fusion_process import ENV, cli, interrupt, start_fusion


def _messages(journal: Path) -> int:
    return sum(1 for l in journal.read_bytes().split(b"\n")[1:] if l.strip() and l != FLUSH)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_fusion_accepts_only_listed_edge_keys_from_the_store_config(tmp_path):
    cfg = load_store_config(example_store_path())
    raw = cfg.model_dump(mode="json")
    raw["cameras"], raw["ble_nodes"], raw["weight_sensors"] = raw["cameras"][:1], [], []
    for z in raw["zones"]:
        z["gates"] = []
    raw["transports"]["zmq"]["observations"] = f"tcp://127.0.0.1:{free_port()}"
    raw["transports"]["zmq"]["curve_keys"] = str(tmp_path / "sec" / "nodes" / "fusion" / "zmq")
    cfg_path = tmp_path / "store.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    cfg = load_store_config(cfg_path)
    init = subprocess.run(cli("security", "init", "--config", str(cfg_path), "--out", str(tmp_path / "sec")),
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert init.returncode == 0, init.stdout + init.stderr
    cam_keys = tmp_path / "sec" / "nodes" / "cam1" / "zmq"
    assert sorted(p.name for p in cam_keys.iterdir()) == ["cam1.key", "cam1.key_secret", "fusion.key"]
    assert (cam_keys / "cam1.key_secret").stat().st_mode & 0o077 == 0

    st = Stamper("cam1", run_id="curve-cli")
    rec = tmp_path / "cam1.jsonl"
    record([st.make(NodeStatus, 1000.0 + i, node="cam1", kind="camera", state="online") for i in range(30)],
           rec, cfg.store.id)
    journal = tmp_path / "fusion.journal"
    proc, seen = start_fusion("--config", str(cfg_path), "--output", str(tmp_path / "out.jsonl"),
                              "--journal", str(journal))  # CURVE keys from the config
    try:
        assert "CURVE" in seen, seen
        endpoint = cfg.transports.zmq.observations

        # a listed edge node, through the CLI: everything arrives
        sent = subprocess.run(cli("replay", str(rec), "--config", str(cfg_path), "--speed", "0",
                                   "--curve-keys", str(cam_keys), "--node", "cam1"),
                              capture_output=True, text=True, env=ENV, timeout=60)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        deadline = time.monotonic() + 20
        while _messages(journal) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _messages(journal) == 30

        # an unlisted key (with the right server key) and a plain client: nothing arrives
        public, secret = zmq.curve_keypair()
        server = CurveKeys.load(cam_keys / "cam1.key_secret", server_key_file=cam_keys / "fusion.key").server_key
        intruders = [ZmqPublisher(endpoint, store=cfg.store.id, curve=CurveKeys(public, secret, server)),
                     ZmqPublisher(endpoint, store=cfg.store.id)]
        forged = Stamper("cam1", run_id="forged")
        for pub in intruders:
            assert not pub.wait_for_subscriber(1.5)  # never subscribed to: no connection
            for i in range(20):
                pub.publish(forged.make(NodeStatus, 2000.0 + i, node="cam1", kind="camera", state="online"))
        time.sleep(2.0)
        for pub in intruders:
            pub.close(0)
        assert _messages(journal) == 30

        # the listed camera's own key, sending under another node's name: refused; as itself: taken
        cam = ZmqPublisher(endpoint, store=cfg.store.id, curve=CurveKeys.edge(cam_keys, "cam1"))
        assert cam.wait_for_subscriber(10.0)
        other = Stamper("cam2", run_id="posing")
        for i in range(5):
            cam.publish(other.make(NodeStatus, 3000.0 + i, node="cam2", kind="camera", state="online"))
        cam.publish(st.make(NodeStatus, 3100.0, node="cam1", kind="camera", state="online"))
        deadline = time.monotonic() + 10
        while _messages(journal) < 31 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        cam.close()
        assert _messages(journal) == 31
    finally:
        out = interrupt(proc)
    assert proc.returncode == 0, out
    assert "refused a ZeroMQ peer with an unlisted CURVE key" in seen + out
    assert "source not allowed for the sender's key: 'cam1' sent as 'cam2'" in out


def test_the_stores_own_broker_refuses_the_lan_with_security_on(tmp_path):
    """The embedded broker has no logins or ACL: with CURVE keys configured it serves loopback only."""
    from storesense.errors import TransportError
    from storesense.transport.local_broker import start_store_broker

    raw = load_store_config(example_store_path()).model_dump(mode="json")
    raw["transports"]["mqtt"]["listen"] = f"0.0.0.0:{free_port()}"
    raw["transports"]["zmq"]["curve_keys"] = str(tmp_path / "keys")
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(raw))
    up = subprocess.run(cli("hub", "--config", str(path), "--db", str(tmp_path / "hub.db"), "--port", "0"),
                        capture_output=True, text=True, env=ENV, timeout=60)
    assert up.returncode == 2 and "serves loopback only" in up.stderr and "Traceback" not in up.stderr
    cfg = load_store_config(path)
    with pytest.raises(TransportError, match="security init"):
        start_store_broker(cfg.transports.mqtt, secure=True)
