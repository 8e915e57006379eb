"""``storesense simulate|fusion|replay``: record a scenario, run the fusion node, feed a live one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoresenseError
from .common import CONFIG_OPTION, console, load_config


def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Recording to write (JSON lines)."),
    config: Optional[Path] = CONFIG_OPTION,
    shoppers: int = typer.Option(6, min=1, max=200, help="Number of shoppers."),
    seed: int = typer.Option(1, help="Scenario seed."),
) -> None:
    """Generate a synthetic scenario and record the edge messages it produces."""
    from ..transport.recording import record
    from ..datasets.sim.synthetic import generate_scenario

    cfg = load_config(config)
    scenario = generate_scenario(cfg, shoppers=shoppers, seed=seed)
    n = record(scenario.messages, out, cfg.store.id)
    truth = out.with_suffix(".truth.json")
    truth.write_text(json.dumps([{"shopper": s.id, "tag": s.tag, "enter_ts": s.enter_ts, "exit_ts": s.exit_ts,
                                  "cart": s.cart()} for s in scenario.shoppers], indent=1))
    console.print(f"wrote {n} messages to {out} and the ground truth to {truth}")


def fusion(
    config: Optional[Path] = CONFIG_OPTION,
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="Recording to replay (default: live ZeroMQ)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Record the fusion output here."),
    mqtt: Optional[str] = typer.Option(None, help="Broker URL to publish to (default: the config's; "
                                                  "with --input and no URL, nothing is published)."),
    speed: Optional[float] = typer.Option(None, help="Replay at this multiple of recorded speed (default: "
                                                     "as fast as possible)."),
    run_id: Optional[str] = typer.Option(None, help="Fixed run id, for a deterministic replay (test, regression). "
                                                    "Default: a fresh random one at each start, or the journal's."),
    journal: Optional[Path] = typer.Option(None, help="Journal the input here and carry on from it after a crash "
                                                      "(default, live: the config's fusion.journal)."),
    curve_keys: Optional[Path] = typer.Option(None, help="ZeroMQ CURVE key folder (default: the config's "
                                                         "transports.zmq.curve_keys): accept only listed edge nodes."),
) -> None:
    """Run the fusion node on a recording or on the live edge stream."""
    from ..fusion.service import FusionService
    from ..transport.provision import edge_sources
    from ..transport.zeromq import CurveKeys

    cfg = load_config(config)
    url = mqtt or (cfg.transports.mqtt.url if input is None else None)
    if not url and output is None:
        raise StoresenseError("nowhere to send the output: give --output FILE or --mqtt URL "
                              "(or set transports.mqtt.url in the config)")
    journal = journal or (Path(cfg.fusion.journal) if input is None and cfg.fusion.journal else None)
    keys = curve_keys or (Path(cfg.transports.zmq.curve_keys) if cfg.transports.zmq.curve_keys else None)
    curve = CurveKeys.fusion(keys) if keys is not None and input is None else None
    with FusionService(cfg, run_id=run_id, mqtt_url=url, output=output, journal=journal,
                       journal_fsync_s=cfg.fusion.journal_fsync_s,
                       journal_rotate_entries=cfg.fusion.journal_rotate_entries) as service:
        if service.recovered:
            console.print(f"carried on run {service.run_id} from {journal}: {service.recovered} journal entries, "
                          f"{sum(not s.closed for s in service.node.sessions.values())} open session(s)",
                          highlight=False)
        if input is not None:
            service.run_recording(input, speed=speed)
        else:
            service.listen(cfg.transports.zmq.observations, curve=curve, sources=edge_sources(cfg))
            service.freeze_startup_state()
            console.print(f"fusion node listening on {cfg.transports.zmq.observations} (run {service.run_id}"
                          f"{', CURVE' if curve else ''}{', journal ' + str(journal) if journal else ''}; "
                          f"Ctrl-C to stop)", highlight=False, soft_wrap=True)
            try:
                service.serve(poll_s=1.0)
            except KeyboardInterrupt:
                pass
    console.print(" ".join(f"{k}={v}" for k, v in sorted(service.counters.items())))


def replay(
    recording: Path = typer.Argument(..., help="Recording (JSON lines) to publish."),
    to: Optional[str] = typer.Option(None, help="ZeroMQ endpoint of the fusion node (default: the config's)."),
    config: Optional[Path] = CONFIG_OPTION,
    speed: Optional[float] = typer.Option(1.0, help="Multiple of recorded speed; 0 = as fast as possible."),
    curve_keys: Optional[Path] = typer.Option(None, help="ZeroMQ CURVE key folder (default: the config's "
                                                         "transports.zmq.curve_keys)."),
    node: str = typer.Option("replay", help="Edge node whose CURVE key to publish with (<node>.key_secret)."),
) -> None:
    """Publish a recording into a live fusion node over ZeroMQ, as the edge nodes would."""
    from ..transport.recording import replay as replay_file
    from ..transport import ZmqPublisher
    from ..transport.zeromq import CurveKeys

    if not recording.is_file():  # say so now, not after waiting for a fusion node
        raise StoresenseError(f"{recording}: no such file" if not recording.exists() else f"{recording}: not a file")
    cfg = load_config(config)
    endpoint = to or cfg.transports.zmq.observations
    keys = curve_keys or (Path(cfg.transports.zmq.curve_keys) if cfg.transports.zmq.curve_keys else None)
    pub = ZmqPublisher(endpoint, store=cfg.store.id, curve=CurveKeys.edge(keys, node) if keys else None)
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
