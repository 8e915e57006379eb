"""Crash-safe fusion: a `storesense fusion` process killed with SIGKILL mid-scenario carries on from its journal.

The restarted node rebuilds every open session, track and cart from the journal and
reuses the journaled run id: every receipt (id, lines, total) equals the uninterrupted
run's, and every event id it published belongs to the uninterrupted run (re-emitted
messages keep their ids; none comes twice with a different id).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import yaml

from storesense.config import example_store_path, load_store_config
from storesense.contracts import decode, encode
from storesense.datasets.sim.synthetic import generate_scenario
from storesense.fusion.journal import FLUSH
from storesense.transport import ZmqPublisher
from storesense.transport.recording import record, replay

from ..conftest import free_port
from ..fusion_process import ENV, cli, interrupt, start_fusion


def _config(tmp_path: Path) -> Path:
    raw = yaml.safe_load(Path(example_store_path()).read_text())
    raw["transports"]["zmq"]["observations"] = f"tcp://127.0.0.1:{free_port()}"
    path = tmp_path / "store.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _start(cfg: Path, out: Path, journal: Path) -> tuple[subprocess.Popen, str]:
    return start_fusion("--config", str(cfg), "--output", str(out), "--journal", str(journal))


def _journaled(journal: Path) -> tuple[int, bool]:
    """Messages in the journal, and whether its last entry is a flush."""
    lines = [l for l in journal.read_bytes().split(b"\n")[1:] if l.strip()]
    return sum(l != FLUSH for l in lines), bool(lines) and lines[-1] == FLUSH


def _feed(cfg, endpoint: str, messages, journal: Path, total: int) -> None:
    """Publish ``messages`` as the edge nodes would; return once the node journaled them all and paused."""
    pub = ZmqPublisher(endpoint, store=cfg.store.id)
    try:
        assert pub.wait_for_subscriber(30.0), "the fusion node never subscribed"
        for msg in messages:
            pub.publish(msg)
        deadline = time.monotonic() + 120
        while _journaled(journal) != (total, True) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _journaled(journal) == (total, True), f"journaled {_journaled(journal)}, want {total} then a flush"
    finally:
        pub.close()


def _outputs(path: Path) -> dict[str, bytes]:
    """Event id -> message bytes; the same id twice must be the same message."""
    out: dict[str, bytes] = {}
    for msg in replay(path):
        data = encode(msg)
        assert out.setdefault(msg.event_id, data) == data, f"event id {msg.event_id} published with two contents"
    return out


def test_sigkill_mid_scenario_then_restart_gives_the_uninterrupted_receipts(tmp_path):
    cfg_path = _config(tmp_path)
    cfg = load_store_config(cfg_path)
    scenario = generate_scenario(cfg, shoppers=4, seed=21)
    messages = scenario.messages
    # cut mid-scenario where time moves on (a camera frame is never cut in two), with shoppers inside
    mid = (messages[0].ts + messages[-1].ts) / 2
    cut = next(i for i, m in enumerate(messages) if m.ts > mid and m.ts > messages[i - 1].ts)
    assert any(s.enter_ts < messages[cut].ts < s.exit_ts for s in scenario.shoppers)
    endpoint = cfg.transports.zmq.observations
    journal, out = tmp_path / "fusion.journal", tmp_path / "out.jsonl"

    proc, first = _start(cfg_path, out, journal)
    try:
        _feed(cfg, endpoint, messages[:cut], journal, cut)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    run_id = json.loads(journal.read_bytes().split(b"\n")[0])["run_id"]
    assert f"run {run_id}" in first

    proc, second = _start(cfg_path, out, journal)
    try:
        assert f"carried on run {run_id}" in second, second
        open_now = int(second.split(" journal entries, ")[1].split(" open session")[0])
        assert open_now >= 1, second  # the crash came while shoppers were in the store
        _feed(cfg, endpoint, messages[cut:], journal, len(messages))
    finally:
        log = interrupt(proc)
    assert proc.returncode == 0, log
    assert "Traceback" not in log, log

    # the same input, uninterrupted, with the run id the journal kept
    rec, ref = tmp_path / "edge.jsonl", tmp_path / "ref.jsonl"
    record(messages, rec, cfg.store.id)
    done = subprocess.run(cli("fusion", "--config", str(cfg_path), "--input", str(rec), "--output", str(ref),
                               "--run-id", run_id), capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    got, want = _outputs(out), _outputs(ref)
    receipts = sorted(b for b in got.values() if b'"type":"receipt"' in b)
    want_receipts = sorted(b for b in want.values() if b'"type":"receipt"' in b)
    assert len(want_receipts) == len(scenario.shoppers)
    assert any(decode(r).lines for r in want_receipts)
    assert receipts == want_receipts  # ids, lines, totals, times: byte for byte
    # nothing published with an event id the uninterrupted run does not have, nothing of it missing
    assert set(got) == set(want)
