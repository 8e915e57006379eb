"""The import rules of the package: layers, no datasets in runtime code, no cycles.

The rules are import-linter contracts in ``pyproject.toml`` (``[tool.importlinter]``);
this runs them with ``lint-imports`` so a wrong import fails the test run with the
tool's own message. The checker is itself tested: the same contracts, applied to
a tiny package with one injected violation, must break.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = "storesense"


def lint_imports(cwd: Path, config: Path) -> tuple[int, str]:
    """Run ``lint-imports`` (the one installed next to this Python) in ``cwd``; exit code and output."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.is_file():
        exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    proc = subprocess.run([str(exe), "--config", str(config), "--no-cache", "--no-logo"], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(cwd)})
    return proc.returncode, proc.stdout + proc.stderr


def contracts_config() -> dict:
    """The ``[tool.importlinter]`` table of pyproject.toml."""
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]


def test_the_package_keeps_its_import_contracts():
    code, out = lint_imports(REPO, REPO / "pyproject.toml")
    assert code == 0, out
    assert re.search(r"Contracts: \d+ kept, 0 broken", out), out


# --------------------------------------------------------------------------- the checker itself


def renamed(value, new_root: str):
    """``value`` (a config value) with the root package renamed to ``new_root``."""
    if isinstance(value, str):
        return re.sub(rf"\b{ROOT}\b", new_root, value)
    if isinstance(value, list):
        return [renamed(v, new_root) for v in value]
    if isinstance(value, dict):
        return {k: renamed(v, new_root) for k, v in value.items()}
    return value


def write_config(path: Path, table: dict) -> None:
    """Write an import-linter table as ``pyproject.toml`` (strings, booleans and lists of strings are all it has)."""
    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items() if k != "contracts"]
    for contract in table["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"] + [f"{k} = {json.dumps(v)}" for k, v in contract.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def fake_package(tmp_path: Path, root: str, table: dict) -> None:
    """An empty package with every package the contracts name, and nothing importing anything."""
    names = {root}
    for contract in table["contracts"]:
        for key in ("layers", "source_modules", "forbidden_modules", "ancestors"):
            for entry in contract.get(key, []):
                names.update(n.strip() for n in re.split(r"[|:]", entry))
    for name in sorted(names):
        folder = tmp_path.joinpath(*name.split("."))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(f'"""{name}"""\n', encoding="utf-8")


# Each case: modules to add (path under the root -> source) and the contracts that must then break.
VIOLATIONS = {
    "a lower layer imports a higher one": (
        {"transport/wire.py": "from ..hub import store\n", "hub/store.py": ""}, ["layers"]),
    "two runtime siblings import each other's package": (
        {"edge/node.py": "from ..fusion import tracker\n", "fusion/tracker.py": ""}, ["layers"]),
    "runtime code imports the scoring": (
        {"fusion/ble.py": "from ..datasets import scoring\n", "datasets/scoring.py": ""},
        ["layers", "runtime-without-datasets"]),
    "two modules import each other": (
        {"edge/detector.py": "from . import movenet\n", "edge/movenet.py": "from . import detector\n"}, ["acyclic"]),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_the_contracts_break_on_an_injected_violation(tmp_path, case):
    root = "fakestore"
    table = renamed(contracts_config(), root)
    by_id = {c["id"]: c["name"] for c in table["contracts"]}
    write_config(tmp_path / "pyproject.toml", table)
    fake_package(tmp_path, root, table)
    code, out = lint_imports(tmp_path, tmp_path / "pyproject.toml")
    assert code == 0, out  # the empty package keeps every contract

    modules, broken = VIOLATIONS[case]
    for rel, source in modules.items():
        (tmp_path / root / rel).write_text(source, encoding="utf-8")
    code, out = lint_imports(tmp_path, tmp_path / "pyproject.toml")
    flat = " ".join(out.split())
    assert code == 1, out
    for cid, name in by_id.items():
        assert f"{' '.join(name.split())} {'BROKEN' if cid in broken else 'KEPT'}" in flat, out
