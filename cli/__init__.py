"""The ``storesense`` command line.

Every command reports a bad input (config file, recording, broker URL) as one
line naming what is wrong and exits with status 2; no tracebacks.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import StoreConfig, example_store_path, load_store_config
from ..errors import StoresenseError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="storesense: edge in-store vision and sensor fusion.")
config_app = typer.Typer(no_args_is_help=True, help="Check and document store configuration files.")
app.add_typer(config_app, name="config")
edge_app = typer.Typer(no_args_is_help=True, help="Run edge nodes: cameras, BLE receivers, shelf scales.")
app.add_typer(edge_app, name="edge")
calibrate_app = typer.Typer(no_args_is_help=True, help="Calibrate cameras to the floor and BLE nodes to their radio.")
app.add_typer(calibrate_app, name="calibrate")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate accuracy on real or simulated data.")
app.add_typer(eval_app, name="eval")

console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, soft_wrap=True)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="Store YAML (default: the example store).")


def _load(path: Optional[Path]) -> StoreConfig:
    return load_store_config(path or example_store_path())


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
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

    cfg = _load(config)
    console.print(f"[bold]storesense demo[/]: {cfg.store.name}, {shoppers} shoppers, seed {seed}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
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


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Recording to write (JSON lines)."),
    config: Optional[Path] = CONFIG_OPTION,
    shoppers: int = typer.Option(6, min=1, max=200, help="Number of shoppers."),
    seed: int = typer.Option(1, help="Scenario seed."),
) -> None:
    """Generate a synthetic scenario and record the edge messages it produces."""
    from ..transport.recording import record
    from ..datasets.sim.synthetic import generate_scenario

    cfg = _load(config)
    scenario = generate_scenario(cfg, shoppers=shoppers, seed=seed)
    n = record(scenario.messages, out, cfg.store.id)
    truth = out.with_suffix(".truth.json")
    truth.write_text(json.dumps([{"shopper": s.id, "tag": s.tag, "enter_ts": s.enter_ts, "exit_ts": s.exit_ts,
                                  "cart": s.cart()} for s in scenario.shoppers], indent=1))
    console.print(f"wrote {n} messages to {out} and the ground truth to {truth}")


@app.command()
def fusion(
    config: Optional[Path] = CONFIG_OPTION,
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Recording to replay (default: live ZeroMQ)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Record the fusion output here."),
    mqtt: Optional[str] = typer.Option(None, help="Broker URL to publish to (default: the config's; "
                                                  "with --input and no URL, nothing is published)."),
    speed: Optional[float] = typer.Option(None, help="Replay at this multiple of recorded speed (default: "
                                                     "as fast as possible)."),
    run_id: str = typer.Option("fusion", help="Run id for deterministic event ids."),
) -> None:
    """Run the fusion node on a recording or on the live edge stream."""
    from ..contracts import Envelope
    from ..transport.recording import Recorder, replay
    from ..fusion.node import FusionNode
    from ..transport import MqttPublisher, ZmqSubscriber

    cfg = _load(config)
    url = mqtt or (cfg.transports.mqtt.url if input is None else None)
    sinks = []
    publisher = recorder = None
    if url:
        publisher = MqttPublisher(url, store=cfg.store.id, node="fusion", kind="fusion")
        publisher.connect()
        sinks.append(publisher.publish)
    if output:
        recorder = Recorder(output, cfg.store.id)
        sinks.append(recorder.write)
    if not sinks:
        raise StoresenseError("nowhere to send the output: give --output FILE or --mqtt URL "
                              "(or set transports.mqtt.url in the config)")

    def emit(msg: Envelope) -> None:
        for sink in sinks:
            sink(msg)

    node = FusionNode(cfg, emit, run_id=run_id)
    try:
        if input is not None:
            for msg in replay(input, speed=speed):
                node.handle(msg)
            node.flush()
        else:
            sub = ZmqSubscriber(cfg.transports.zmq.observations, bind=True)
            # everything made at start-up (config, floor grids, modules) lives as long as the node:
            # keep the garbage collector from scanning it again on every full collection, a pause that
            # would land on whatever message is being fused at that moment
            gc.collect()
            gc.freeze()
            console.print(f"fusion node listening on {cfg.transports.zmq.observations} (Ctrl-C to stop)")
            try:
                while True:
                    msg = sub.recv(1.0)
                    if msg is not None:
                        node.handle(msg)
                    else:
                        node.flush()  # input paused for a second: release what the reorder window holds
            except KeyboardInterrupt:
                pass
            finally:
                sub.close()
    finally:
        if recorder:
            recorder.close()
        if publisher:
            publisher.close()
    console.print(" ".join(f"{k}={v}" for k, v in sorted(node.counters.items())))


@app.command()
def replay(
    recording: Path = typer.Argument(..., help="Recording (JSON lines) to publish."),
    to: Optional[str] = typer.Option(None, help="ZeroMQ endpoint of the fusion node (default: the config's)."),
    config: Optional[Path] = CONFIG_OPTION,
    speed: Optional[float] = typer.Option(1.0, help="Multiple of recorded speed; 0 = as fast as possible."),
) -> None:
    """Publish a recording into a live fusion node over ZeroMQ, as the edge nodes would."""
    from ..transport.recording import replay as replay_file
    from ..transport import ZmqPublisher

    cfg = _load(config)
    endpoint = to or cfg.transports.zmq.observations
    pub = ZmqPublisher(endpoint, store=cfg.store.id)
    try:
        if not pub.wait_for_subscriber(10.0):
            raise StoresenseError(f"no fusion node subscribed at {endpoint} within 10 s")
        n = 0
        for msg in replay_file(recording, speed=speed or None):
            pub.publish(msg)
            n += 1
        time.sleep(0.2)
    finally:
        pub.close()
    console.print(f"published {n} messages to {endpoint}")


@app.command()
def hub(
    config: Optional[Path] = CONFIG_OPTION,
    db: str = typer.Option("storesense-hub.db", help="SQLite file, or a postgresql://user@host:port/dbname URL."),
    mqtt: Optional[str] = typer.Option(None, help="Broker URL (default: the config's)."),
    host: Optional[str] = typer.Option(None, help="HTTP address (default: the config's hub.http_host)."),
    port: Optional[int] = typer.Option(None, help="HTTP port (default: the config's hub.http_port; 0: a free one)."),
    terminals: Path = typer.Option(Path("hub-terminals.yaml"), help="Terminals file: ids and token hashes."),
    client_id: Optional[str] = typer.Option(None, help="MQTT client id (fixed: the persistent session survives restarts)."),
    add_terminal: Optional[str] = typer.Option(None, help="Add a terminal with a new token to the terminals file, "
                                                          "print the token once, and exit."),
) -> None:
    """Run the store hub: MQTT ingest, checkout API, review queue, wayfinding, offers and the live page."""
    import signal

    from ..hub.auth import TerminalRegistry
    from ..hub.auth import add_terminal as add_terminal_token
    from ..hub.service import HubService

    if add_terminal:
        token = add_terminal_token(terminals, add_terminal)
        console.print(f"terminal {add_terminal!r} added to {terminals}; its token (shown only now):")
        console.print(token, highlight=False, soft_wrap=True)
        return
    cfg = _load(config)
    url = mqtt or cfg.transports.mqtt.url
    if not url:
        raise StoresenseError("no broker: give --mqtt URL or set transports.mqtt.url in the config")
    registry = TerminalRegistry.load(terminals) if terminals.exists() else TerminalRegistry()
    if not len(registry):
        console.print(f"[yellow]no terminals in {terminals}: checkout and review calls are refused "
                      f"(add one with --add-terminal ID)[/]")
    service = HubService(cfg, db=db, mqtt_url=url, terminals=registry, client_id=client_id, host=host, port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    console.print(f"hub ingesting storesense/{cfg.store.id}/# from {url} into {service.store.db.where}; "
                  f"API and live page at {service.http.url} (OpenAPI: {service.http.url}docs) - Ctrl-C to stop",
                  highlight=False, soft_wrap=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


# --------------------------------------------------------------------------- edge commands
# (`storesense edge camera|ble|shelf`: keep each command thin; the work lives in edge/)


@edge_app.command("ble")
def edge_ble(
    node: str = typer.Option(..., "--node", help="This receiver's id (one of ble_nodes in the store config)."),
    config: Optional[Path] = CONFIG_OPTION,
    tag: list[str] = typer.Option([], "--tag", help="Keep only these tags/app ids (repeatable): "
                                  "ibeacon:UUID[:MAJOR[:MINOR]], eddystone:NAMESPACE[:INSTANCE], "
                                  "mfr:COMPANY_ID[:HEX_PREFIX], mac:ADDRESS. Default: every iBeacon/Eddystone."),
    endpoint: Optional[str] = typer.Option(None, help="Fusion node's ZeroMQ endpoint (default: from the config)."),
    rate: float = typer.Option(5.0, min=0.0, help="Most sightings per second published per tag (0 = all)."),
    duration: Optional[float] = typer.Option(None, min=0.0, help="Stop after this many seconds."),
) -> None:
    """Run a BLE receiver node: scan with bleak, smooth RSSI per tag, publish sightings over ZeroMQ."""
    from ..edge.ble.node import run_node

    cfg = _load(config)
    if node not in {n.id for n in cfg.ble_nodes}:
        raise StoresenseError(f"--node {node!r}: not a BLE node of store {cfg.store.id} "
                              f"(has: {', '.join(n.id for n in cfg.ble_nodes) or 'none'})")
    counters = run_node(node, endpoint or cfg.transports.zmq.observations, cfg.store.id, tags=tag,
                        max_rate_hz=rate, duration_s=duration)
    console.print(f"BLE node {node} stopped: " + ", ".join(f"{k} {v}" for k, v in counters.items()))


@edge_app.command("camera")
def edge_camera(
    camera: str = typer.Option(..., "--camera", help="Camera id from the store config (e.g. cam1)."),
    config: Optional[Path] = CONFIG_OPTION,
    source: Optional[str] = typer.Option(None, "--source", help="Video file, MOT sequence/image folder, RTSP/HTTP "
                                                                "URL or USB index (default: the camera's source)."),
    debug_video: Optional[Path] = typer.Option(None, "--debug-video", help="Write a local video with boxes, "
                                                                           "skeletons, track ids and shelf faces."),
    record_video: Optional[Path] = typer.Option(None, "--record-video", help="Write a local recording of the "
                                                                             "processed frames."),
    no_blur: bool = typer.Option(False, "--no-blur", help="Do not blur heads in --debug-video/--record-video."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1, help="Stop after this many source frames."),
    fps: Optional[float] = typer.Option(None, "--fps", min=0, help="Processing rate (default: the camera's fps; "
                                                                    "0 = every frame)."),
    to: Optional[str] = typer.Option(None, "--to", help="ZeroMQ endpoint of the fusion node (default: the config's)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also record every message (JSON lines)."),
    wait: float = typer.Option(0.0, "--wait", min=0, help="Seconds to wait for the fusion node to subscribe first."),
    max_retries: Optional[int] = typer.Option(None, "--max-retries", min=0, help="Give up on a live stream after "
                                                                                 "this many failed opens in a row "
                                                                                 "(default: retry forever)."),
) -> None:
    """Run a camera node: detect, track and project people, emit hand-shelf events (live or replay)."""
    from ..edge.camera.node import run_camera

    cfg = _load(config)
    summary = run_camera(cfg, camera, source=source, endpoint=to, output=output, debug_video=debug_video,
                         record_video=record_video, blur=not no_blur, max_frames=max_frames, processing_fps=fps,
                         wait_subscriber_s=wait, max_retries=max_retries,
                         base_dir=(config or example_store_path()).resolve().parent)
    c = summary.counters
    console.print(f"{camera}: {summary.frames_processed} of {summary.frames_read} frames processed in "
                  f"{summary.seconds:.1f} s ({summary.fps:.1f} fps; latency p50 {summary.latency_ms(50):.0f} ms, "
                  f"p99 {summary.latency_ms(99):.0f} ms); {c.get('observations', 0)} person observations, "
                  f"{c.get('interactions', 0)} hand-shelf events; {c.get('source_corrupt', 0)} corrupt frames skipped")
    for path in (debug_video, record_video):
        if path is not None:
            console.print(f"wrote {path} (kept on this machine{'' if not no_blur else ', heads NOT blurred'})")


@edge_app.command("shelf")
def edge_shelf(
    config: Optional[Path] = CONFIG_OPTION,
    node: Optional[str] = typer.Option(None, "--node", help="Read the sensors of this shelf node "
                                                            "(weight_sensors[].node); also its status name."),
    sensors: Optional[str] = typer.Option(None, "--sensors", help="Comma-separated sensor ids, e.g. ws-A1,ws-A2."),
    replay: Optional[Path] = typer.Option(None, "--replay", help="Replay recorded raw readings (JSONL or CSV) "
                                                                 "instead of reading the hardware."),
    to: Optional[str] = typer.Option(None, "--to", help="ZeroMQ endpoint of the fusion node (default: the config's)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also record the published messages here "
                                                                       "(with --output and no --to, nothing is "
                                                                       "sent over ZeroMQ)."),
    record: Optional[Path] = typer.Option(None, "--record", help="Record the raw readings here (JSONL) for replay."),
    speed: Optional[float] = typer.Option(None, help="With --replay: multiple of the recorded pace "
                                                     "(default: as fast as possible)."),
    wait: float = typer.Option(10.0, help="Seconds to wait for the fusion node to subscribe."),
    run_id: Optional[str] = typer.Option(None, help="Run id for deterministic event ids (default: random)."),
) -> None:
    """Run a shelf node: read the load cells (HX711 / serial scale) or a recording, publish weight changes."""
    from ..edge.shelf.node import serve

    cfg = _load(config)
    run = serve(cfg, node=node, sensors=sensors.split(",") if sensors else None,
                replay=str(replay) if replay else None, endpoint=to, publish=bool(to) or output is None,
                output=str(output) if output else None, record=str(record) if record else None,
                speed=speed, wait_s=wait, run_id=run_id)
    shelf = run.node
    where = " and ".join(x for x in (run.endpoint, run.output) if x)
    console.print(f"shelf node {shelf.node}: {run.readings} readings from {len(shelf.channels)} sensors, "
                  f"{shelf.counters['weight_changes']} weight changes, {run.published} messages to {where}"
                  + (f"; {run.skipped_lines} bad lines skipped" if run.skipped_lines else ""), highlight=False)
    for line in run.warnings:
        console.print(f"[yellow]warning:[/] {line}", highlight=False)


# --------------------------------------------------------------------------- calibrate commands
# (`storesense calibrate intrinsics|floor|ble|report`: the work lives in calibration/)


@calibrate_app.command("ble")
def calibrate_ble(
    data: Path = typer.Argument(..., help="A Kolakowski-layout dataset folder, or a JSONL recording of "
                                "ble_sighting messages from reference tags."),
    references: Optional[Path] = typer.Option(None, help="Reference tag positions (CSV tag,x,y[,height] or JSON) "
                                              "for a recording."),
    config: Optional[Path] = CONFIG_OPTION,
    output: Optional[Path] = typer.Option(None, help="Write the fitted ble_nodes entries (YAML) here."),
    plot: Optional[Path] = typer.Option(None, help="Write a PNG of RSSI vs distance with the fitted curves."),
) -> None:
    """Fit each BLE node's path-loss model (RSSI at 1 m, exponent) with a robust loss; print the residuals."""
    from ..calibration.ble import run_calibrate_ble

    fits, lines = run_calibrate_ble(data, references=references, config_path=config, output=output, plot=plot)
    table = Table(show_edge=False)
    for col in ("node", "RSSI@1m dBm", "exponent", "samples", "RMSE dB", "MAD dB", "p90 |res| dB"):
        table.add_column(col, justify="left" if col == "node" else "right")
    for f in fits:
        table.add_row(f.node, f"{f.rssi_at_1m:.1f}", f"{f.exponent:.2f}" + ("" if f.exponent_fitted else " (kept)"),
                      str(f.n_samples), f"{f.rmse_db:.2f}", f"{f.mad_db:.2f}", f"{f.p90_abs_residual_db:.2f}")
    console.print(table)
    for line in lines:
        console.print(line)


@calibrate_app.command("intrinsics")
def calibrate_intrinsics_cmd(
    images: Path = typer.Argument(..., help="Folder of board images (one camera, one resolution)."),
    board: str = typer.Option("9x6", help="Chessboard: inner corners COLSxROWS. ChArUco: squares COLSxROWS."),
    square: float = typer.Option(..., help="Square side in metres (e.g. 0.025)."),
    fix_aspect: bool = typer.Option(False, "--fix-aspect", help="Keep fx/fy = 1 (CALIB_FIX_ASPECT_RATIO)."),
    zero_tangent: bool = typer.Option(False, "--zero-tangent", help="Assume p1 = p2 = 0."),
    rational: bool = typer.Option(False, "--rational", help="Rational model: 8 distortion coefficients."),
    fix_principal_point: bool = typer.Option(False, "--fix-principal-point", help="Keep cx, cy at the centre."),
    charuco: bool = typer.Option(False, "--charuco", help="The board is a ChArUco board."),
    marker: Optional[float] = typer.Option(None, help="ChArUco marker side in metres."),
    dict_name: str = typer.Option("DICT_4X4_50", "--dict", help="ChArUco ArUco dictionary."),
    output: Path = typer.Option(Path("intrinsics.yaml"), "--output", "-o", help="Result YAML to write."),
    min_views: int = typer.Option(3, min=1, help="Fewest views the board must be found in."),
) -> None:
    """Calibrate a camera's intrinsics from chessboard or ChArUco images."""
    from ..calibration.board import parse_board_size
    from ..calibration.charuco import CharucoPattern
    from ..calibration.chessboard import Chessboard
    from ..calibration.intrinsics import CalibrationFlags, calibrate_intrinsics

    cols, rows = parse_board_size(board)
    if charuco:
        if marker is None:
            raise StoresenseError("--charuco needs --marker SIZE (marker side in metres)")
        pattern = CharucoPattern(cols, rows, square, marker, dict_name)
    else:
        pattern = Chessboard(cols, rows, square)
    flags = CalibrationFlags(fix_aspect=fix_aspect, zero_tangent=zero_tangent, rational=rational,
                             fix_principal_point=fix_principal_point)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("finding the board", total=None)
        result = calibrate_intrinsics(images, pattern, flags, min_views=min_views,
                                      progress=lambda done, total, name: bar.update(
                                          task, completed=done, total=total, description=f"finding the board: {name}"))
    result.save(output)
    K = result.matrix()
    console.print(f"fx {K[0, 0]:.3f}  fy {K[1, 1]:.3f}  cx {K[0, 2]:.3f}  cy {K[1, 2]:.3f}  "
                  f"dist {[round(d, 5) for d in result.dist]}", highlight=False)
    console.print(f"RMS reprojection error {result.rms:.4f} px over {len(result.views)} views "
                  f"(flags: {', '.join(result.flags) or 'none'})", highlight=False)
    worst = sorted(result.views, key=lambda v: -v.error_px)[:3]
    console.print("worst views: " + ", ".join(f"{v.name} {v.error_px:.3f} px" for v in worst), highlight=False)
    if result.rejected:
        console.print(f"[yellow]board not found in {len(result.rejected)} image(s):[/] {', '.join(result.rejected)}",
                      highlight=False)
    console.print(f"wrote {output}")


@calibrate_app.command("floor")
def calibrate_floor_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="Store YAML to write the calibration into."),
    camera: str = typer.Option(..., help="Camera id in the store config."),
    points: Optional[Path] = typer.Option(None, help="Correspondences: CSV or YAML of u, v, x, y[, z]."),
    aruco: Optional[Path] = typer.Option(None, help="Image of ArUco markers lying on the floor."),
    markers: Optional[Path] = typer.Option(None, help="Marker layout YAML (id -> floor position)."),
    intrinsics: Optional[Path] = typer.Option(None, help="Intrinsics result file (default: the config's)."),
    method: str = typer.Option("auto", help="auto (pose when intrinsics are known), pnp or homography."),
    threshold: float = typer.Option(4.0, help="RANSAC inlier threshold, pixels."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also save the fit and residuals (YAML)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fit and report, but leave the store file alone."),
) -> None:
    """Fit a camera to the floor (pose or homography) and write it into the store config."""
    from ..calibration.workflow import calibrate_camera_floor

    if method not in ("auto", "pnp", "homography"):
        raise StoresenseError(f"--method {method!r}: expected auto, pnp or homography")
    done = calibrate_camera_floor(config, camera, points=points, aruco=aruco, markers=markers,
                                  intrinsics_file=intrinsics, method=method, threshold_px=threshold,
                                  write=not dry_run)
    fit = done.fit
    table = Table(show_edge=False)
    for col in ("point", "u", "v", "x", "y", "px", "cm", ""):
        table.add_column(col, justify="left" if col in ("point", "") else "right")
    for p in fit.points:
        cm = "-" if p.residual_cm is None else f"{p.residual_cm:.1f}"
        table.add_row(p.label, f"{p.u:.1f}", f"{p.v:.1f}", f"{p.x:.2f}", f"{p.y:.2f}", f"{p.residual_px:.2f}", cm,
                      "" if p.inlier else "[red]outlier[/]")
    console.print(table)
    console.print(f"{fit.method}: {fit.inlier_count()}/{len(fit.points)} inliers, RMS {fit.rms_px():.2f} px, "
                  f"{fit.rms_cm():.1f} cm on the floor", highlight=False)
    centre = fit.camera_position()
    if centre is not None:
        console.print(f"camera at x {centre[0]:.2f} m, y {centre[1]:.2f} m, height {centre[2]:.2f} m", highlight=False)
    for note in fit.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if output:
        fit.save(output)
        console.print(f"wrote the fit to {output}")
    if done.written:
        what = "extrinsics" if fit.method == "pnp" else "homography"
        extra = (" and intrinsics" if done.intrinsics_written else "") + (
            f" (removed {', '.join(done.removed)})" if done.removed else "")
        console.print(f"[green]wrote {what}{extra} for {camera} into {config}[/] (validated)")
    else:
        console.print(f"dry run: {config} left unchanged")


@calibrate_app.command("report")
def calibrate_report_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNG plots and report.md."),
    config: Optional[Path] = CONFIG_OPTION,
    intrinsics: Optional[list[Path]] = typer.Option(None, "--intrinsics", help="Intrinsics result file (repeatable)."),
    floor: Optional[list[Path]] = typer.Option(None, "--floor", help="Floor fit file from `calibrate floor -o` "
                                                                      "(repeatable)."),
    cell: float = typer.Option(0.25, help="Coverage grid cell size, metres."),
    height: float = typer.Option(0.0, help="Height above the floor the coverage is computed at, metres."),
) -> None:
    """Plot reprojection errors, residual vectors and the cameras' floor coverage."""
    from ..calibration.floor_fit import FloorFit
    from ..calibration.intrinsics import IntrinsicsResult
    from ..calibration.report import write_report

    cfg = _load(config)
    results = [IntrinsicsResult.load(p) for p in intrinsics or []]
    fits = [FloorFit.load(p) for p in floor or []]
    written = write_report(cfg, out, intrinsics=results, floor_fits=fits, cell=cell, height=height)
    for path in written:
        console.print(f"wrote {path}")


# --------------------------------------------------------------------------- eval commands
# (`storesense eval mot|ips|carts`: the work lives in the component or datasets/)


@eval_app.command("carts")
def eval_carts(
    config: Optional[Path] = CONFIG_OPTION,
    level: str = typer.Option("all", help="quiet, busy, crowded, or all."),
    seed: int = typer.Option(0, help="First simulation seed."),
    seeds: int = typer.Option(1, min=1, help="Number of seeds per level (seed, seed+1, ...)."),
    shoppers: Optional[int] = typer.Option(None, min=1, help="Shoppers per scenario (default: the level's)."),
    plot: Optional[Path] = typer.Option(None, help="Folder for carts-<level>.png: true walks and fused sessions."),
) -> None:
    """Simulate shoppers at each difficulty level and score receipts, identity and positions."""
    from ..datasets.scoring.carts import LEVEL_NAMES, evaluate_levels

    cfg = _load(config)
    levels = LEVEL_NAMES if level == "all" else (level,)
    with console.status("evaluating") as status:
        results = evaluate_levels(cfg, levels, seeds=list(range(seed, seed + seeds)), shoppers=shoppers,
                                  progress=lambda text: status.update(text), plot_dir=plot)
    table = Table(title=f"storesense eval carts - {cfg.store.name}, seeds {seed}..{seed + seeds - 1}")
    for col in ("level", "shoppers", "exact", "precision", "recall", "review", "id sw", "err p50", "err p90",
                "obs/s"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, r in results.items():
        table.add_row(name, str(r.shoppers), f"{100 * r.exact_rate:.1f}%", f"{100 * r.precision:.1f}%",
                      f"{100 * r.recall:.1f}%", f"{100 * r.review_share:.1f}%", str(r.identity_switches),
                      f"{r.floor_error(0.5):.2f} m", f"{r.floor_error(0.9):.2f} m", f"{r.observations_per_s:,.0f}")
    console.print(table)
    console.print("exact: receipts exactly right; precision/recall: billed items; review: cart changes flagged; "
                  "id sw: sessions jumping between true shoppers; err: floor error where a camera sees the shopper")
    if plot:
        console.print(f"plots: {plot}/carts-<level>.png")


@eval_app.command("mot")
def eval_mot(
    seq_dirs: list[Path] = typer.Argument(
        ..., help="MOTChallenge sequence folders (seqinfo.ini, gt/gt.txt, det/det.txt; img1/ or a video for --detector model)."),
    detector: str = typer.Option(
        "public", "--detector", help="'public': the sequence's det/det.txt; 'model': the camera node's detector on the frames."),
    model: str = typer.Option("movenet", "--model", help="With --detector model: the model, as in a camera's detector.model."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder for <sequence>.txt results (MOTChallenge format) and summary.json."),
) -> None:
    """Track MOTChallenge sequences and print HOTA, MOTA and IDF1 per sequence and combined."""
    from ..datasets.scoring.mot_eval import evaluate_sequences, table_rows

    runs, combined = evaluate_sequences(seq_dirs, detector=detector, model=model, out=out)
    header, *rows = table_rows(runs, combined)
    table = Table(title=f"MOT evaluation ({detector} detections)")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row, end_section=row is rows[-2])
    console.print(table)
    if out is not None:
        console.print(f"results and summary.json written to {out}")


@eval_app.command("ips")
def eval_ips(
    data: Path = typer.Argument(..., help="A Kolakowski-layout dataset folder, or a JSONL recording of ble_sighting "
                                "messages (with --truth and --config)."),
    out: Path = typer.Option(Path("ips-eval"), help="Folder for the PNG figures and ips_results.json."),
    truth: Optional[Path] = typer.Option(None, help="For a recording: true positions, CSV ts,tag,x,y."),
    radio_map: Optional[Path] = typer.Option(None, help="For a recording: fingerprints, CSV x,y,<node>..."),
    config: Optional[Path] = CONFIG_OPTION,
    limit: Optional[int] = typer.Option(None, min=10, help="Only the first N samples of each test track."),
    cv: bool = typer.Option(False, help="Also run the leave-one-calibration-run-out cross-validation."),
) -> None:
    """Compare trilateration, fingerprinting and the fused trackers: median / p90 / mean error and plots."""
    from ..datasets.scoring.ips_report import LABELS, evaluate_kolakowski, evaluate_recording

    with console.status("evaluating") as status:
        def progress(stage: str) -> None:
            status.update(f"evaluating: {stage}")

        if not data.exists():
            raise StoresenseError(f"{data}: no such file or folder")
        if data.is_dir():
            report = evaluate_kolakowski(data, out, limit=limit, cv=cv, progress=progress)
        else:
            if truth is None:
                raise StoresenseError(f"{data}: a recording needs --truth (CSV ts,tag,x,y) and --config")
            report = evaluate_recording(_load(config), data, truth, out, radio_map_path=radio_map,
                                        progress=progress)
    table = Table(title=report.title, show_edge=False)
    for col in ("method", "median m", "p90 m", "mean m", "fixes", "coverage"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in report.rows():
        table.add_row(LABELS.get(row["method"], row["method"]), f"{row['median']:.2f}", f"{row['p90']:.2f}",
                      f"{row['mean']:.2f}", str(row["n"]), f"{row['coverage']:.0%}")
    console.print(table)
    if report.walk:
        console.print("walking test, distance of the fixes to the reference path: " + "; ".join(
            f"{m} median {v['median']:.2f} m / p90 {v['p90']:.2f} m" for m, v in report.walk.items()))
    if report.cv:
        console.print("cross-validation (leave one calibration run out, covered floor): " + "; ".join(
            f"{m} median {v['median']:.2f} m / p90 {v['p90']:.2f} m" for m, v in report.cv.items()))
    for f in report.files:
        console.print(f"wrote {f}")


def _is_click_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a click usage or parameter error, whichever click raised it.

    typer up to 0.2x raises click's own exceptions; later typer releases vendor
    click (``typer._click``) and raise copies of them that are not subclasses of
    ``click.ClickException``. Both are recognised by their class name along the
    MRO and their ``format_message``/``exit_code`` interface.
    """
    return (any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)
            and callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int))


def usage_error_line(exc: BaseException) -> str:
    """One line for a command-line mistake: the command, what is wrong, and where help is."""
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", "") or "storesense"
    message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
    return f"{command}: {message} (see '{command} --help')"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, turning known errors into one line.

    A bad input (config, recording, URL) and a command-line mistake (unknown
    command or option, missing or ill-typed value) each print one line on
    stderr and exit with status 2.
    """
    try:
        rc = app(args=argv, prog_name="storesense", standalone_mode=False)
    except StoresenseError as exc:
        err_console.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        if not _is_click_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group called bare: its help is the answer
            if str(exc.format_message()).strip():  # type: ignore[attr-defined]
                exc.show()  # type: ignore[attr-defined]  (click 8.2 prints the help here; typer 0.29 already did)
        else:
            err_console.print(f"[red]error:[/] {usage_error_line(exc)}", highlight=False)
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    if isinstance(rc, int) and rc:
        sys.exit(rc)

