"""MQTT over TLS with per-node certificates, passwords and the ACL written by `storesense security init`,
against a real Mosquitto started with the config it wrote: every node connects with its own login, a camera cannot forge a bill, and a
client without a certificate (or with a wrong password) cannot connect."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from storesense.config import example_store_path, load_store_config
from storesense.contracts import CartChange, CartEvent, Receipt, ReceiptLine, Stamper, encode
from storesense.errors import TransportError
from storesense.hub.auth import TerminalRegistry
from storesense.hub.service import HubService
from storesense.transport import MqttPublisher
from storesense.transport.local_broker import free_port, wait_for_port
from storesense.transport.mqtt import parse_mqtt_endpoint
from storesense.transport.security import mosquitto_acl

CFG = load_store_config(example_store_path())
STORE = CFG.store.id
NODES = {"hub": "hub", "fusion": "fusion", "cam1": "edge"}
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def secure_broker(tmp_path):
    """Mosquitto started with what `storesense security init` wrote: TLS listener needing a client
    certificate, the password file and the ACL; plus a CA-signed certificate for a node with no login."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    port = free_port()
    small = CFG.model_copy(update={"cameras": CFG.cameras[:1], "ble_nodes": [], "weight_sensors": [],
                                   "zones": [z.model_copy(update={"gates": []}) for z in CFG.zones]})
    assert main_ok(["security", "init", "--out", str(tmp_path / "sec"), "--host", "127.0.0.1", "--port", str(port)],
                   small, tmp_path)
    root = tmp_path / "sec"
    nodes = root / "nodes"
    assert sorted(p.name for p in nodes.iterdir()) == sorted(NODES)
    intruder = nodes / "intruder"
    intruder.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-new", *ec, "-keyout", "intruder.key", "-out", "intruder.csr", "-subj", "/CN=intruder", cwd=intruder)
    _openssl("x509", "-req", "-in", "intruder.csr", "-CA", str(root / "ca.crt"), "-CAkey", str(root / "ca.key"),
             "-CAcreateserial", "-out", "intruder.crt", "-days", "2", cwd=intruder)
    conf = root / "broker" / "mosquitto.conf"
    log = root / "broker" / "mosquitto.log"
    conf.write_text(conf.read_text() + "\n".join([
        f"log_dest file {log}", "log_type error", "log_type warning", "log_type notice", f"user {getpass.getuser()}", ""]))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not wait_for_port("127.0.0.1", port, timeout=10.0):
            pytest.fail(f"mosquitto did not start: {log.read_text() if log.exists() else ''}")

        def url(node: str, *, cert: str | None = None, password: bool = True, scheme: str = "mqtts") -> str:
            cert = cert or node
            d = nodes / cert
            query = f"ca={root / 'ca.crt'}&cert={d / f'{cert}.crt'}&key={d / f'{cert}.key'}" if scheme == "mqtts" else ""
            if password and (nodes / node / f"{node}.pass").exists():
                query += f"&password_file={nodes / node / f'{node}.pass'}"
            return f"{scheme}://{node}@127.0.0.1:{port}" + (f"?{query.lstrip('&')}" if query else "")

        assert url("cam1") == (nodes / "cam1" / "mqtt.url").read_text().strip().replace(
            str(nodes / "cam1" / "ca.crt"), str(root / "ca.crt"))
        yield url, nodes
    finally:
        proc.terminate()
        proc.wait(10)


def main_ok(argv: list[str], config, tmp_path: Path) -> bool:
    """Run the storesense command line with ``config`` written to a file; True when it exits 0."""
    from storesense.cli import main

    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    try:
        main([*argv, "--config", str(path)])
    except SystemExit as exc:
        return exc.code in (0, None)
    return True


def _wait(pred, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_url_carries_tls_files_and_a_password_file_never_shown(tmp_path):
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "p").write_text("s3cret\n")
    ep = parse_mqtt_endpoint(f"mqtts://cam1@broker?ca={tmp_path / 'ca.crt'}&password_file={tmp_path / 'p'}")
    assert (ep.host, ep.port, ep.tls, ep.user, ep.password) == ("broker", 8883, True, "cam1", "s3cret")
    assert "s3cret" not in repr(ep)
    for bad, why in [("mqtt://h?ca=/x", "need mqtts"), ("mqtts://h?cert=/a", "go together"),
                     ("mqtts://h?ca=/no/such/file", "does not exist"), ("mqtts://h?colour=red", "unknown option")]:
        with pytest.raises(TransportError, match=why):
            parse_mqtt_endpoint(bad)
    with pytest.raises(TransportError) as err:
        parse_mqtt_endpoint("mqtts://u:topsecret@h?bogus=1")
    assert "topsecret" not in str(err.value)


def test_acl_gives_each_role_only_its_own_topics():
    acl = mosquitto_acl("shop", NODES)
    cam = acl.split("user cam1")[1].split("user ")[0]
    assert "topic write storesense/shop/edge/cam1/person" in cam
    assert "receipts" not in cam and "carts" not in cam and "topic read" not in cam
    fusion = acl.split("user fusion")[1].split("user ")[0]
    assert "topic write storesense/shop/carts/+/events" in fusion and "lights" not in fusion
    hub = acl.split("user hub")[1]
    assert "topic read storesense/shop/#" in hub and "topic write storesense/shop/lights/+/set" in hub
    assert "receipts" not in hub


def test_nodes_connect_with_their_own_logins_and_a_camera_cannot_forge_a_bill(secure_broker, tmp_path):
    url, _ = secure_broker
    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=url("hub"), terminals=TerminalRegistry(),
                     client_id=f"tls-hub-{uuid.uuid4().hex[:6]}", port=0).start()
    fusion = MqttPublisher(url("fusion"), store=STORE, node="fusion", kind="fusion").connect(5)
    cam = MqttPublisher(url("cam1"), store=STORE, node="cam1", kind="camera").connect(5)
    try:
        st, forger = Stamper("fusion", run_id=uuid.uuid4().hex), Stamper("fusion", run_id=uuid.uuid4().hex)
        fusion.publish(st.make(CartEvent, 1.0, shopper="s-tls", phase="new", cart_version=0))
        # the camera's login publishes a receipt on the receipts topic (the ACL drops it) and a
        # cart event on its own topic (the ACL lets it through; the hub's decoder refuses it)
        forged_receipt = forger.make(Receipt, 2.0, shopper="s-tls", receipt_id="r-forged", currency="EUR", total=34.95,
                                     opened_ts=1.0, closed_ts=2.0,
                                     lines=(ReceiptLine(sku="COFFEE", name="Coffee", quantity=5, unit_price=6.99,
                                                        amount=34.95),))
        cam.publish(forged_receipt)
        forged_pick = forger.make(CartEvent, 2.1, shopper="s-tls", phase="update", cart_version=1,
                                  change=CartChange(sku="COFFEE", quantity=5, confidence=1.0))
        cam._client.publish(f"storesense/{STORE}/edge/cam1/person", encode(forged_pick), qos=1).wait_for_publish(5)
        assert cam.flush(5)
        last = st.make(CartEvent, 3.0, shopper="s-tls", phase="update", cart_version=1,
                       change=CartChange(sku="MILK-1L", quantity=1, confidence=0.9))
        fusion.publish(last)
        assert fusion.flush(5)
        assert _wait(lambda: last.event_id in hub.store.event_ids()), "the fusion node's events did not arrive"
        stored = set(hub.store.event_ids())
        assert forged_receipt.event_id not in stored and forged_pick.event_id not in stored
        assert hub.store.receipts() == []
        assert hub.ingest.malformed == 1  # the forged pick, refused for its topic
        assert _wait(lambda: hub.store.nodes().get("cam1") == "online"), "the camera's own status topic is allowed"
    finally:
        cam.close(1)
        fusion.close(1)
        hub.stop()


@pytest.mark.parametrize("case", ["no certificate", "plain mqtt", "wrong password", "unknown certificate user"])
def test_a_client_without_its_credentials_cannot_connect(secure_broker, case):
    url, d = secure_broker
    target = {
        "no certificate": url("cam1").split("&cert=")[0] + f"&password_file={d / 'cam1' / 'cam1.pass'}",
        "plain mqtt": url("cam1", scheme="mqtt"),
        "wrong password": url("cam1").replace("cam1/cam1.pass", "fusion/fusion.pass"),
        "unknown certificate user": url("intruder"),
    }[case]
    pub = MqttPublisher(target, store=STORE, node="cam1", kind="camera", client_id=f"x-{uuid.uuid4().hex[:6]}")
    with pytest.raises(TransportError, match="cannot reach MQTT broker"):
        pub.connect(2)
