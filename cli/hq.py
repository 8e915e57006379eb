"""``storesense hq``: headquarters' consumer, every store's events from the HQ JetStream stream into PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoresenseError
from .common import console, load_config


def hq(
    db: str = typer.Option(..., help="postgresql://user@host:port/dbname of the HQ database."),
    nats: str = typer.Option("nats://127.0.0.1:4222", help="The HQ nats-server (client port) the stores link to."),
    store: list[str] = typer.Option([], "--store", help="A store id to source (repeat for each store)."),
    config: list[Path] = typer.Option([], "--config", help="A store YAML to source (repeat; its store.id is used)."),
    table: str = typer.Option("hq_events", help="PostgreSQL table for the events."),
    batch: int = typer.Option(500, min=1, help="Most events per database commit."),
    keep_days: float = typer.Option(30.0, min=0.01, help="Days the HQ stream keeps events (the database keeps them "
                                                          "for good)."),
) -> None:
    """Run headquarters' consumer: sources every store's stream, writes each event once, acks after commit."""
    from ..hub.hq import HqConsumer, HqDatabase

    stores = list(store) + [load_config(path).store.id for path in config]
    if not stores:
        raise StoresenseError("storesense hq: name the stores with --store ID or --config store.yaml")
    database = HqDatabase(db, table)
    consumer = HqConsumer(nats, database, stores, batch=batch, max_age_s=keep_days * 86400.0)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        console.print(f"hq: sourcing {', '.join(stores)} from {nats} into {table}", highlight=False, soft_wrap=True)
        await consumer.run(stop)

    try:
        asyncio.run(main())
    finally:
        database.close()
        console.print(f"hq: stopped; {consumer.stored} events stored, {consumer.duplicates} duplicates dropped",
                      highlight=False, soft_wrap=True)
