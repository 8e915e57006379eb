"""``storesense eval carts|mot|ips``: accuracy on real or simulated data; the work lives in datasets/scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from ..errors import StoresenseError
from .common import CONFIG_OPTION, console, load_config

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate accuracy on real or simulated data.")
datasets_app = typer.Typer(no_args_is_help=True, help="Build evaluation data from the public dev data.")


@datasets_app.command("mot-rescale")
def datasets_mot_rescale(
    seq_dir: Path = typer.Argument(..., help="A MOTChallenge sequence folder with frames (img1/ or a video)."),
    scale: list[float] = typer.Option(..., "--scale", help="Scale factor of the copies (repeat for several; cycled over the grid's cells)."),
    out: Path = typer.Option(..., "--out", help="Folder to write the new sequence folder into."),
    canvas: str = typer.Option("768x576", "--canvas", help="Output frame size WIDTHxHEIGHT."),
    grid: str = typer.Option("2x2", "--grid", help="COLUMNSxROWS cells, one copy of the sequence in each."),
) -> None:
    """Rescale a MOT sequence into a larger canvas (small people, as an elevated camera sees them), ground truth too."""
    from ..datasets.mot_rescale import parse_size, person_heights, rescale_sequence

    folder = rescale_sequence(seq_dir, out, list(scale), parse_size(canvas, "--canvas"), parse_size(grid, "--grid"))
    h = person_heights(folder)
    if len(h):
        console.print(f"wrote {folder}: person heights p5 {np.percentile(h, 5):.0f} px, median "
                      f"{np.median(h):.0f} px, p95 {np.percentile(h, 95):.0f} px")
    else:
        console.print(f"wrote {folder} (no ground-truth boxes)")


@eval_app.command("carts")
def eval_carts(
    config: Optional[Path] = CONFIG_OPTION,
    level: str = typer.Option("all", help="quiet, busy, crowded, or all."),
    seed: int = typer.Option(0, help="First simulation seed."),
    seeds: int = typer.Option(1, min=1, help="Number of seeds per level (seed, seed+1, ...)."),
    shoppers: Optional[int] = typer.Option(None, min=1, help="Shoppers per scenario (default: the level's)."),
    plot: Optional[Path] = typer.Option(None, help="Folder for carts-<level>.png: true walks and fused sessions."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results (per level, per seed, per shopper) "
                                                                 "as JSON to this file."),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="NAME or all: play the named hard-case "
                                           "scenarios (datasets/sim/scenarios.py) instead of the levels; per "
                                           "scenario exact receipts, precision/recall/F1 of products with "
                                           "quantities per receipt, and lines sent to review."),
    store: list[Path] = typer.Option([], "--store", help="With --scenario: a store YAML to play them in (repeat "
                                                         "for several; default --config)."),
) -> None:
    """Simulate shoppers at each difficulty level (or the named scenarios) and score receipts, identity and positions.

    Seeds below 1000 were used to tune the fusion's parameters; figures worth
    reporting come from seeds of 1000 and above.
    """
    import json

    from ..datasets.scoring.carts import LEVEL_NAMES, evaluate_levels

    if scenario is not None:
        from ..datasets.scoring.carts import scenario_report

        paths = store or [config]
        configs = {}
        for path in paths:
            cfg = load_config(path)
            configs[cfg.store.id] = cfg
        seed_list = list(range(seed, seed + seeds))
        with console.status("evaluating") as status:
            report = scenario_report(configs, scenario, seed_list, progress=lambda text: status.update(text))
        for store_id, rows in report["tables"].items():
            table = Table(title=f"storesense eval carts --scenario - {configs[store_id].store.name}, "
                                f"seeds {seed}..{seed + seeds - 1}{report['note']}")
            for i, col in enumerate(report["columns"]):
                table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
            for row in rows:
                table.add_row(*row, end_section=row[0] == "all scenarios")
            console.print(table)
        console.print(report["legend"])
        if json_out is not None:
            json_out.write_text(json.dumps(report["json"], indent=1) + "\n", encoding="utf-8")
            console.print(f"wrote {json_out}")
        return

    if level not in ("all", *LEVEL_NAMES):
        raise StoresenseError(f"eval carts --level: unknown level {level!r}; choose all, {', '.join(LEVEL_NAMES)}")
    cfg = load_config(config)
    levels = LEVEL_NAMES if level == "all" else (level,)
    seed_list = list(range(seed, seed + seeds))
    per_seed: dict = {}
    with console.status("evaluating") as status:
        results = evaluate_levels(cfg, levels, seeds=seed_list, shoppers=shoppers,
                                  progress=lambda text: status.update(text), plot_dir=plot, per_seed=per_seed)
    tuned = [s for s in seed_list if s < 1000]
    note = f"; seeds {tuned[0]}..{tuned[-1]} were used for tuning" if tuned else "; none used for tuning"
    table = Table(title=f"storesense eval carts - {cfg.store.name}, seeds {seed}..{seed + seeds - 1}{note}")
    for col in ("level", "shoppers", "exact", "precision", "recall", "review", "lines rev", "wrong flagged",
                "silent/100", "unbillable", "id sw", "err p50", "err p90", "obs/s"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, r in results.items():
        table.add_row(name, str(r.shoppers), f"{100 * r.exact_rate:.1f}%", f"{100 * r.precision:.1f}%",
                      f"{100 * r.recall:.1f}%", f"{100 * r.review_share:.1f}%", f"{100 * r.line_review_share:.1f}%",
                      f"{100 * r.flagged_wrong_share:.0f}% of {r.wrong_lines}", f"{r.silent_errors_per_100:.1f}",
                      str(r.unbillable), str(r.identity_switches),
                      f"{r.floor_error(0.5):.2f} m", f"{r.floor_error(0.9):.2f} m", f"{r.observations_per_s:,.0f}")
    console.print(table)
    console.print("exact: receipts exactly right; precision/recall: billed items; review: cart changes flagged; "
                  "lines rev: receipt lines with a flagged change; wrong flagged: wrong receipt lines that carried a "
                  "flag; silent/100: wrong lines without a flag per 100 shoppers; unbillable: receipts of sessions "
                  "that never got a tag (their items are lost); id sw: sessions jumping between true shoppers; "
                  "err: floor error where a camera sees the shopper")
    if plot:
        console.print(f"plots: {plot}/carts-<level>.png")
    if json_out is not None:
        data = {"command": "eval carts", "store": cfg.store.id, "seeds": seed_list, "tuning_seeds": tuned,
                "levels": {name: {"total": {k: v for k, v in r.to_json().items() if k != "per_shopper"},
                                  "seeds": {str(sd): sc.to_json() for sd, sc in per_seed.get(name, {}).items()}}
                           for name, r in results.items()}}
        json_out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


@eval_app.command("mot")
def eval_mot(
    seq_dirs: list[Path] = typer.Argument(
        ..., help="MOTChallenge sequence folders (seqinfo.ini, gt/gt.txt, det/det.txt; img1/ or a video for --detector model)."),
    detector: str = typer.Option(
        "public", "--detector", help="'public': the sequence's det/det.txt; 'model': the camera node's detector on the frames."),
    model: str = typer.Option("movenet", "--model", help="With --detector model: the model, as in a camera's detector.model."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder for <sequence>.txt results (MOTChallenge format) and summary.json."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the summary (scores, times, size buckets) as JSON here."),
) -> None:
    """Track MOTChallenge sequences and print HOTA, MOTA and IDF1 per sequence and combined.

    With --detector model it also prints the detector's time per frame and its detection
    precision and recall (IoU 0.5) per person-height bucket.
    """
    import json

    from ..datasets.scoring.mot_eval import evaluate_sequences, size_table_rows, summary, table_rows

    runs, combined = evaluate_sequences(seq_dirs, detector=detector, model=model, out=out)
    header, *rows = table_rows(runs, combined)
    table = Table(title=f"MOT evaluation ({detector} detections)")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row, end_section=row is rows[-2])
    console.print(table)
    size_header, *size_rows = size_table_rows(runs) or [None]
    if size_header:
        sizes = Table(title="Detections by person height (IoU 0.5, before tracking, all sequences)")
        for i, name in enumerate(size_header):
            sizes.add_column(name, justify="left" if i == 0 else "right")
        for row in size_rows:
            sizes.add_row(*row, end_section=row is size_rows[-2])
        console.print(sizes)
    if out is not None:
        console.print(f"results and summary.json written to {out}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(summary(runs, combined, detector), indent=2) + "\n", encoding="utf-8")
        console.print(f"summary written to {json_path}")


def _print_choices(report) -> None:
    """The leave-one-track-out choices: per method the chosen parameters, the held-out figure, each fold's choice."""
    from ..datasets.scoring.ips_report import LABELS

    table = Table(title="chosen by leave-one-track-out (held-out figures: each track scored with the choice made "
                  "without it)", show_edge=False)
    for col in ("method", "chosen", "CV median m", "CV p90 m", "per held-out track: choice"):
        table.add_column(col, justify="right" if col.startswith("CV") else "left")
    for m, c in report.choices.items():
        table.add_row(LABELS.get(m, m), _params(c.chosen), f"{c.cv['median']:.2f}", f"{c.cv['p90']:.2f}",
                      "; ".join(f"{f['track']}: {_params(f['chosen'])}" for f in c.folds))
    console.print(table)
    snippet = report.config_snippet()
    if snippet:
        console.print("store config for the fusion node (Kalman fusion):\n  ble:\n"
                      f"    history_s: {snippet['ble']['history_s']:g}")


def _params(p: dict) -> str:
    names = {"history_s": "window {:g} s", "map_bandwidth_m": "bandwidth {:g} m"}
    return ", ".join(names.get(k, k + " {:g}").format(v) for k, v in p.items())


@eval_app.command("ips")
def eval_ips(
    data: Path = typer.Argument(..., help="A Kolakowski-layout dataset folder, a walk-test CSV ts,node,tag,rssi, or "
                                "a JSONL recording of ble_sighting messages (these two with --truth and --config)."),
    out: Path = typer.Option(Path("ips-eval"), help="Folder for the PNG figures and ips_results.json."),
    truth: Optional[Path] = typer.Option(None, help="For a recording: true positions, CSV ts,tag,x,y."),
    radio_map: Optional[Path] = typer.Option(None, help="For a recording: fingerprints, CSV x,y,<node>..."),
    config: Optional[Path] = CONFIG_OPTION,
    limit: Optional[int] = typer.Option(None, min=10, help="Only the first N samples of each test track."),
    cv: bool = typer.Option(False, help="Also run the leave-one-calibration-run-out cross-validation."),
    window: Optional[float] = typer.Option(
        None, "--window", min=0.0, max=30.0, help="Observation window (s): each receiver's RSSI is the mean of its "
        "packets in the last WINDOW seconds (default: each method's cross-validated window; 0: one batch)."),
    tag_height: Optional[float] = typer.Option(
        None, "--tag-height", min=0.0, max=3.0, help="For a recording or CSV: tag height (m); default the config's "
        "ble.tag_height."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results (rows, per tag, settings) "
                                            "as JSON here."),
    choose_window: bool = typer.Option(
        False, "--choose-window", help="Choose each method's observation window (and the particle filter's map "
        "bandwidth) by leave-one-track-out: over the tags of a walk test (one track each), or the calibration runs "
        "of a Kolakowski folder; print the choices, their cross-validated figures and the config lines."),
) -> None:
    """Compare trilateration, fingerprinting and the fused trackers: median / p90 / mean error and plots.

    DATA is a Kolakowski-layout folder, a walk-test CSV (ts,node,tag,rssi) or a JSONL recording.
    """
    import json

    from ..datasets.scoring.ips_report import LABELS, evaluate_kolakowski, evaluate_recording

    params = {"history_s": window} if window is not None else None

    with console.status("evaluating") as status:
        def progress(stage: str) -> None:
            status.update(f"evaluating: {stage}")

        if not data.exists():
            raise StoresenseError(f"{data}: no such file or folder")
        if data.is_dir():
            report = evaluate_kolakowski(data, out, limit=limit, cv=cv, params=params, choose=choose_window,
                                         progress=progress)
        else:
            if truth is None:
                raise StoresenseError(f"{data}: a sightings file needs --truth (CSV ts,tag,x,y) and --config")
            report = evaluate_recording(load_config(config), data, truth, out, radio_map_path=radio_map,
                                        params=params, tag_height=tag_height, choose=choose_window,
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
    if report.choices:
        _print_choices(report)
    if report.settings.get("unknown_nodes"):
        console.print("ignored sightings from nodes not in the config: " + ", ".join(report.settings["unknown_nodes"]))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report.to_json(), indent=1))
        report.files.append(json_out)
    for f in report.files:
        console.print(f"wrote {f}")
