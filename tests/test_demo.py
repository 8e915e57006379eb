"""The README's demo: the whole store over ZeroMQ, MQTT (embedded broker) and SQLite."""

import os
import re
import subprocess
import sys
import time

from storesense.config import example_store_path, load_store_config
from storesense.demo import HEARTBEAT_S, run_demo, with_heartbeats
from storesense.fusion.node import FusionNode, run


def test_demo_receipts_match_truth_over_real_transports(tmp_path):
    """The Foundation's simple generator: every receipt right, end to end over the real transports."""
    cfg = load_store_config(example_store_path())
    seen = []
    result = run_demo(cfg, shoppers=4, seed=3, db_path=str(tmp_path / "hub.db"), record_dir=str(tmp_path),
                      progress=lambda done, total, stage: seen.append((done, total)), level="simple")
    assert result.all_match, [(c.truth and c.truth.cart(), c.receipt) for c in result.checks]
    assert result.counters["hub.stored"] > 0
    assert result.counters["hub.malformed"] == 0
    assert seen and seen[-1][0] == seen[-1][1]
    assert (tmp_path / "edge.jsonl").stat().st_size > 0
    assert (tmp_path / "fusion.jsonl").stat().st_size > 0


def test_demo_on_the_simulator_publishes_what_the_fusion_decides(tmp_path):
    """The default demo (simulator, quiet level): the hub gets exactly the receipts that fusing the same
    scenario in process gives, none lost or changed on the way."""
    cfg = load_store_config(example_store_path())
    result = run_demo(cfg, shoppers=4, seed=2, db_path=str(tmp_path / "hub.db"), page_port=None)
    out = []
    run(FusionNode(cfg, out.append, run_id="demo-2"), result.scenario.messages)

    def lines(receipts):
        return sorted(tuple((line.sku, line.quantity) for line in r.lines) for r in receipts)

    assert lines(c.receipt for c in result.checks if c.receipt) == lines(m for m in out if m.type == "receipt")
    assert len(result.checks) >= 4 and result.counters["hub.malformed"] == 0


def test_demo_command_prints_receipts(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo's temporary database goes here, and is removed
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "demo", "--shoppers", "3", "--seed", "5"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b[0-3]/3 receipts match the ground truth", proc.stdout), proc.stdout
    assert "total" in proc.stdout
    # the page's URL and the till's credentials come before anything else the run prints
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert lines[1].startswith("live store page: http://127.0.0.1:"), lines[:3]
    assert re.match(r"till API: export STORESENSE_HUB=http://127\.0\.0\.1:\d+ STORESENSE_TOKEN=\S+", lines[2])
    assert "--live" in lines[3]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("storesense-demo-")]


def test_paced_demo_reports_each_receipt_as_its_shopper_leaves():
    cfg = load_store_config(example_store_path())
    heard = []
    started = time.monotonic()
    # 20x: the first shopper leaves about 1.3 s into a 3.5 s run, so its receipt has a margin of
    # about 2 s before the end even on a loaded machine (at 60x the whole store took 1.2 s and the
    # receipts of a slow run all landed at its end)
    result = run_demo(cfg, shoppers=3, seed=4, page_port=None, speed=20.0,
                      on_receipt=lambda check: heard.append((time.monotonic() - started, check)))
    span = max(m.ts for m in result.scenario.messages) - min(m.ts for m in result.scenario.messages)
    assert result.seconds >= span / 20.0 * 0.95  # paced: not faster than asked
    assert len(heard) == sum(c.receipt is not None for c in result.checks) >= 2
    # the first receipt came while the store was still playing, not in a batch at the end
    assert heard[0][0] < result.seconds - 0.5
    assert {r.receipt_id for _, r in heard} == {c.receipt.receipt_id for c in result.checks if c.receipt}
    assert result.db_path == ""  # temporary, removed


def test_heartbeats_every_five_simulated_seconds_when_paced():
    cfg = load_store_config(example_store_path())
    from storesense.datasets.sim.simulator import simulate

    msgs = simulate(cfg, "quiet", shoppers=2, seed=1).messages
    beats = [m for m in with_heartbeats(msgs) if m.type == "node_status" and m.node == "cam10"]
    end = max(m.ts for m in msgs)
    assert len(beats) >= (end - beats[0].ts) // HEARTBEAT_S
    gaps = [b.ts - a.ts for a, b in zip(beats, beats[1:])]
    assert max(gaps) <= HEARTBEAT_S + 1e-6
    assert len({b.event_id for b in beats}) == len(beats)


def test_level_is_a_choice_checked_before_anything_runs():
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "demo", "--level", "hard"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "'hard' is not one of 'quiet', 'busy', 'crowded', 'simple'" in proc.stdout + proc.stderr
    assert "storesense demo:" not in proc.stdout.split("error")[0]  # no header before the error


def test_replay_of_a_missing_file_names_it_at_once(tmp_path):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "replay", str(tmp_path / "missing.jsonl")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"{tmp_path / 'missing.jsonl'}: no such file" in proc.stdout + proc.stderr
    assert "fusion node" not in proc.stdout + proc.stderr
    assert time.monotonic() - started < 8.0  # it used to wait 10 s for a subscriber first
