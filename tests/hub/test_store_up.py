"""`storesense hub` with no broker and `storesense store up` + `storesense replay`: the demo's receipts, as processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from storesense.config import example_store_path, load_store_config
from storesense.contracts import decode
from storesense.demo import run_demo
from storesense.transport.local_broker import available_engines

from ..conftest import free_port


def _config_with(tmp_path: Path, broker_port: int, zmq_port: int) -> Path:
    raw = yaml.safe_load(Path(example_store_path()).read_text())
    raw["transports"]["mqtt"]["listen"] = f"127.0.0.1:{broker_port}"
    raw["transports"]["mqtt"]["data_dir"] = str(tmp_path / "broker")
    raw["transports"]["zmq"]["observations"] = f"tcp://127.0.0.1:{zmq_port}"
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "storesense.cli", *args]


def _receipt_lines(receipts) -> list[tuple]:
    return sorted((r.total, tuple(sorted((l.sku, l.quantity) for l in r.lines))) for r in receipts)


def _stored_receipts(db: Path):
    with sqlite3.connect(db) as conn:
        return [decode(row[0].encode()) for row in conn.execute("SELECT payload FROM receipts")]


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def test_store_up_then_replay_gives_the_demos_receipts(tmp_path):
    cfg_path = _config_with(tmp_path, free_port(), free_port())
    demo = run_demo(load_store_config(cfg_path), shoppers=3, seed=2, record_dir=str(tmp_path / "rec"),
                    page_port=None, db_path=str(tmp_path / "demo.db"))
    demo_receipts = [c.receipt for c in demo.checks if c.receipt is not None]
    assert demo_receipts
    db = tmp_path / "store.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli("store", "up", "--config", str(cfg_path), "--db", f"sqlite:///{db}", "--port", "0",
                                 "--terminals", str(tmp_path / "t.yaml")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "up: edge nodes publish" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert "up: edge nodes publish" in line, f"store up did not start: {line!r} rc={proc.poll()}"
        replay = subprocess.run(_cli("replay", str(tmp_path / "rec" / "edge.jsonl"), "--config", str(cfg_path),
                                     "--speed", "0"), capture_output=True, text=True, timeout=120, env=env)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        want = len(demo_receipts)
        deadline = time.monotonic() + 60
        while (not db.exists() or len(_stored_receipts(db)) < want) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "stopped; fusion" in out, out
    assert _receipt_lines(_stored_receipts(db)) == _receipt_lines(demo_receipts)


def test_hub_without_a_broker_starts_the_stores_own_and_serves(tmp_path):
    import httpx

    port = free_port()
    cfg_path = _config_with(tmp_path, port, free_port())
    proc = subprocess.Popen(_cli("hub", "--config", str(cfg_path), "--db", f"sqlite:///{tmp_path / 'hub.db'}",
                                 "--port", "0", "--terminals", str(tmp_path / "t.yaml")),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=tmp_path)
    try:
        lines = []
        while proc.poll() is None and not (lines and "API and live page at" in lines[-1]):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        engine = available_engines()[0]
        assert f"started the store's own {engine} broker on mqtt://127.0.0.1:{port}" in text, text
        url = text.split("API and live page at ")[1].split()[0]
        assert httpx.get(url, timeout=10).status_code == 200
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, text + out
