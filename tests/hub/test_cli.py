"""`storesense hub`: terminal tokens, and bad inputs as one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from storesense.cli import app
from storesense.errors import ConfigError, StoresenseError
from storesense.hub.auth import TerminalRegistry, hash_token


def test_add_terminal_prints_a_token_once_and_stores_only_its_hash(tmp_path):
    path = tmp_path / "terminals.yaml"
    result = CliRunner().invoke(app, ["hub", "--terminals", str(path), "--add-terminal", "till-9"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert len(token) >= 40
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only
    registry = TerminalRegistry.load(path)
    assert registry.verify(token).id == "till-9" and registry.verify(token).roles == ("checkout", "review", "viewer")
    assert registry.verify(token + "x") is None and registry.verify(None) is None
    # re-keying a terminal replaces its old token
    again = CliRunner().invoke(app, ["hub", "--terminals", str(path), "--add-terminal", "till-9"])
    new_token = again.output.strip().splitlines()[-1]
    registry = TerminalRegistry.load(path)
    assert len(registry) == 1 and registry.verify(token) is None and registry.verify(new_token).id == "till-9"


def test_a_bad_terminals_file_names_the_file_and_field(tmp_path):
    path = tmp_path / "terminals.yaml"
    path.write_text("terminals:\n  - {id: till-1, token_sha256: not-a-hash}\n")
    with pytest.raises(ConfigError, match=r"terminals.yaml: terminals\[0\]\.token_sha256"):
        TerminalRegistry.load(path)
    result = CliRunner().invoke(app, ["hub", "--terminals", str(path), "--mqtt", "mqtt://127.0.0.1:1"])
    assert isinstance(result.exception, StoresenseError) and "token_sha256" in str(result.exception)


def test_bad_database_url_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "storesense.cli", "hub", "--db", "mysql://db/x", "--mqtt",
                           "mqtt://127.0.0.1:1", "--terminals", "/nonexistent/terminals.yaml"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unsupported database URL 'mysql://db/x'")
    assert "Traceback" not in proc.stderr
