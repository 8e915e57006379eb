"""``storesense demo``: the whole store simulated end to end, each receipt printed against the truth."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import CONFIG_OPTION, console, load_config, progress_bar


class Level(str, Enum):
    """The store simulator's difficulty levels, and the Foundation's simple generator."""

    quiet = "quiet"
    busy = "busy"
    crowded = "crowded"
    simple = "simple"


#: simulated seconds per wall second with --live (a shopper crosses the shop in about half a minute)
LIVE_SPEED = 2.0


def demo(
    config: Optional[Path] = CONFIG_OPTION,
    shoppers: int = typer.Option(6, min=1, max=50, help="Number of simulated shoppers."),
    seed: int = typer.Option(1, help="Scenario seed (same seed, same scenario)."),
    db: Optional[Path] = typer.Option(None, help="SQLite file for the hub (default: a temporary file, removed "
                                                 "at the end)."),
    record: Optional[Path] = typer.Option(None, help="Folder to record edge.jsonl and fusion.jsonl into."),
    live: bool = typer.Option(False, "--live", help=f"Play the store at a watchable pace ({LIVE_SPEED:g}x real "
                                                    "time) and keep the live page up until Ctrl-C."),
    speed: Optional[float] = typer.Option(None, min=0.05, help="Play the store at this many times real time "
                                                               "(implies --live)."),
    port: int = typer.Option(0, min=0, max=65535, help="Port of the hub's live page and API (0: a free one)."),
    linger: float = typer.Option(0.0, min=0.0, help="Without --live: keep the page up this many seconds "
                                                    "after the run."),
    level: Level = typer.Option(Level.quiet, help="Store simulator difficulty level, or 'simple' for the "
                                                  "Foundation's simple generator."),
) -> None:
    """Run a simulated store end to end and print each shopper's receipt against the truth.

    Plain, it runs as fast as it can (seconds; for scripts and CI). With --live or --speed it plays the
    store at a watchable pace, prints each receipt as its shopper leaves and keeps the page up until Ctrl-C.
    """
    from ..demo import ReceiptCheck, run_demo

    cfg = load_config(config)
    pace = speed if speed is not None else (LIVE_SPEED if live else None)
    printed: set[str] = set()

    def on_page(page) -> None:
        console.print(f"[bold]live store page: {page.live_url}[/]", highlight=False, soft_wrap=True)
        console.print(f"till API: export STORESENSE_HUB={page.url.rstrip('/')} STORESENSE_TOKEN={page.token}"
                      f"   (terminal {page.terminal}; docs/hub.md, 'Till integration')", highlight=False, soft_wrap=True)
        if pace is None:
            console.print("  (this run takes a few seconds: add --live to watch it, or --linger SECONDS)",
                          highlight=False)

    def on_receipt(receipt) -> None:
        printed.add(receipt.receipt_id)
        _print_receipt(ReceiptCheck(None, receipt), cfg.store.currency, checked=False)

    def keep_page(result) -> None:
        _summary(result, cfg.store.currency, printed)
        console.print("[bold]the live page stays up: press Ctrl-C to stop[/]")
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopped")

    console.print(f"[bold]storesense demo[/]: {cfg.store.name}, {shoppers} shoppers, seed {seed}, level "
                  f"{level.value}" + (f", {pace:g}x real time" if pace else ""))
    with progress_bar() as bar:
        task = bar.add_task("simulating store", total=None)

        def progress(done: int, total: int, stage: str) -> None:
            bar.update(task, completed=done, total=total, description=stage)

        result = run_demo(cfg, shoppers=shoppers, seed=seed, db_path=str(db) if db else None,
                          record_dir=str(record) if record else None, progress=progress,
                          page_linger_s=0.0 if pace else linger, page_port=port, on_page=on_page,
                          level=level.value, speed=pace, on_receipt=on_receipt if pace else None,
                          keep_page=keep_page if pace else None)
    if not pace:
        _summary(result, cfg.store.currency, printed)
    if record:
        console.print(f"recorded to {record}/edge.jsonl and {record}/fusion.jsonl "
                      f"(replay: storesense fusion --input {record}/edge.jsonl)")


def _summary(result, currency: str, printed: set[str]) -> None:
    """What streamed, the receipts not yet printed, and how many match the ground truth."""
    n = len(result.scenario.messages)
    where = f"SQLite: {result.db_path}" if result.db_path else "SQLite: a temporary file, removed at exit"
    console.print(f"streamed {n} edge messages over ZeroMQ; fusion published "
                  f"{sum(v for k, v in result.counters.items() if k.startswith('out.'))} messages over MQTT; "
                  f"the hub stored {result.counters.get('hub.stored', 0)} ({where})")
    for check in result.checks:
        if check.receipt is None or check.receipt.receipt_id not in printed:
            _print_receipt(check, currency)
        else:  # printed when its shopper left: now the verdict against the truth
            who = check.truth.id if check.truth else "unknown shopper"
            verdict = "[green]matches ground truth[/]" if check.matches else \
                f"[red]differs from ground truth[/] {check.truth.cart() if check.truth else ''}"
            console.print(f"{who}: session {check.receipt.shopper}  receipt {check.receipt.receipt_id}  {verdict}",
                          highlight=False)
    ok = sum(c.matches for c in result.checks)
    style = "green" if result.all_match else "red"
    console.print(f"[{style}]{ok}/{len(result.scenario.shoppers)} receipts match the ground truth[/] "
                  f"({result.seconds:.1f} s)")


def _print_receipt(check, currency: str, checked: bool = True) -> None:
    """One shopper's receipt as a table, with whether it matches the ground truth (when ``checked``)."""
    truth, receipt = check.truth, check.receipt
    who = truth.id if truth else ("unknown shopper" if checked else "a shopper left")
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
    if not checked:
        if receipt.needs_review:
            console.print("  [yellow](has lines awaiting review)[/]")
        return
    if check.matches:
        note = "[green]matches ground truth[/]"
    else:
        note = f"[red]differs from ground truth[/] {truth.cart() if truth else ''}"
    if receipt.needs_review:
        note += " [yellow](has lines awaiting review)[/]"
    console.print("  " + note)
