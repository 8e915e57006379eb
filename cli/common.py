"""What every command module of the command line shares: the consoles, the ``--config`` option, loading it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import StoreConfig, example_store_path, load_store_config

console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, soft_wrap=True)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="Store YAML (default: the example store).")


def load_config(path: Optional[Path]) -> StoreConfig:
    """The store config at ``path``, or the example store's when none is given."""
    return load_store_config(path or example_store_path())


def progress_bar() -> Progress:
    """A transient progress bar on :data:`console`: description, bar, done/total, elapsed time."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
