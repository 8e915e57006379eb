"""``storesense config check|schema``: validate and document store configuration files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import StoreConfig, load_store_config
from .common import console

config_app = typer.Typer(no_args_is_help=True, help="Check and document store configuration files.")


@config_app.command("check")
def config_check(path: Path = typer.Argument(..., help="Store YAML file.")) -> None:
    """Validate a store config file and summarise it."""
    cfg = load_store_config(path)
    console.print(f"[green]{path}: valid[/] - store {cfg.store.id!r}: {len(cfg.products)} products, "
                  f"{len(cfg.shelves)} shelves, {len(cfg.cameras)} cameras, {len(cfg.ble_nodes)} BLE nodes, "
                  f"{len(cfg.weight_sensors)} weight sensors, {len(cfg.zones)} zones")


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the store config (every field with its description)."""
    console.print_json(json.dumps(StoreConfig.model_json_schema()))
