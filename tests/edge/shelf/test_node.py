"""The shelf node: settled weight changes, taring, drift, sensor health, replay files, ZeroMQ and the CLI."""

from __future__ import annotations

import json
import math
import sys
import threading
import time

import pytest
import yaml

from storesense.config import example_store_path, parse_store_config
from storesense.contracts import NodeStatus, WeightChange
from storesense.edge.shelf.loadcells.hx711 import HX711_MAX
from storesense.edge.shelf.loadcells.recorded import RawReading, read_recording, write_recording
from storesense.edge.shelf.loadcells.simulated import LoadStep, PlateSimulation, merge_streams, simulate_plate
from storesense.edge.shelf.node import ShelfNode, run_replay, select_sensors, serve
from storesense.errors import StoresenseError
from storesense.transport import ZmqSubscriber

T0 = 1_700_000_000.0
COUNTS_PER_G = 420.0
ZERO = -52_000.0
# plates of the example store: B2 holds TEA-20 (60 g), A3 BUTTER-250 (255 g), C3 CHIPS-175 (185 g)
ITEM_G = {"ws-B2": 60.0, "ws-A3": 255.0, "ws-C3": 185.0, "ws-A1": 1030.0, "ws-A2": 520.0, "ws-B1": 510.0,
          "ws-C1": 1550.0, "ws-C2": 1080.0}


def store(**sensor_fields):
    """The example store with HX711 wiring and calibration on every weight sensor."""
    data = yaml.safe_load(example_store_path().read_text())
    for i, ws in enumerate(data["weight_sensors"]):
        ws.update({"hardware": {"kind": "hx711", "data_pin": 5 + 2 * i, "clock_pin": 6 + 2 * i},
                   "counts_per_g": COUNTS_PER_G, "zero_offset": ZERO, "noise_g": 3.0})
        ws.update(sensor_fields)
    return parse_store_config(data, origin="test store")


def plate(sensor: str, **kw) -> PlateSimulation:
    """A simulated HX711 plate in counts, calibrated like :func:`store`."""
    args = dict(duration_s=40.0, start_load_g=1500.0, noise_g=3.0, counts_per_g=COUNTS_PER_G, zero_offset=ZERO,
                integer_counts=True, start_ts=T0)
    args.update(kw)
    return PlateSimulation(sensor, **args)


def replay(cfg, stream, sensors=None, **node_kw) -> tuple[ShelfNode, list]:
    out: list = []
    ids = sensors or sorted({r.sensor for r in stream})
    node = ShelfNode(cfg, select_sensors(cfg, sensors=ids), out.append, run_id="test", **node_kw)
    run_replay(node, stream)
    return node, out


def changes(out, sensor=None) -> list[WeightChange]:
    return [m for m in out if isinstance(m, WeightChange) and (sensor is None or m.sensor == sensor)]


def statuses(out) -> list[NodeStatus]:
    return [m for m in out if isinstance(m, NodeStatus)]


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_pick_and_put_back_give_exactly_two_changes_with_the_right_deltas(seed):
    cfg = store()
    sim = plate("ws-B2", steps=(LoadStep(10.0, -60.0, 1.2), LoadStep(24.0, +60.0, 0.9)), spike_rate_hz=0.05,
                seed=seed)
    node, out = replay(cfg, simulate_plate(sim))
    got = changes(out)
    assert [m.delta_g < 0 for m in got] == [True, False], [m.delta_g for m in got]
    pick, put = got
    for msg, truth in ((pick, -60.0), (put, 60.0)):
        assert abs(msg.delta_g - truth) <= 2 * 3.0  # within two reading-noise sigmas
        assert 1.0 <= msg.noise_g <= 6.0
        assert msg.sensor == "ws-B2" and msg.shelf == "B" and msg.plate == "B2" and msg.source == "ws-B2"
    assert abs(pick.total_g - 1440.0) <= 6.0 and abs(put.total_g - 1500.0) <= 6.0  # absolute: zero_offset given
    assert T0 + 9.8 <= pick.started_ts <= T0 + 10.5 and T0 + 23.8 <= put.started_ts <= T0 + 24.5
    # reported once the load has been steady for settle_s, soon after the reach (ends at 11.2 s and 24.9 s)
    assert pick.ts - pick.started_ts >= 0.5 + 0.5 and pick.ts <= T0 + 11.2 + 1.5
    assert put.ts - put.started_ts >= 0.5 + 0.5 and put.ts <= T0 + 24.9 + 1.5
    assert node.counters["weight_changes"] == 2


def test_two_items_at_once_are_one_change_of_two_units():
    cfg = store()
    node, out = replay(cfg, simulate_plate(plate("ws-A3", steps=(LoadStep(8.0, -510.0, 1.5),), seed=7)))
    (msg,) = changes(out)
    assert abs(msg.delta_g + 510.0) <= 6.0


def test_noise_and_spikes_alone_give_no_change():
    cfg = store()
    sims = [plate(s, duration_s=120.0, spike_rate_hz=0.3, spike_g=500.0, seed=i)
            for i, s in enumerate(["ws-B2", "ws-A3", "ws-C3"])]
    node, out = replay(cfg, merge_streams(*[simulate_plate(s) for s in sims]))
    assert changes(out) == []
    assert sum(node.channels[s].counters["spikes"] for s in node.channels) > 20  # spikes were there, and rejected
    assert all(ch.health.healthy for ch in node.channels.values())


def test_slow_drift_is_tracked_into_the_baseline_not_reported():
    cfg = store()
    # +0.8 g/s for 150 s: 120 g of creep, twice the unit weight, on the 60 g plate; -0.5 g/s on another
    sims = [plate("ws-B2", duration_s=150.0, drift_g_per_s=0.8, seed=11),
            plate("ws-C3", duration_s=150.0, drift_g_per_s=-0.5, seed=12)]
    node, out = replay(cfg, merge_streams(*[simulate_plate(s) for s in sims]))
    assert changes(out) == []
    baseline = node.channels["ws-B2"].detector.baseline
    assert baseline == pytest.approx(1500.0 + 0.8 * 149.9, abs=4.0)


def test_a_pick_during_drift_is_still_measured_against_the_drifted_baseline():
    cfg = store()
    sim = plate("ws-B2", duration_s=60.0, drift_g_per_s=0.5, steps=(LoadStep(40.0, -60.0, 1.0),), seed=5)
    _, out = replay(cfg, simulate_plate(sim))
    (msg,) = changes(out)
    assert abs(msg.delta_g + 60.0) <= 6.0
    assert abs(msg.total_g - (1500.0 + 0.5 * 41.5 - 60.0)) <= 6.0


def test_a_change_below_the_plate_threshold_is_not_reported():
    cfg = store()
    # 15 g is a quarter of the 60 g unit (threshold: min_change_fraction 0.4 -> 24 g)
    _, out = replay(cfg, simulate_plate(plate("ws-B2", steps=(LoadStep(10.0, -15.0, 0.8),), seed=3)))
    assert changes(out) == []


def test_tare_at_start_reports_loads_relative_to_the_start():
    cfg = store(zero_offset=None)
    _, out = replay(cfg, simulate_plate(plate("ws-B2", steps=(LoadStep(10.0, -60.0, 1.0),), seed=2)))
    (msg,) = changes(out)
    assert abs(msg.delta_g + 60.0) <= 6.0
    assert abs(msg.total_g + 60.0) <= 6.0  # the 1500 g on the plate at start is zero


def test_tare_on_command_zeroes_the_current_load():
    cfg = store()
    stream = simulate_plate(plate("ws-B2", steps=(LoadStep(20.0, -60.0, 1.0),), seed=4))
    out: list = []
    node = ShelfNode(cfg, select_sensors(cfg, sensors=["ws-B2"]), out.append, run_id="t")
    for r in stream:
        if r.ts >= T0 + 10.0 and node.channels["ws-B2"].absolute_zero:
            node.tare("ws-B2")
        node.tick(r.ts)
        node.reading(r.sensor, r.ts, r.value)
    (msg,) = changes(out)
    assert abs(msg.total_g + 60.0) <= 6.0 and abs(msg.delta_g + 60.0) <= 6.0


def test_started_ts_is_when_the_load_began_to_move_not_when_it_was_noticed():
    cfg = store()
    _, out = replay(cfg, simulate_plate(plate("ws-A3", steps=(LoadStep(12.0, -255.0, 1.0),), transient=False,
                                              seed=9)))
    (msg,) = changes(out)
    assert T0 + 12.0 <= msg.started_ts <= T0 + 12.35


# --------------------------------------------------------------------------- health


def _fault_stream():
    """Healthy plates with a pick each, and one plate per kind of fault (which also has a pick during it)."""
    healthy = [plate("ws-B2", steps=(LoadStep(30.0, -60.0),), seed=1),
               plate("ws-A3", steps=(LoadStep(32.0, -255.0),), seed=2)]
    faulty = [
        plate("ws-A1", fault="timeouts", fault_at_s=10.0, steps=(LoadStep(20.0, -1030.0),), seed=3),
        plate("ws-A2", fault="dead", fault_at_s=10.0, steps=(LoadStep(20.0, -520.0),), seed=4),
        plate("ws-B1", fault="saturated", fault_at_s=10.0, steps=(LoadStep(20.0, -510.0),), seed=5),
        plate("ws-C1", fault="stuck", fault_at_s=10.0, steps=(LoadStep(20.0, -1550.0),), seed=6),
        plate("ws-C2", fault="garbage", fault_at_s=10.0, steps=(LoadStep(20.0, -1080.0),), seed=7),
    ]
    return merge_streams(*[simulate_plate(s) for s in healthy + faulty])


def test_dead_and_nonsense_sensors_are_reported_and_not_trusted_while_the_others_work():
    cfg = store()
    node, out = replay(cfg, _fault_stream())
    assert {m.sensor for m in changes(out)} == {"ws-B2", "ws-A3"}
    assert len(changes(out)) == 2
    last = statuses(out)[-1]
    assert last.kind == "shelf" and last.node == "shelf" and last.state == "offline"
    text = "\n".join(last.warnings)
    for sensor, why in (("ws-A1", "not answering"), ("ws-A2", "not answering"), ("ws-B1", "saturated"),
                        ("ws-C1", "stuck"), ("ws-C2", "impossible")):
        line = next(w for w in last.warnings if w.startswith(sensor + ":"))
        assert why in line, line
        assert last.counters[f"{sensor}.trusted"] == 0
    assert "ws-B2" not in text and "ws-A3" not in text
    assert last.counters["sensors_untrusted"] == 5 and last.counters["ws-B2.trusted"] == 1
    assert last.counters["ws-A1.timeouts"] >= 5 and last.counters["ws-A2.timeouts"] >= 3
    assert last.counters["ws-B1.saturated"] >= 5 and last.counters["ws-C1.stuck"] >= 1
    # the fault was announced at once, not only at the next heartbeat
    first_warning = next(s for s in statuses(out) if any(w.startswith("ws-B1:") for w in s.warnings))
    assert first_warning.ts <= T0 + 10.0 + 0.6


def test_a_sensor_that_recovers_is_trusted_again_without_reporting_what_happened_meanwhile():
    cfg = store()
    sim = plate("ws-B2", duration_s=60.0, fault="timeouts", fault_at_s=10.0, fault_end_s=20.0,
                steps=(LoadStep(15.0, -60.0), LoadStep(40.0, -60.0)), seed=8)
    node, out = replay(cfg, simulate_plate(sim))
    got = changes(out)
    assert len(got) == 1 and T0 + 40.0 <= got[0].started_ts and abs(got[0].delta_g + 60.0) <= 6.0
    ch = node.channels["ws-B2"]
    assert ch.health.healthy and ch.counters["faults"] == 1 and ch.counters["recoveries"] == 1
    assert statuses(out)[-1].warnings == ()


def test_a_serial_scale_holding_one_value_is_not_stuck():
    """A scale that reports grams shows the same number while nothing moves; only ADC counts can be stuck."""
    cfg = store(hardware={"kind": "serial", "port": "/dev/ttyUSB0"}, counts_per_g=1.0, zero_offset=0.0)
    stream = [RawReading(T0 + i * 0.1, "ws-B2", 1500.0 if i < 300 else 1440.0) for i in range(500)]
    node, out = replay(cfg, stream)
    (msg,) = changes(out)
    assert msg.delta_g == pytest.approx(-60.0, abs=0.5)
    assert node.channels["ws-B2"].health.healthy


def test_a_few_garbled_frames_are_counted_but_do_not_condemn_a_sensor():
    cfg = store()
    stream = simulate_plate(plate("ws-B2", steps=(LoadStep(10.0, -60.0),), seed=3))
    stream[50] = RawReading(stream[50].ts, "ws-B2", None, "DOUT still low after the frame")
    stream[51] = RawReading(stream[51].ts, "ws-B2", float("nan"))
    stream[150] = RawReading(stream[150].ts, "ws-B2", float(HX711_MAX))
    node, out = replay(cfg, stream)
    assert len(changes(out)) == 1
    ch = node.channels["ws-B2"]
    assert ch.health.healthy and ch.counters["read_errors"] == 1 and ch.counters["nan"] == 1
    assert ch.counters["saturated"] == 1


def test_a_sensor_never_heard_from_is_reported():
    cfg = store()
    stream = simulate_plate(plate("ws-B2", duration_s=10.0, seed=1))
    node, out = replay(cfg, stream, sensors=["ws-B2", "ws-C3"])
    assert any(w.startswith("ws-C3: not trusted (not answering") for w in statuses(out)[-1].warnings)


def test_heartbeats_carry_counters_on_the_stream_clock():
    cfg = store()
    node, out = replay(cfg, simulate_plate(plate("ws-B2", duration_s=30.0, seed=1)))
    beats = statuses(out)
    assert beats[0].state == "online" and beats[-1].state == "offline"
    gaps = [b.ts - a.ts for a, b in zip(beats, beats[1:-1])]
    assert gaps and all(4.9 <= g <= 5.2 for g in gaps)
    assert beats[-1].counters["ws-B2.readings"] == 300 and beats[-1].uptime_s == pytest.approx(29.9, abs=0.01)


# --------------------------------------------------------------------------- recordings


def test_recordings_round_trip_as_jsonl_and_csv_and_replay_the_same(tmp_path):
    cfg = store()
    stream = simulate_plate(plate("ws-B2", steps=(LoadStep(10.0, -60.0),), fault="timeouts", fault_at_s=30,
                                  fault_end_s=30.3, seed=5))
    stream.append(RawReading(T0 + 40.0, "ws-B2", math.nan))
    jsonl = tmp_path / "raw.jsonl"
    write_recording(jsonl, stream)
    csv_path = tmp_path / "raw.csv"
    csv_path.write_text("ts,sensor,raw\n" + "".join(
        f"{r.ts},{r.sensor},{'' if r.value is None else r.value}\n" for r in stream))
    back_json, back_csv = list(read_recording(jsonl)), list(read_recording(csv_path))
    assert len(back_json) == len(back_csv) == len(stream)
    assert back_json[-1].value is not None and math.isnan(back_json[-1].value)
    assert [r.value for r in back_json[:-1]] == [r.value for r in back_csv[:-1]] == [r.value for r in stream[:-1]]
    a = changes(replay(cfg, back_json)[1])
    b = changes(replay(cfg, back_csv)[1])
    assert [m.model_dump() for m in a] == [m.model_dump() for m in b] and len(a) == 1


def test_bad_recording_lines_are_skipped_and_counted(tmp_path, caplog):
    path = tmp_path / "raw.jsonl"
    good = {"ts": T0, "sensor": "ws-B2", "raw": 1}
    path.write_text("\n".join([json.dumps(good), "{not json", json.dumps({"ts": "soon", "sensor": "x", "raw": 1}),
                               json.dumps({"sensor": "ws-B2", "raw": 2}), "[1, 2]", json.dumps(good), ""]))
    from storesense.edge.shelf.loadcells.recorded import RecordingReader

    reader = RecordingReader(path)
    assert len(list(reader)) == 2 and reader.skipped == 4
    assert f"{path}:2: skipped: not JSON" in caplog.text
    with pytest.raises(StoresenseError, match="no such recording"):
        RecordingReader(tmp_path / "missing.jsonl")
    bad_csv = tmp_path / "raw.csv"
    bad_csv.write_text("time,sensor,value\n1,a,2\n")
    with pytest.raises(StoresenseError, match="missing ts, raw"):
        list(read_recording(bad_csv))


# --------------------------------------------------------------------------- selection


def test_sensor_selection_by_node_and_ids():
    data = yaml.safe_load(example_store_path().read_text())
    for ws in data["weight_sensors"]:
        ws["node"] = "pi-" + ws["shelf"].lower()
    cfg = parse_store_config(data)
    assert [ws.id for ws in select_sensors(cfg, node="pi-b")] == ["ws-B1", "ws-B2"]
    assert [ws.id for ws in select_sensors(cfg, sensors=["ws-C3", "ws-A1"])] == ["ws-C3", "ws-A1"]
    with pytest.raises(StoresenseError, match="no weight sensor has node 'pi-z'.*pi-a, pi-b, pi-c"):
        select_sensors(cfg, node="pi-z")
    with pytest.raises(StoresenseError, match="unknown weight sensor.*ws-Z9"):
        select_sensors(cfg, node="pi-a", sensors=["ws-A1", "ws-Z9"])


def test_live_without_hardware_in_the_config_says_so():
    data = yaml.safe_load(example_store_path().read_text())
    cfg = parse_store_config(data)
    with pytest.raises(StoresenseError, match="ws-A1: no hardware configured.*--replay"):
        serve(cfg, sensors=["ws-A1"], publish=False)


# --------------------------------------------------------------------------- transports and CLI


def _receive_until(sub: ZmqSubscriber, done, timeout: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not done(got):
        msg = sub.recv(0.05)
        if msg is not None:
            got.append(msg)
    return got


def test_the_node_publishes_through_zeromq_to_a_subscriber(tmp_path):
    cfg = store()
    stream = merge_streams(simulate_plate(plate("ws-B2", steps=(LoadStep(10.0, -60.0), LoadStep(20.0, 60.0)),
                                                duration_s=30.0, seed=1)),
                           simulate_plate(plate("ws-C3", fault="saturated", fault_at_s=5.0, duration_s=30.0, seed=2)))
    path = tmp_path / "raw.jsonl"
    write_recording(path, stream)
    sub = ZmqSubscriber("tcp://127.0.0.1:*")
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(run=serve(
        cfg, sensors=["ws-B2", "ws-C3"], replay=str(path), endpoint=sub.endpoint, run_id="zmq", wait_s=5.0)))
    try:
        worker.start()
        got = _receive_until(sub, lambda g: any(isinstance(m, NodeStatus) and m.state == "offline" for m in g))
    finally:
        worker.join(10)
        sub.close()
    run = result["run"]
    assert run.readings == len(stream) and run.published == len(got)
    wc = changes(got)
    assert [round(m.delta_g / 60.0) for m in wc] == [-1, 1] and {m.sensor for m in wc} == {"ws-B2"}
    last = statuses(got)[-1]
    assert any(w.startswith("ws-C3:") and "saturated" in w for w in last.warnings)
    assert len({m.event_id for m in got}) == len(got)


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``storesense ARGS`` in this process: (exit status, stdout, stderr)."""
    from storesense import cli

    monkeypatch.setattr(sys, "argv", ["storesense", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
        sys.exit(0)
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err


def test_cli_replays_a_recording_into_a_file(tmp_path, monkeypatch, capsys):
    cfg_path = tmp_path / "store.yaml"
    data = yaml.safe_load(example_store_path().read_text())
    for ws in data["weight_sensors"]:
        ws.update(counts_per_g=COUNTS_PER_G, zero_offset=ZERO)
    cfg_path.write_text(yaml.safe_dump(data))
    raw = tmp_path / "raw.jsonl"
    write_recording(raw, simulate_plate(plate("ws-B2", steps=(LoadStep(5.0, -120.0),), duration_s=15.0, seed=3)))
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = _cli(monkeypatch, capsys, "edge", "shelf", "--config", str(cfg_path), "--sensors",
                                "ws-B2", "--replay", str(raw), "--output", str(out), "--run-id", "cli")
    assert code == 0, stderr
    assert "1 weight changes" in stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    (wc,) = [x for x in lines if x["msg"]["type"] == "weight_change"]
    assert wc["topic"].endswith("/edge/ws-B2/weight") and round(wc["msg"]["delta_g"] / 60.0) == -2


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = _cli(monkeypatch, capsys, "edge", "shelf", "--sensors", "ws-Q7", "--replay",
                        str(tmp_path / "x.jsonl"), "--output", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert err.strip().startswith("error: unknown weight sensor(s) ws-Q7") and "Traceback" not in err
    code, _, err = _cli(monkeypatch, capsys, "edge", "shelf", "--sensors", "ws-A1", "--to", "tcp://127.0.0.1:1")
    assert code == 2 and "no hardware configured" in err


# --------------------------------------------------------------------------- the live loop


class SimClock:
    """A clock that advances a little at every look, and stops the live loop at ``end``."""

    def __init__(self, start: float, end: float, stop: threading.Event, step: float = 0.01):
        self.t, self.end, self.stop, self.step = start, end, stop, step

    def __call__(self) -> float:
        self.t += self.step
        if self.t >= self.end:
            self.stop.set()
        return self.t


class ScriptedCell:
    """A load cell that has the next simulated reading ready once the clock reaches its time."""

    unit = "counts"

    def __init__(self, name, readings, clock, fail: Exception | None = None):
        self.name, self.readings, self.clock, self.fail = name, list(readings), clock, fail
        self.closed = False

    def ready(self):
        return bool(self.readings) and self.clock.t >= self.readings[0].ts

    def read(self, timeout_s=1.0):
        r = self.readings.pop(0)
        if self.fail is not None:
            raise self.fail
        return r.value

    def close(self):
        self.closed = True


def test_live_loop_reads_every_cell_from_one_thread_and_records_what_it_read(tmp_path):
    from storesense.edge.shelf.loadcells.base import LoadCellError, SensorReadError
    from storesense.edge.shelf.loadcells.recorded import RecordingWriter
    from storesense.edge.shelf.node import run_live

    cfg = store()
    stop = threading.Event()
    clock = SimClock(T0 - 0.05, T0 + 30.0, stop)
    good = simulate_plate(plate("ws-B2", duration_s=30.0, steps=(LoadStep(10.0, -60.0),), seed=2))
    cells = {"ws-B2": ScriptedCell("ws-B2", good, clock),
             "ws-C3": ScriptedCell("ws-C3", simulate_plate(plate("ws-C3", duration_s=30.0, seed=3)), clock,
                                   fail=SensorReadError("weight sensor ws-C3 (...): DOUT still low after the frame"))}
    tried = []

    def reopen(name):
        tried.append(name)
        raise LoadCellError(f"weight sensor {name}: cannot open GPIO")

    out: list = []
    node = ShelfNode(cfg, select_sensors(cfg, sensors=["ws-B2", "ws-C3", "ws-A3"]), out.append, run_id="live")
    with RecordingWriter(tmp_path / "raw.jsonl") as rec:
        run_live(node, cells, stop=stop, clock=clock, recorder=rec, reopen=reopen, reopen_s=5.0, idle_s=0.0)
    (msg,) = changes(out)
    assert msg.sensor == "ws-B2" and abs(msg.delta_g + 60.0) <= 6.0
    last = statuses(out)[-1]
    assert last.state == "offline"
    warn = {w.split(":")[0]: w for w in last.warnings}
    assert set(warn) == {"ws-C3", "ws-A3"}
    assert "DOUT still low" in warn["ws-C3"] and "not answering" in warn["ws-A3"]
    assert tried and set(tried) == {"ws-A3"}
    # what the live loop read replays to the same change
    replayed = changes(replay(cfg, list(read_recording(tmp_path / "raw.jsonl")), sensors=["ws-B2", "ws-C3"])[1])
    assert [m.delta_g for m in replayed] == [msg.delta_g]


@pytest.mark.skipif(not hasattr(__import__("os"), "openpty"), reason="needs a POSIX pseudo-terminal")
def test_live_node_reads_a_serial_scale_on_a_real_tty(tmp_path):
    """End to end on a pseudo-terminal: a scale streams A&D lines, the node publishes the pick."""
    import os

    master, slave = os.openpty()
    cfg = store(hardware={"kind": "serial", "port": os.ttyname(slave), "baudrate": 9600}, counts_per_g=1.0,
                zero_offset=0.0, sample_hz=50.0, settle_s=0.3)
    stop = threading.Event()

    def scale():
        t0 = time.monotonic()
        while not stop.is_set():
            t = time.monotonic() - t0
            grams = 1500.0 if t < 1.2 else 1440.0
            os.write(master, f"ST,GS,+{grams:8.1f} g\r\n".encode())
            if t > 2.6:
                stop.set()
            time.sleep(0.02)

    feeder = threading.Thread(target=scale, daemon=True)
    out = tmp_path / "out.jsonl"
    try:
        feeder.start()
        run = serve(cfg, sensors=["ws-B2"], publish=False, output=str(out), record=str(tmp_path / "raw.jsonl"),
                    stop=stop)
    finally:
        stop.set()
        feeder.join(5)
        os.close(master)
        os.close(slave)
    got = [json.loads(line)["msg"] for line in out.read_text().splitlines()]
    wc = [m for m in got if m["type"] == "weight_change"]
    assert [m["delta_g"] for m in wc] == [-60.0] and wc[0]["total_g"] == 1440.0
    assert got[-1]["type"] == "node_status" and got[-1]["state"] == "offline"
    assert run.readings > 50 and len(list(read_recording(tmp_path / "raw.jsonl"))) == run.readings
