"""`storesense deploy systemd`: units systemd accepts (systemd-analyze verify), and the Dockerfile builds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storesense.cli import app
from storesense.config import example_store_path, load_store_config

ROOT = Path(__file__).resolve().parents[2]


def _verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)


def test_units_for_every_kind_of_node(tmp_path):
    cfg = load_store_config(example_store_path())
    nodes = ["store", "hub", "fusion", cfg.cameras[0].id, cfg.ble_nodes[0].id]
    args = ["deploy", "systemd", "--out", str(tmp_path), "--user", "root", "--exe", sys.executable]
    for n in nodes:
        args += ["--node", n]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    units = sorted(tmp_path.glob("*.service"))
    assert len(units) == len(nodes)
    config = str(Path(example_store_path()).resolve())
    for unit in units:
        text = unit.read_text()
        assert "Restart=on-failure" in text and "User=root" in text and f"--config {config}" in text
        assert ("WatchdogSec=" in text) == ("-hub." in unit.name or "-store." in unit.name)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: units written but not verified")
    for unit in units:
        done = _verify(unit)
        assert done.returncode == 0, f"{unit.name}: {done.stderr}"
    # and verify does reject a broken unit, so the checks above mean something
    broken = tmp_path / "broken.service"
    broken.write_text(units[0].read_text().replace(f"ExecStart={sys.executable}", "ExecStart=relative/storesense"))
    assert _verify(broken).returncode != 0


def test_unknown_node_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(app, ["deploy", "systemd", "--node", "cam99", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "cam99" in str(result.exception) and "one of: store, hub, fusion, broker" in str(result.exception)


def _docker_usable() -> str | None:
    if shutil.which("docker") is None:
        return "docker not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return None if info.returncode == 0 else f"docker not usable here: {info.stderr.strip().splitlines()[-1:]}"


@pytest.mark.slow
def test_dockerfile_builds():
    why = _docker_usable()
    if why:
        pytest.skip(why)
    done = subprocess.run(["docker", "build", "-t", "storesense-test", str(ROOT)], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
