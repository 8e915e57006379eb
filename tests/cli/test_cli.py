"""Command-line mistakes: one line naming the command and option, exit status 2, whatever typer/click release."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from storesense.cli import app, main

README = Path(__file__).resolve().parents[2] / "README.md"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "storesense.cli", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args, expected", [
    (["edge", "ble", "--config", "store.yaml"], r"storesense edge ble: Missing option '--node'"),
    (["hub", "--port", "abc"], r"storesense hub: Invalid value for '--port'"),
    (["nosuchcmd"], r"storesense: No such command 'nosuchcmd'"),
])
def test_the_issues_three_mistakes_print_one_line_and_exit_2(args, expected):
    proc = _run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("args, expected", [
    (["config", "check"], r"storesense config check: Missing argument '(PATH|path)'"),  # missing argument
    (["demo", "--bogus"], r"storesense demo: No such option: --bogus"),  # unknown option
    (["demo", "--shoppers", "0"], r"storesense demo: Invalid value for '--shoppers'.*(1|range)"),  # out of range
    (["eval", "carts", "--seeds", "two"], r"storesense eval carts: Invalid value for '--seeds'"),  # wrong type
    (["eval", "nosuch"], r"storesense eval: No such command 'nosuch'"),  # unknown subcommand
    (["demo", "--shoppers"], r"storesense( demo)?: Option '--shoppers' requires an argument"),  # value missing
])
def test_each_kind_of_usage_mistake_is_one_line_naming_it_and_exit_2(args, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(expected, err[0]), err
    assert "--help" in err[0]  # says where to look


def test_a_group_called_bare_shows_its_help_not_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["eval"])
    out = capsys.readouterr()
    assert "carts" in out.out + out.err and "error" not in out.err.lower()


def _required_options() -> dict[str, list[str]]:
    """Each leaf command's path ('edge ble') and its required options ('--node'), from the app itself."""
    found: dict[str, list[str]] = {}

    def walk(command, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, path + [name])
            return
        found[" ".join(path)] = [max(p.opts, key=len) for p in command.params
                                 if p.required and getattr(p, "param_type_name", "") == "option"]

    walk(typer.main.get_command(app), [])
    return found


def test_the_readme_command_table_lists_every_required_option():
    table = [line for line in README.read_text(encoding="utf-8").splitlines()
             if line.startswith("| `storesense ")]
    required = _required_options()
    assert "edge ble" in required and required["edge ble"] == ["--node"]
    for command, options in required.items():
        rows = [row for row in table if re.search(rf"`storesense {re.escape(command)}\b|{re.escape(command.split()[-1])}\b",
                                                  row.split("|")[1])]
        assert rows, f"README command table has no row for 'storesense {command}'"
        for option in options:
            assert any(re.search(rf"{re.escape(command.split()[-1])}[^`/]*{re.escape(option)}\b", row.split("|")[1])
                       for row in rows), f"README row for 'storesense {command}' does not list {option}"


def test_fusion_on_a_recording_writes_what_the_node_emits(tmp_path, capsys):
    """``storesense fusion --input`` (the FusionService) records exactly what the node fuses in process."""
    from storesense.config import example_store_path, load_store_config
    from storesense.datasets.sim.synthetic import generate_scenario
    from storesense.fusion.node import FusionNode, run
    from storesense.transport.recording import record

    cfg = load_store_config(example_store_path())
    messages = generate_scenario(cfg, shoppers=2, seed=4).messages
    record(messages, tmp_path / "edge.jsonl", cfg.store.id)
    main(["fusion", "--input", str(tmp_path / "edge.jsonl"), "--output", str(tmp_path / "cli.jsonl"),
          "--run-id", "t"])
    assert "out.receipt=" in capsys.readouterr().out
    out: list = []
    run(FusionNode(cfg, out.append, run_id="t"), messages)
    record(out, tmp_path / "direct.jsonl", cfg.store.id)
    assert (tmp_path / "cli.jsonl").read_bytes() == (tmp_path / "direct.jsonl").read_bytes()
