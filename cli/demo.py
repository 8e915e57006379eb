"""``storesense demo``: the whole store simulated end to end, each receipt printed against the truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import CONFIG_OPTION, console, load_config, progress_bar


def demo(
    config: Optional[Path] = CONFIG_OPTION,
    shoppers: int = typer.Option(6, min=1, max=50, help="Number of simulated shoppers."),
    seed: int = typer.Option(1, help="Scenario seed (same seed, same scenario)."),
    db: Optional[Path] = typer.Option(None, help="SQLite file for the hub (default: a temporary file)."),
    record: Optional[Path] = typer.Option(None, help="Folder to record edge.jsonl and fusion.jsonl into."),
    linger: float = typer.Option(0.0, min=0.0, help="Keep the hub's live page up this many seconds after the run."),
    level: str = typer.Option("quiet", help="Store simulator difficulty level (quiet, busy, crowded), or 'simple' "
                                            "for the Foundation's simple generator."),
) -> None:
    """Run a simulated store end to end and print each shopper's receipt against the truth."""
    from ..demo import run_demo

    cfg = load_config(config)
    console.print(f"[bold]storesense demo[/]: {cfg.store.name}, {shoppers} shoppers, seed {seed}")
    with progress_bar() as bar:
        task = bar.add_task("simulating store", total=None)

        def progress(done: int, total: int, stage: str) -> None:
            bar.update(task, completed=done, total=total, description=stage)

        result = run_demo(cfg, shoppers=shoppers, seed=seed, db_path=str(db) if db else None,
                          record_dir=str(record) if record else None, progress=progress, page_linger_s=linger,
                          on_page=lambda url: console.print(f"live store page: {url}", highlight=False),
                          level=level)
    n = len(result.scenario.messages)
    console.print(f"streamed {n} edge messages over ZeroMQ; fusion published "
                  f"{sum(v for k, v in result.counters.items() if k.startswith('out.'))} messages over MQTT; "
                  f"the hub stored {result.counters.get('hub.stored', 0)} (SQLite: {result.db_path})")
    for check in result.checks:
        _print_receipt(check, cfg.store.currency)
    ok = sum(c.matches for c in result.checks)
    style = "green" if result.all_match else "red"
    console.print(f"[{style}]{ok}/{len(result.scenario.shoppers)} receipts match the ground truth[/] "
                  f"({result.seconds:.1f} s)")
    if record:
        console.print(f"recorded to {record}/edge.jsonl and {record}/fusion.jsonl "
                      f"(replay: storesense fusion --input {record}/edge.jsonl)")


def _print_receipt(check, currency: str) -> None:
    """One shopper's receipt as a table, with whether it matches the ground truth."""
    truth, receipt = check.truth, check.receipt
    who = truth.id if truth else "unknown shopper"
    if receipt is None:
        console.print(f"[red]{who}: no receipt[/] (truth: {truth.cart() if truth else {}})")
        return
    console.print(f"\n[bold]{who}[/]  session {receipt.shopper}  receipt {receipt.receipt_id}", highlight=False)
    table = Table(show_edge=False)
    table.add_column("qty", justify="right")
    table.add_column("item")
    table.add_column("unit", justify="right")
    table.add_column(currency, justify="right")
    for line in receipt.lines:
        table.add_row(str(line.quantity), line.name, f"{line.unit_price:.2f}", f"{line.amount:.2f}")
    table.add_row("", "[bold]total[/]", "", f"[bold]{receipt.total:.2f}[/]")
    console.print(table)
    if check.matches:
        note = "[green]matches ground truth[/]"
    else:
        note = f"[red]differs from ground truth[/] {truth.cart() if truth else ''}"
    if receipt.needs_review:
        note += " [yellow](has lines awaiting review)[/]"
    console.print("  " + note)
