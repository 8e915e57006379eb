"""MQTT over TLS with per-node certificates, passwords and the ACL from :mod:`storesense.transport.security`,
against a real Mosquitto: every node connects with its own login, a camera cannot forge a bill, and a
client without a certificate (or with a wrong password) cannot connect."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

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


def make_pki(d: Path, clients: list[str]) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate per node (EC P-256), via openssl."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-store-ca",
             cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in [("server", ["-extfile", "server.ext"]), *[(c, []) for c in clients]]:
        _openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)


@pytest.fixture
def secure_broker(tmp_path):
    """Mosquitto with a TLS listener needing a client certificate, a password file and the generated ACL."""
    if MOSQUITTO is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto (with mosquitto_passwd) is not installed")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    make_pki(d, [*NODES, "intruder"])
    passwd = d / "passwd"
    passwd.touch()
    for node in NODES:
        (d / f"{node}.pass").write_text(f"pw-{node}-{uuid.uuid4().hex[:8]}\n")
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), node, (d / f"{node}.pass").read_text().strip()],
                       check=True, capture_output=True)
    (d / "acl").write_text(mosquitto_acl(STORE, NODES))
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text("\n".join([
        "per_listener_settings false", f"listener {port} 127.0.0.1",
        f"cafile {d / 'ca.crt'}", f"certfile {d / 'server.crt'}", f"keyfile {d / 'server.key'}",
        "require_certificate true", "allow_anonymous false", f"password_file {passwd}", f"acl_file {d / 'acl'}",
        f"log_dest file {d / 'mosquitto.log'}", "log_type error", "log_type warning", "log_type notice",
        f"user {getpass.getuser()}", ""]))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        if not wait_for_port("127.0.0.1", port, timeout=10.0):
            pytest.fail(f"mosquitto did not start: {(d / 'mosquitto.log').read_text() if (d / 'mosquitto.log').exists() else ''}")

        def url(node: str, *, cert: str | None = None, password: bool = True, scheme: str = "mqtts") -> str:
            cert = cert or node
            query = f"ca={d / 'ca.crt'}&cert={d / f'{cert}.crt'}&key={d / f'{cert}.key'}" if scheme == "mqtts" else ""
            if password and (d / f"{node}.pass").exists():
                query += f"&password_file={d / f'{node}.pass'}"
            return f"{scheme}://{node}@127.0.0.1:{port}" + (f"?{query.lstrip('&')}" if query else "")

        yield url, d
    finally:
        proc.terminate()
        proc.wait(10)


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
        "no certificate": url("cam1").split("&cert=")[0] + f"&password_file={d / 'cam1.pass'}",
        "plain mqtt": url("cam1", scheme="mqtt"),
        "wrong password": url("cam1").replace("cam1.pass", "fusion.pass"),
        "unknown certificate user": url("intruder"),
    }[case]
    pub = MqttPublisher(target, store=STORE, node="cam1", kind="camera", client_id=f"x-{uuid.uuid4().hex[:6]}")
    with pytest.raises(TransportError, match="cannot reach MQTT broker"):
        pub.connect(2)
