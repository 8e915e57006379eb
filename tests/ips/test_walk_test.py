"""A CSV walk test built from the simulator (known truth), through ``storesense eval ips``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from storesense.cli import app
from storesense.datasets.loaders.walk_test import load_sightings, read_sightings_csv
from storesense.errors import StoresenseError
from storesense.ips.setup import setup_from_config


def _errors(fixes, truth):
    """Independent scoring: each fix against its tag's true position, linearly interpolated."""
    out = {}
    for f in fixes:
        t = truth[f.tag]
        if t[0, 0] <= f.ts <= t[-1, 0]:
            out.setdefault(f.tag, []).append(np.hypot(f.x - np.interp(f.ts, t[:, 0], t[:, 1]),
                                                      f.y - np.interp(f.ts, t[:, 0], t[:, 2])))
    return {k: np.array(v) for k, v in out.items()}


def test_csv_walk_test_evaluation_numbers(store_walk, tmp_path):
    cfg, folder, _, truth = store_walk
    res = CliRunner().invoke(app, ["eval", "ips", str(folder / "sightings.csv"), "--truth", str(folder / "truth.csv"),
                                   "--out", str(tmp_path), "--json", str(tmp_path / "walk.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "walk.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"trilateration", "kalman", "particle"}  # no radio map: no kNN
    assert data["settings"]["tag_height"] == cfg.ble.tag_height
    # the same sightings, positioned here and scored independently, give the report's numbers
    setup = setup_from_config(cfg)
    for method in rows:
        errs = _errors(setup.locator(method).run(read_sightings_csv(folder / "sightings.csv")), truth)
        pooled = np.concatenate(list(errs.values()))
        assert rows[method]["n"] == len(pooled)
        assert rows[method]["median"] == pytest.approx(np.median(pooled), abs=1e-9)
        assert rows[method]["p90"] == pytest.approx(np.percentile(pooled, 90), abs=1e-9)
        for tag, e in errs.items():
            assert data["per_tag"][method][tag]["median"] == pytest.approx(np.median(e), abs=1e-9)
    # and the numbers mean something: 5 receivers, 4 dB shadowing, in a 12 x 8 m shop
    assert rows["kalman"]["median"] < 1.6 and rows["kalman"]["p90"] < 3.3  # measured 1.26 / 2.80 m
    assert rows["kalman"]["coverage"] > 0.9
    assert (tmp_path / "ips_tracks.png").stat().st_size > 10_000


def test_csv_and_jsonl_give_the_same_figures(store_walk, tmp_path):
    cfg, folder, _, _ = store_walk
    out = {}
    for name in ("sightings.csv", "sightings.jsonl"):
        res = CliRunner().invoke(app, ["eval", "ips", str(folder / name), "--truth", str(folder / "truth.csv"),
                                       "--out", str(tmp_path / name), "--json", str(tmp_path / f"{name}.json")])
        assert res.exit_code == 0, res.output
        out[name] = json.loads((tmp_path / f"{name}.json").read_text())["rows"]
    for a, b in zip(out["sightings.csv"], out["sightings.jsonl"]):
        assert a["method"] == b["method"] and a["n"] == b["n"]
        assert a["median"] == pytest.approx(b["median"], abs=0.02)  # CSV keeps 0.1 dB, 1 ms


def test_observation_window_beats_single_packets_on_the_simulator(store_walk):
    """Trilateration with its cross-validated window (3 s) against one packet per node."""
    cfg, folder, _, truth = store_walk
    msgs = load_sightings(folder / "sightings.csv")
    p90 = {}
    for h in (0.0, None):
        setup = setup_from_config(cfg, params=None if h is None else {"history_s": h})
        p90[h] = np.percentile(np.concatenate(list(_errors(setup.locator("trilateration").run(msgs), truth).values())), 90)
    assert p90[None] < 0.85 * p90[0.0], p90  # measured 3.63 -> 2.08 m


def test_bad_csv_lines_name_file_line_and_column(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("ts,node,tag,rssi\n1.0,ble-a,phone,-60\n2.0,ble-a,phone,loud\n")
    with pytest.raises(StoresenseError, match=r"s\.csv:3: column rssi"):
        read_sightings_csv(p)
    p.write_text("time,node,tag,rssi\n")
    with pytest.raises(StoresenseError, match=r"s\.csv:1: expected the header 'ts,node,tag,rssi'"):
        read_sightings_csv(p)
    p.write_text("ts,node,tag,rssi,mac\n2024-05-02T10:15:03.5,ble-a,phone,-61.5,aa:bb\n1714644902,ble-b,phone,-70,aa:bb\n")
    msgs = read_sightings_csv(p)  # ISO and epoch times, extra column ignored, sorted by time
    assert [m.node for m in msgs] == ["ble-b", "ble-a"]
    assert msgs[1].ts == pytest.approx(1714644903.5) and msgs[1].rssi == -61.5


def test_choose_window_is_leave_one_track_out(store_walk, tmp_path):
    """--choose-window: each tag's window is chosen on the other tag; the CV figure pools the held-out errors."""
    cfg, folder, _, truth = store_walk
    res = CliRunner().invoke(app, ["eval", "ips", str(folder / "sightings.csv"), "--truth", str(folder / "truth.csv"),
                                   "--out", str(tmp_path), "--choose-window", "--json", str(tmp_path / "walk.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "walk.json").read_text())
    choice = data["choices"]["kalman"]
    msgs = load_sightings(folder / "sightings.csv")
    windows = [g["params"]["history_s"] for g in choice["grid"]]
    assert windows == [0.0, 0.5, 1.0, 2.0, 3.0, 5.0]
    # every window's errors per tag, positioned and scored here
    errs = {w: _errors(setup_from_config(cfg, params={"history_s": w}).locator("kalman").run(msgs), truth)
            for w in windows}

    def crit(e):
        return np.median(e) + np.percentile(e, 90)

    tags = sorted(truth)
    held = []
    for fold in choice["folds"]:
        others = [t for t in tags if t != fold["track"]]
        best = min(windows, key=lambda w: crit(np.concatenate([errs[w][t] for t in others])))
        assert fold["chosen"] == {"history_s": best}
        held.append(errs[best][fold["track"]])
    pooled = np.concatenate(held)
    assert choice["cv"]["median"] == pytest.approx(np.median(pooled), abs=1e-9)
    assert choice["cv"]["p90"] == pytest.approx(np.percentile(pooled, 90), abs=1e-9)
    overall = min(windows, key=lambda w: crit(np.concatenate(list(errs[w].values()))))
    assert choice["chosen"] == {"history_s": overall}
    assert data["config"] == {"ble": {"history_s": overall}}
    assert f"history_s: {overall:g}" in res.output
    assert data["settings"]["history_s"]["kalman"] == overall  # the table ran with the choice
