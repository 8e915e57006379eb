"""``storesense edge camera|ble|espresense|shelf``: run edge nodes; each command stays thin, the work lives in edge/."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import example_store_path
from ..errors import StoresenseError
from .common import CONFIG_OPTION, console, load_config

edge_app = typer.Typer(no_args_is_help=True, help="Run edge nodes: cameras, BLE receivers, shelf scales.")


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

    cfg = load_config(config)
    if node not in {n.id for n in cfg.ble_nodes}:
        raise StoresenseError(f"--node {node!r}: not a BLE node of store {cfg.store.id} "
                              f"(has: {', '.join(n.id for n in cfg.ble_nodes) or 'none'})")
    from ..transport.zeromq import CurveKeys

    counters = run_node(node, endpoint or cfg.transports.zmq.observations, cfg.store.id, tags=tag,
                        max_rate_hz=rate, duration_s=duration,
                        curve=CurveKeys.for_edge(cfg.transports.zmq.curve_keys, node))
    console.print(f"BLE node {node} stopped: " + ", ".join(f"{k} {v}" for k, v in counters.items()))


@edge_app.command("espresense")
def edge_espresense(
    mqtt: Optional[str] = typer.Option(None, "--mqtt", help="mqtt://[user:pass@]host:port of the broker the ESP32s "
                                       "publish to (default: the config's transports.mqtt.url)."),
    config: Optional[Path] = CONFIG_OPTION,
    room: list[str] = typer.Option([], "--room", help="ROOM=NODE: an ESPresense room that is the BLE node NODE "
                                   "(repeatable; default: rooms are named after ble_nodes ids)."),
    tag: list[str] = typer.Option([], "--tag", help="Keep only these tag ids (repeatable; as the bleak node writes "
                                  "them, e.g. <uuid>-<major>-<minor>). Default: all."),
    to: Optional[str] = typer.Option(None, "--to", help="ZeroMQ endpoint of the fusion node (default: the config's)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also record the sightings here (JSONL); "
                                          "with --output and no --to, nothing is sent over ZeroMQ."),
    duration: Optional[float] = typer.Option(None, min=0.0, help="Stop after this many seconds."),
    run_id: Optional[str] = typer.Option(None, help="Run id for deterministic event ids (default: random)."),
) -> None:
    """Bridge ESPresense receivers: espresense/devices/<id>/<room> reports to ble_sighting messages."""
    from ..edge.ble.espresense import run_bridge

    cfg = load_config(config)
    url = mqtt or cfg.transports.mqtt.url
    if not url:
        raise StoresenseError("edge espresense: no broker: pass --mqtt mqtt://host:port (the one the ESP32s publish "
                              "to) or set transports.mqtt.url in the config")
    nodes = {n.id for n in cfg.ble_nodes}
    rooms = {}
    for item in room:
        name, sep, node = item.partition("=")
        if not sep or not name or node not in nodes:
            raise StoresenseError(f"--room {item!r}: expected ROOM=NODE with NODE one of the store's BLE nodes "
                                  f"({', '.join(sorted(nodes)) or 'none'})")
        rooms[name] = node
    sinks = []
    recorder = None
    if output is not None:
        from ..transport.recording import Recorder

        recorder = Recorder(output, cfg.store.id)
        sinks.append(recorder.write)
    zmq = None
    if to is not None or output is None:
        from ..transport import ZmqPublisher
        from ..transport.zeromq import CurveKeys

        zmq = ZmqPublisher(to or cfg.transports.zmq.observations, store=cfg.store.id,
                           curve=CurveKeys.for_edge(cfg.transports.zmq.curve_keys, "espresense"))
        sinks.append(zmq.publish)

    def publish(msg) -> None:
        for sink in sinks:
            sink(msg)

    try:
        counters = run_bridge(url, publish, rooms=rooms, nodes=nodes, tags=tag or None, duration_s=duration,
                              run_id=run_id)
    finally:
        if recorder is not None:
            recorder.close()
        if zmq is not None:
            zmq.close()
    console.print("ESPresense bridge stopped: " + ", ".join(f"{k} {v}" for k, v in counters.items()),
                  highlight=False)


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

    cfg = load_config(config)
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

    cfg = load_config(config)
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
