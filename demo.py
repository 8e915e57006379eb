"""``storesense demo``: one store end to end over the real transports.

The synthetic generator plays the camera, BLE and shelf nodes and publishes
their messages over ZeroMQ; the fusion node (a
:class:`~storesense.fusion.service.FusionService` on a thread here) consumes
them and publishes shopper locations, zone events, cart events, cart states
and receipts over MQTT (QoS 1) to a broker (the embedded one unless the
config names a URL); the hub ingest stores them in SQLite. The demo then
compares each stored receipt with the scenario's ground truth, paired as the
cart scoring pairs them (:func:`~storesense.datasets.scoring.carts.pair_by_times`).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import StoreConfig
from .contracts import NodeStatus, Receipt, Stamper
from .transport.recording import Recorder
from .datasets.scoring.carts import pair_by_times
from .datasets.sim.synthetic import Scenario, TruthShopper, generate_scenario
from .errors import StoresenseError
from .fusion.service import FusionService
from .hub.auth import TerminalRegistry
from .hub.ingest import HubIngest
from .hub.service import start_live_page
from .hub.store import HubStore
from .transport import EmbeddedBroker, ZmqPublisher


@dataclass
class ReceiptCheck:
    """A receipt next to the shopper it belongs to and whether it matches the truth."""

    truth: TruthShopper | None
    receipt: Receipt | None

    @property
    def matches(self) -> bool:
        """True when the receipt lists exactly the items the shopper carried out."""
        if self.truth is None or self.receipt is None:
            return False
        return {l.sku: l.quantity for l in self.receipt.lines} == self.truth.cart()


@dataclass
class DemoResult:
    """What the demo ran and found."""

    scenario: Scenario
    checks: list[ReceiptCheck]
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    db_path: str = ""  # empty when the hub's database was a temporary one (removed after the run)

    @property
    def all_match(self) -> bool:
        """True when every shopper got a receipt that matches the ground truth."""
        return bool(self.checks) and all(c.matches for c in self.checks)


def match_receipts(shoppers: list[TruthShopper], receipts: list[Receipt]) -> list[ReceiptCheck]:
    """Pair receipts with true shoppers by when they entered and left (Hungarian)."""
    if not shoppers or not receipts:
        return [ReceiptCheck(s, None) for s in shoppers] + [ReceiptCheck(None, r) for r in receipts]
    checks = [ReceiptCheck(shoppers[i], receipts[j]) for i, j in pair_by_times(shoppers, receipts)]
    paired_s = {id(c.truth) for c in checks}
    paired_r = {id(c.receipt) for c in checks}
    checks += [ReceiptCheck(s, None) for s in shoppers if id(s) not in paired_s]
    checks += [ReceiptCheck(None, r) for r in receipts if id(r) not in paired_r]
    return sorted(checks, key=lambda c: c.truth.enter_ts if c.truth else float("inf"))


#: the till the demo registers, so the checkout API can be tried against it (docs/hub.md, "Till integration")
DEMO_TERMINAL = "demo-till"
#: seconds of simulated time between the simulated nodes' heartbeats when the demo is paced
HEARTBEAT_S = 5.0


@dataclass
class DemoPage:
    """Where the demo's hub answers: the live page and API URL, and the demo till's token."""

    url: str
    port: int
    terminal: str
    token: str

    @property
    def live_url(self) -> str:
        """The live page's address with the till's token in the fragment (the page keeps it; the
        fragment never reaches the server): the feed needs a viewer token."""
        return f"{self.url}#token={self.token}"


def with_heartbeats(messages: list, period_s: float = HEARTBEAT_S) -> list:
    """``messages`` plus a ``NodeStatus`` (online) every ``period_s`` from each node that announced itself.

    A real camera, BLE or shelf node heartbeats every few seconds; the simulators announce each node once.
    When the demo plays at a watchable pace, the hub would (rightly) call a node silent for 15 s offline.
    """
    first = {m.node: m for m in messages if isinstance(m, NodeStatus)}
    if not first or not messages:
        return list(messages)
    end = max(m.ts for m in messages)
    beats = []
    for node, announce in first.items():
        stamper = Stamper(node, f"{announce.source}-heartbeat")
        ts = announce.ts + period_s
        while ts < end:
            beats.append(stamper.make(NodeStatus, round(ts, 3), node=node, kind=announce.kind, state="online"))
            ts += period_s
    return sorted([*messages, *beats], key=lambda m: m.ts)


def run_demo(config: StoreConfig, *, shoppers: int = 6, seed: int = 1, db_path: str | None = None,
             record_dir: str | None = None, progress=None, timeout_s: float = 60.0, page_port: int | None = 0,
             on_page=None, page_linger_s: float = 0.0, level: str = "quiet", speed: float | None = None,
             on_receipt=None, keep_page=None) -> DemoResult:
    """Run the end-to-end demo; ``progress(done, total, stage)`` reports streaming progress.

    ``level`` (quiet, busy, crowded) is the store simulator's difficulty level;
    ``"simple"`` runs the Foundation's simple generator instead. The hub's live page and API are served
    on ``page_port`` (0: a free port; None: not at all) with a till registered, and a :class:`DemoPage`
    handed to ``on_page`` before the store opens. ``speed`` paces the store: simulated seconds per wall
    second (1.0: real time; None: as fast as it goes, for scripts and CI), with node heartbeats.
    ``on_receipt(receipt)`` hears each receipt as its shopper leaves (checked against the truth in the result:
    receipts are paired with true shoppers by entry and exit times over the whole run). After the run,
    ``keep_page(page)`` (blocking, e.g. until Ctrl-C) or ``page_linger_s`` keeps the page up.
    A temporary database (no ``db_path``) is removed when the demo ends.
    """
    started = time.monotonic()
    if level == "simple":  # the Foundation's simple generator
        scenario = generate_scenario(config, shoppers=shoppers, seed=seed)
    else:  # the store simulator at a difficulty level
        from .datasets.sim.simulator import simulate

        scenario = simulate(config, level, shoppers=shoppers, seed=seed)
    messages = with_heartbeats(scenario.messages) if speed else list(scenario.messages)
    store_id = config.store.id
    workdir = None
    if db_path is None:
        workdir = Path(tempfile.mkdtemp(prefix="storesense-demo-"))
        db_path = str(workdir / "hub.db")
    broker = None
    url = config.transports.mqtt.url
    if url is None:
        broker = EmbeddedBroker()
        broker.start()
        url = broker.url
    db = HubStore(db_path)
    hub = HubIngest(url, store_id, db, client_id=f"storesense-hub-demo-{seed}-{int(time.time())}")
    fusion = FusionService(config, run_id=f"demo-{seed}", mqtt_url=url,
                           mqtt_client_id=f"storesense-fusion-demo-{seed}-{int(time.time())}",
                           output=Path(record_dir) / "fusion.jsonl" if record_dir else None)
    endpoint = fusion.listen("tcp://127.0.0.1:*")
    edge = None
    edge_rec: Recorder | None = None
    page = None
    reported: set[str] = set()

    def report_receipts() -> None:
        """Hand each newly stored receipt to ``on_receipt`` (the truth pairing waits for the end: it is global)."""
        if on_receipt is None or db.count("receipt") <= len(reported):
            return
        for receipt in db.receipts():
            if receipt.receipt_id not in reported:
                reported.add(receipt.receipt_id)
                on_receipt(receipt)

    try:
        hub.start()
        if page_port is not None:
            token = secrets.token_urlsafe(16)
            page = start_live_page(config, db, port=page_port,
                                   terminals=TerminalRegistry.from_tokens({DEMO_TERMINAL: token}))[0]
            if on_page:
                on_page(DemoPage(page.url, page.port, DEMO_TERMINAL, token))
        fusion.start()
        total = len(messages)
        thread = fusion.serve_in_thread(poll_s=0.2, until=total)

        edge = ZmqPublisher(endpoint, store=store_id)
        if not edge.wait_for_subscriber(5.0):
            raise StoresenseError("the fusion node did not subscribe to the edge stream within 5 s")
        edge_rec = Recorder(Path(record_dir) / "edge.jsonl", store_id) if record_dir else None
        t0_wall, t0_sim = time.monotonic(), (messages[0].ts if messages else 0.0)
        for i, msg in enumerate(messages, 1):
            if speed:
                wait = t0_wall + (msg.ts - t0_sim) / speed - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                    report_receipts()
            edge.publish(msg)
            if edge_rec:
                edge_rec.write(msg)
            if progress and (i % 200 == 0 or i == total):
                progress(fusion.handled, total, "streaming edge messages")
        deadline = time.monotonic() + timeout_s
        while fusion.handled < total and thread.is_alive() and time.monotonic() < deadline:
            if progress:
                progress(fusion.handled, total, "fusing")
            time.sleep(0.05)
        fusion.stop(2.0)
        if fusion.error is not None:
            raise fusion.error
        if fusion.handled < total:
            raise StoresenseError(f"the fusion node handled {fusion.handled} of {total} messages "
                                  f"in {timeout_s:.0f} s")
        if progress:
            progress(total, total, "fusing")
        if not fusion.flush_output(10.0):
            raise StoresenseError("the broker did not acknowledge every fusion message within 10 s")
        expected = fusion.counters["out.receipt"]
        while db.count("receipt") < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        fusion.close()
        receipts = db.receipts()
        report_receipts()
        counters = dict(fusion.counters)
        counters["hub.stored"] = hub.stored
        counters["hub.malformed"] = hub.subscriber.decoder.rejected_total
        result = DemoResult(scenario, match_receipts(scenario.shoppers, receipts), counters,
                            time.monotonic() - started, "" if workdir else db_path)
        if page is not None and keep_page is not None:
            keep_page(result)
        elif page is not None and page_linger_s > 0:
            time.sleep(page_linger_s)
        return result
    finally:
        if edge_rec is not None:
            edge_rec.close()
        if edge is not None:
            edge.close()
        fusion.close()
        if page is not None:
            page.stop()
        hub.stop()
        db.close()
        if broker is not None:
            broker.stop()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
