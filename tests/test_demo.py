"""The README's demo: the whole store over ZeroMQ, MQTT (embedded broker) and SQLite."""

import re
import subprocess
import sys

from storesense.config import example_store_path, load_store_config
from storesense.demo import run_demo
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


def test_demo_command_prints_receipts():
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "demo", "--shoppers", "3", "--seed", "5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b[0-3]/3 receipts match the ground truth", proc.stdout), proc.stdout
    assert "total" in proc.stdout
