"""Store analytics at the hub: the rollup, k-anonymity, the export, the API and a simulated day end to end."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import httpx
import pytest

from storesense.config import load_store_config, example_store_path
from storesense.contracts import (CartChange, CartEvent, Receipt, ReceiptLine, ShopperLocation, Stamper,
                                  StoreAnalytics, ZoneEvent, decode)
from storesense.hub.analytics import Rollup, build_report, merge_runs, suppress
from storesense.hub.analytics.rollup import ROLLUP_TABLES
from storesense.hub.auth import TerminalRegistry
from storesense.hub.store import HubStore

CFG = load_store_config(example_store_path())
T0 = 1_772_438_400.0  # 2026-03-02 08:00 UTC (09:00 in the store's Europe/Berlin)
COV = ((0.02, 0.0), (0.0, 0.02))


def _visit(f: Stamper, sid: str, t: float, *, cells: list[tuple[float, float]], buy: bool = True,
           zone: str = "aisle-ab") -> list:
    """One session: opens, walks ``cells`` one second each, visits ``zone``, maybe buys milk from A1, leaves."""
    msgs = [f.make(CartEvent, t, shopper=sid, phase="new", cart_version=0)]
    for i, (x, y) in enumerate(cells):
        msgs.append(f.make(ShopperLocation, t + i, shopper=sid, track="t", x=x, y=y, cov=COV))
    end = t + len(cells)
    msgs.append(f.make(ZoneEvent, t + 1, shopper=sid, zone=zone, phase="enter"))
    msgs.append(f.make(ZoneEvent, t + 2.5, shopper=sid, zone=zone, phase="exit", dwell_s=1.5))
    lines = ()
    if buy:
        msgs.append(f.make(CartEvent, t + 2, shopper=sid, phase="update", cart_version=1,
                           change=CartChange(sku="MILK-1L", quantity=1, confidence=0.9, shelf="A", plate="A1")))
        lines = (ReceiptLine(sku="MILK-1L", name="Whole milk 1 l", quantity=1, unit_price=1.09, amount=1.09),)
    msgs.append(f.make(CartEvent, end, shopper=sid, phase="end", cart_version=1 if buy else 0))
    msgs.append(f.make(Receipt, end, shopper=sid, receipt_id="r-" + sid, lines=lines, total=1.09 if buy else 0.0,
                       currency="EUR", opened_ts=t, closed_ts=end))
    return msgs


#: PostgreSQL for the portability test (tests/hub/test_store.py's server unless STORESENSE_PG_URL names another)
PG_URL = os.environ.get("STORESENSE_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_url(request, tmp_path):
    """A database URL for a HubStore: a SQLite file, or a private schema on PostgreSQL when reachable."""
    if request.param == "sqlite":
        yield str(tmp_path / "hub.db")
        return
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'storesense[postgres]')")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=2)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
    schema = f"analytics_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def _store_with(visits: list[list], url: str = ":memory:") -> tuple[HubStore, Rollup]:
    store = HubStore(url)
    rollup = Rollup(CFG, store.db, wall_guard_s=0)
    for msgs in visits:
        items = [(m, "") for m in msgs]
        added = store.ingest_many(items)
        rollup.observe([m for (m, _), a in zip(items, added) if a])
    return store, rollup


def test_a_visit_is_rolled_up_without_its_session_id():
    f = Stamper("fusion", run_id="t1")
    store, rollup = _store_with([_visit(f, "s-secret-1", T0, cells=[(4.1, 3.1), (4.2, 3.2), (4.6, 3.2), (4.7, 3.3)])])
    assert rollup.open_sessions() == 0
    rep = build_report(CFG, store.db, T0 - 3600, T0 + 3600, k=1)
    s = rep.summary
    assert (s["visits"], s["buyers"], s["unclosed"]) == (1, 1, 0)
    assert s["dwell_median_s"] == pytest.approx(4.0, rel=0.02)
    assert s["basket_value_mean"] == pytest.approx(1.09)
    cells = {(c["cx"], c["cy"]): c["seconds"] for c in rep.tables["heatmap"]}
    # sample-and-hold: 2 s in cell (8, 6), 2 s in (9, 6) (the last second up to the close)
    assert cells == {(8, 6): pytest.approx(2.0), (9, 6): pytest.approx(2.0)}
    zones = {z["zone"]: z for z in rep.tables["zones"]}
    assert zones["aisle-ab"]["visitors"] == 1 and zones["aisle-ab"]["conversion"] == 1.0  # A is shopped from aisle-ab
    assert zones["aisle-ab"]["dwell_mean_s"] == pytest.approx(1.5)
    shelves = {(r["shelf"], r["plate"]): r for r in rep.tables["shelves"]}
    assert shelves[("A", "A1")]["picks"] == 1 and shelves[("A", "A1")]["buyers"] == 1
    # no session id anywhere in the rollup, and the working rows are gone
    for table in ROLLUP_TABLES:
        assert "s-secret-1" not in json.dumps(store.db.query(f"SELECT * FROM {table}"))
    assert not store.db.query("SELECT * FROM analytics_session_cells")


def test_rollup_survives_the_retention_purge_and_ignores_late_positions():
    f = Stamper("fusion", run_id="t2")
    store, rollup = _store_with([_visit(f, "s-a", T0, cells=[(1.0, 1.0), (1.2, 1.0)])])
    store.purge(positions_s=1.0, zone_events_s=1.0, now=time.time() + 10)
    assert store.db.one("SELECT COUNT(*) FROM locations")[0] == 0
    late = [f.make(ShopperLocation, T0 + 5, shopper="s-a", track="t", x=1.0, y=1.0, cov=COV)]
    store.ingest_many([(m, "") for m in late])
    rollup.observe(late)
    assert rollup.open_sessions() == 0  # a position after the receipt does not start a second visit
    assert build_report(CFG, store.db, T0 - 3600, T0 + 3600, k=1).summary["visits"] == 1


def test_voided_and_idle_sessions():
    f = Stamper("fusion", run_id="t3")
    voided = [f.make(CartEvent, T0, shopper="s-dup", phase="new", cart_version=0),
              f.make(ShopperLocation, T0 + 0.5, shopper="s-dup", track="t", x=2.0, y=2.0, cov=COV),
              f.make(CartEvent, T0 + 1, shopper="s-dup", phase="end", cart_version=0)]
    lost = [f.make(CartEvent, T0, shopper="s-lost", phase="new", cart_version=0),
            f.make(ShopperLocation, T0 + 30, shopper="s-lost", track="t", x=3.0, y=3.0, cov=COV)]
    later = _visit(f, "s-b", T0 + 4000, cells=[(1.0, 1.0)])
    store, rollup = _store_with([voided, lost, later])
    s = build_report(CFG, store.db, T0 - 3600, T0 + 7200, k=1).summary
    assert s["visits"] == 2  # the lost one (idle for more than idle_close_s) and s-b; the voided one is not a visit
    assert s["unclosed"] == 1


def test_k_anonymity_suppresses_and_merges_small_groups():
    f = Stamper("fusion", run_id="t4")
    # hour 1: six visits through the aisle, one of them also into a far corner; hour 2: two visits
    visits = [_visit(f, f"s-{i}", T0 + 60 * i, cells=[(4.2, 3.2), (4.3, 3.3)] + ([(11.2, 7.6)] if i == 0 else []))
              for i in range(6)]
    visits += [_visit(f, f"s-late-{i}", T0 + 3600 + 60 * i, cells=[(4.2, 3.2)], buy=False, zone="coffee-corner")
               for i in range(2)]
    store, _ = _store_with(visits)
    rep = build_report(CFG, store.db, T0 - 3600, T0 + 3 * 3600, k=5)
    cells = {(c["cx"], c["cy"]) for c in rep.tables["heatmap"]}
    assert (8, 6) in cells and (22, 15) not in cells  # the corner cell had one visitor
    assert {z["zone"] for z in rep.tables["zones"]} >= {"aisle-ab"}
    assert "coffee-corner" not in {z["zone"] for z in rep.tables["zones"]}  # two visitors
    assert [(h["visits"], h["hours"]) for h in rep.tables["hourly"]] == [(8, 2)]  # the 2-visit hour merged
    heat = next(s for s in rep.suppression if s.table == "heatmap")
    assert heat.rows_suppressed == 1 and "suppressed" in heat.note
    assert any("merged" in n for n in rep.notes)
    # under k visits in the whole range: every figure withheld
    small = build_report(CFG, store.db, T0 + 3600, T0 + 7200, k=5)
    assert small.summary["suppressed"] and small.summary["visits"] is None
    assert all(not small.tables[t] for t in ("hourly", "heatmap", "zones", "shelves", "dwell"))
    # with k=1 nothing is withheld
    assert len(build_report(CFG, store.db, T0 - 3600, T0 + 3 * 3600, k=1).tables["zones"]) > \
        len(rep.tables["zones"])


def test_the_rollup_is_the_same_on_sqlite_and_postgresql(hub_url):
    """The rollup's SQL is portable: one short simulated day gives the same tables on either database."""
    from storesense.datasets.sim.day import feed_hub, simulate_day

    day = simulate_day(CFG, 5, visitors=20, open_hour=9.0, close_hour=10.0)
    store = HubStore(hub_url)
    try:
        feed_hub(day, store, Rollup(CFG, store.db, wall_guard_s=0))
        got = build_report(CFG, store.db, day.open_ts - 3600, day.close_ts + 3600, k=1).tables
    finally:
        store.close()
    mem = HubStore(":memory:")
    feed_hub(day, mem, Rollup(CFG, mem.db, wall_guard_s=0))
    want = build_report(CFG, mem.db, day.open_ts - 3600, day.close_ts + 3600, k=1).tables
    assert got["summary"][0]["visits"] == len(day.shoppers) > 5
    for name, rows in want.items():
        assert len(got[name]) == len(rows), name
        for a, b in zip(got[name], rows):
            assert a.keys() == b.keys()
            for key in a:
                assert a[key] == (pytest.approx(b[key]) if isinstance(b[key], float) else b[key]), (name, key)


def test_suppress_and_merge_runs():
    rows = [{"visits": v} for v in (1, 2, 6, 1)]
    merged, sup = merge_runs(rows, 5, "t", lambda g: {"visits": sum(r["visits"] for r in g), "n": len(g)})
    assert merged == [{"visits": 10, "n": 4}] and sup.rows_merged == 3
    merged, sup = merge_runs([{"visits": 2}], 5, "t", lambda g: g[0])
    assert merged == [] and sup.rows_suppressed == 1
    kept, sup = suppress([{"visitors": 4}, {"visitors": 5}], 5, "t")
    assert kept == [{"visitors": 5}] and sup.visitors_suppressed == 4


def test_export_writes_csv_parquet_and_charts(tmp_path):
    from storesense.cli import main

    f = Stamper("fusion", run_id="t5")
    db = tmp_path / "hub.db"
    store = HubStore(db)
    rollup = Rollup(CFG, store.db)
    for i in range(6):
        msgs = _visit(f, f"s-{i}", T0 + 60 * i, cells=[(4.2, 3.2), (4.3, 3.3)])
        store.ingest_many([(m, "") for m in msgs])
        rollup.observe(msgs)
    store.close()
    out = tmp_path / "out"
    main(["analytics", "--db", str(db), "--from", "2026-03-02", "--to", "2026-03-02", "--out", str(out)])
    for name in ("summary", "hourly", "daily", "dwell", "heatmap", "zones", "shelves"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    for png in ("heatmap.png", "footfall.png", "funnel.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    import pyarrow.parquet as pq

    t = pq.read_table(out / "hourly.parquet")
    assert t.column("visits").to_pylist() == [6]
    assert t.schema.metadata[b"storesense.k"] == b"5"
    assert "summary,hourly" not in (out / "summary.csv").read_text()
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("from,to,k,visits")
    assert json.loads((out / "anonymity.json").read_text())["k"] == 5


def test_bad_dates_are_one_line(tmp_path, capsys):
    from storesense.cli import main

    with pytest.raises(SystemExit) as done:
        main(["analytics", "--db", str(tmp_path / "none.db"), "--from", "2026-13-01", "--to", "2026-03-02"])
    assert done.value.code == 2
    assert "--from '2026-13-01'" in capsys.readouterr().err


def test_a_simulated_day_end_to_end_through_broker_and_hub(embedded_broker, tmp_path):
    """A short simulated day (seed 7, a development seed) published to a broker, ingested by the hub:
    the analytics match the truth, the API serves them to a viewer, the hourly retained message goes out."""
    from storesense.datasets.sim.day import TOLERANCES, compare_day, feed_hub, simulate_day
    from storesense.hub.service import HubService
    from storesense.transport import MqttPublisher, MqttSubscriber

    day = simulate_day(CFG, 7, visitors=40, open_hour=9.0, close_hour=10.0)
    viewer = TerminalRegistry.from_tokens({"office": "viewer-secret"}, roles=("viewer",))
    hub = HubService(CFG, db=tmp_path / "hub.db", mqtt_url=embedded_broker.url, terminals=viewer,
                     client_id=f"analytics-hub-{uuid.uuid4().hex[:6]}", port=0).start()
    got: list[StoreAnalytics] = []
    heard = threading.Event()

    def on_message(msg, topic):
        if isinstance(msg, StoreAnalytics):
            got.append(msg)
            heard.set()

    pub = MqttPublisher(embedded_broker.url, store=CFG.store.id, node="fusion", kind="fusion",
                        client_id=f"analytics-fusion-{uuid.uuid4().hex[:6]}").connect()
    try:
        for msg in day.messages:
            pub.publish(msg)
        assert pub.flush(30)
        receipts = sum(isinstance(m, Receipt) for m in day.messages)
        deadline = time.monotonic() + 60
        while hub.store.db.one("SELECT COALESCE(SUM(visits), 0) FROM analytics_hours")[0] < receipts:
            assert time.monotonic() < deadline, "the hub did not roll up every visit within 60 s"
            time.sleep(0.2)
        r = httpx.get(hub.http.url + "api/analytics", params={"from": day.date, "to": day.date, "k": 1},
                      headers={"Authorization": "Bearer viewer-secret"}, timeout=10)
        assert r.status_code == 200
        assert httpx.get(hub.http.url + "api/analytics", timeout=10).status_code == 401
        data = r.json()
        report = build_report(CFG, hub.store.db, day.open_ts - 3600, day.close_ts + 3600, k=1)
        assert data["summary"][0]["visits"] == report.summary["visits"]
        res = compare_day(CFG, day, report)
        assert res["footfall"]["ok"], res["footfall"]
        assert res["dwell_median_s"]["ok"], res["dwell_median_s"]
        assert res["zone_conversion"]["ok"], res["zone_conversion"]
        # through broker and hub the same as feeding the store directly
        direct = HubStore(":memory:")
        feed_hub(day, direct, Rollup(CFG, direct.db, wall_guard_s=0))
        want = build_report(CFG, direct.db, day.open_ts - 3600, day.close_ts + 3600, k=1).tables
        for name in ("summary", "hourly", "daily", "dwell", "zones", "shelves"):
            assert want[name] == report.tables[name], name
        # positions travel at QoS 0: a broker under load may drop one, and its time then stays in the cell before
        assert sum(c["seconds"] for c in report.tables["heatmap"]) == \
            pytest.approx(sum(c["seconds"] for c in want["heatmap"]), rel=0.01)
        # the hourly message, retained: a subscriber arriving later gets it
        hub.analytics_publisher.clock = lambda: day.close_ts
        sent = hub.analytics_publisher.publish_now()
        assert sent.summary["visits"] == build_report(CFG, hub.store.db, sent.period_start, day.close_ts).summary["visits"]
        sub = MqttSubscriber(embedded_broker.url, store=CFG.store.id, client_id=f"dash-{uuid.uuid4().hex[:6]}",
                             on_message=on_message)
        sub.connect(10)
        try:
            assert heard.wait(10), "no retained store_analytics message"
        finally:
            sub.close()
        assert got[-1].k == CFG.hub.analytics.k and "s-" not in json.dumps(got[-1].model_dump()["hourly"])
    finally:
        pub.close()
        hub.stop()
    assert res["footfall"]["truth"] == len(day.shoppers) and TOLERANCES["footfall_rel"] == 0.02
