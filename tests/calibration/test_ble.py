"""BLE path-loss calibration: robust fits, re-calibration from reference tags, the CLI, and the real dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storesense.calibration.ble import (
    ReferenceTag,
    apply_fits,
    fit_nodes,
    fit_path_loss,
    load_references,
    recalibrate_from_references,
)
from storesense.contracts import BleSighting, Stamper
from storesense.transport.recording import record
from storesense.errors import StoresenseError
from storesense.ips.pathloss import Anchor

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ble" / "kolakowski2021"


def test_robust_fit_recovers_the_model_despite_reflections():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.8, 12.0, 600)
    rssi = -57.0 - 10 * 2.4 * np.log10(d) + rng.normal(0, 3.0, len(d))
    hit = rng.random(len(d)) < 0.15
    rssi[hit] -= rng.uniform(10, 25, hit.sum())  # 15 % blocked by bodies / shelves
    robust = fit_path_loss("n1", d, rssi)
    assert abs(robust.rssi_at_1m + 57.0) < 2.0 and abs(robust.exponent - 2.4) < 0.2
    plain = fit_path_loss("n1", d, rssi, loss="linear")
    assert abs(robust.exponent - 2.4) + abs(robust.rssi_at_1m + 57) < abs(plain.exponent - 2.4) + abs(
        plain.rssi_at_1m + 57)
    assert robust.exponent_fitted and robust.n_samples == 600 and robust.mad_db < robust.rmse_db


def test_too_few_samples_and_short_distance_span():
    with pytest.raises(StoresenseError, match="node n1: 2 usable samples"):
        fit_path_loss("n1", [1.0, 2.0, np.nan], [-60.0, -66.0, -70.0])
    # all samples at about the same distance: only the 1 m level is fitted
    f = fit_path_loss("n1", [3.0, 3.1, 3.2, 3.0], [-70.0, -71.0, -69.0, -70.0], start=(-59.0, 2.2))
    assert not f.exponent_fitted and f.exponent == 2.2
    assert f.rssi_at_1m == pytest.approx(-70.0 + 22 * np.log10(3.07), abs=0.5)


def test_recalibration_from_reference_tags(tmp_path):
    """A node drifted 6 dB (new enclosure): three reference tags put it right."""
    anchors = {"n1": Anchor("n1", 0.0, 0.0, 2.5, -59.0, 2.0), "n2": Anchor("n2", 10.0, 0.0, 2.5, -59.0, 2.0)}
    refs = [ReferenceTag("ref-a", 1.0, 1.0), ReferenceTag("ref-b", 5.0, 4.0), ReferenceTag("ref-c", 9.0, 6.0)]
    true = {"n1": (-65.0, 2.0), "n2": (-59.0, 2.0)}
    rng = np.random.default_rng(2)
    stampers = {n: Stamper(n, run_id="t") for n in anchors}
    msgs = []
    for k in range(40):
        for r in refs:
            for n, a in anchors.items():
                d = float(a.distance(np.array([r.x, r.y]), r.height))
                p0, ex = true[n]
                msgs.append(stampers[n].make(BleSighting, 1000.0 + k, node=n, tag=r.tag,
                                             rssi=round(p0 - 10 * ex * np.log10(d) + rng.normal(0, 2.0), 1)))
    rec = tmp_path / "refs.jsonl"
    record(msgs, rec, "demo")
    (tmp_path / "refs.csv").write_text("tag,x,y\nref-a,1,1\nref-b,5,4\nref-c,9,6\n")
    fits = recalibrate_from_references(anchors, msgs, load_references(tmp_path / "refs.csv"))
    assert abs(fits["n1"].rssi_at_1m + 65.0) < 1.0 and abs(fits["n2"].rssi_at_1m + 59.0) < 1.0
    assert apply_fits(anchors, fits)["n1"].rssi_at_1m == fits["n1"].rssi_at_1m
    with pytest.raises(StoresenseError, match="no node heard any reference tag"):
        recalibrate_from_references(anchors, msgs, [ReferenceTag("other", 0, 0)])
    (tmp_path / "bad.csv").write_text("tag,x,y\nref-a,1,one\n")
    with pytest.raises(StoresenseError, match=r"bad.csv:2"):
        load_references(tmp_path / "bad.csv")


def test_calibrate_ble_cli_on_a_recording(tmp_path):
    """`storesense calibrate ble REC --references FILE` against the example store's nodes."""
    from storesense.config import example_store_path, load_store_config
    from storesense.ips.pathloss import anchors_from_config

    cfg = load_store_config(example_store_path())
    anchors = anchors_from_config(cfg)
    refs = [("ref-1", 2.0, 1.0), ("ref-2", 6.0, 4.2), ("ref-3", 10.0, 7.0), ("ref-4", 1.0, 7.0)]
    rng = np.random.default_rng(4)
    msgs = []
    st = {n: Stamper(n, run_id="c") for n in anchors}
    for k in range(10):
        for tag, x, y in refs:
            for n, a in anchors.items():
                d = float(a.distance(np.array([x, y])))
                msgs.append(st[n].make(BleSighting, 10.0 + k, node=n, tag=tag,
                                       rssi=round(-63.0 - 25 * np.log10(d) + rng.normal(0, 1.5), 1)))
    record(msgs, tmp_path / "rec.jsonl", cfg.store.id)
    (tmp_path / "refs.csv").write_text("tag,x,y\n" + "".join(f"{t},{x},{y}\n" for t, x, y in refs))
    from typer.testing import CliRunner

    from storesense.datasets.loaders.ble_calibration import run_calibrate_ble
    from storesense.cli import app

    out = CliRunner().invoke(app, ["calibrate", "ble", str(tmp_path / "rec.jsonl"), "--references",
                                   str(tmp_path / "refs.csv"), "--output", str(tmp_path / "nodes.yaml"),
                                   "--plot", str(tmp_path / "fit.png")])
    assert out.exit_code == 0, out.output
    assert "ble-mid" in out.output and "-63." in out.output
    text = (tmp_path / "nodes.yaml").read_text()
    assert text.startswith("ble_nodes:") and "path_loss_exponent: 2.5" in text
    assert (tmp_path / "fit.png").stat().st_size > 10_000
    with pytest.raises(StoresenseError, match="needs --references"):
        run_calibrate_ble(tmp_path / "rec.jsonl")


def test_receivers_calibrate_each_other_from_a_csv(tmp_path):
    """No walk test: each receiver also advertises; what the others hear of it fits them (CSV input)."""
    from typer.testing import CliRunner

    from storesense.cli import app
    from storesense.config import example_store_path, load_store_config
    from storesense.datasets.loaders.walk_test import write_sightings_csv
    from storesense.ips.pathloss import anchors_from_config

    cfg = load_store_config(example_store_path())
    anchors = anchors_from_config(cfg)
    true = {n: (-55.0 - 2.0 * k, 1.8 + 0.2 * k) for k, n in enumerate(sorted(anchors))}  # not the config's
    peers = {n: f"node-tag-{n}" for n in anchors}
    rng = np.random.default_rng(7)
    st = {n: Stamper(n, run_id="p") for n in anchors}
    msgs = []
    for k in range(30):
        for src, tag in peers.items():
            for n, a in anchors.items():
                d = float(a.distance(np.array([anchors[src].x, anchors[src].y]), anchors[src].z))
                p0, ex = true[n]
                rssi = -30.0 if n == src else p0 - 10 * ex * np.log10(d) + rng.normal(0, 2.0)  # own adverts: ignored
                msgs.append(st[n].make(BleSighting, 100.0 + k, node=n, tag=tag, rssi=round(rssi, 1)))
    write_sightings_csv(msgs, tmp_path / "peers.csv")
    (tmp_path / "nodes.csv").write_text("node,tag\n" + "".join(f"{n},{t}\n" for n, t in peers.items()))
    out = CliRunner().invoke(app, ["calibrate", "ble", str(tmp_path / "peers.csv"), "--peers",
                                   str(tmp_path / "nodes.csv"), "--output", str(tmp_path / "nodes.yaml")])
    assert out.exit_code == 0, out.output
    assert "5 receivers heard by each other" in out.output
    import yaml

    fitted = {e["id"]: e for e in yaml.safe_load((tmp_path / "nodes.yaml").read_text())["ble_nodes"]}
    for n, (p0, ex) in true.items():
        if n == "ble-mid":  # its peers are 5.9-8.1 m away (span < 2): exponent kept, level fitted where it hears them
            assert fitted[n]["path_loss_exponent"] == anchors[n].exponent
            at7 = fitted[n]["rssi_at_1m"] - 10 * fitted[n]["path_loss_exponent"] * np.log10(7.0)
            assert at7 == pytest.approx(p0 - 10 * ex * np.log10(7.0), abs=1.0)
            continue
        assert fitted[n]["rssi_at_1m"] == pytest.approx(p0, abs=2.0), n
        assert fitted[n]["path_loss_exponent"] == pytest.approx(ex, abs=0.3), n
    (tmp_path / "bad.csv").write_text("node,tag\nble-zz,x\n")
    res = CliRunner().invoke(app, ["calibrate", "ble", str(tmp_path / "peers.csv"), "--peers", str(tmp_path / "bad.csv")])
    assert isinstance(res.exception, StoresenseError) and "ble-zz" in str(res.exception)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"Kolakowski BLE dataset not found at {DATA}")
def test_fit_on_the_kolakowski_anchors():
    from storesense.datasets.loaders.kolakowski import TAG_HEIGHT_M, KolakowskiDataset

    ds = KolakowskiDataset(DATA)
    rm = ds.radio_map()
    fits = fit_nodes(ds.anchors, rm.positions, rm.rssi, rm.nodes, tag_height=TAG_HEIGHT_M)
    assert sorted(fits) == [f"anchor-{i}" for i in range(1, 7)]
    for f in fits.values():
        assert -55.0 < f.rssi_at_1m < -38.0 and 1.4 < f.exponent < 3.5
        assert 4.0 < f.rmse_db < 9.0 and f.n_samples > 3400
    # anchor 5 (in a small room next to the kitchen) falls off fastest, anchor 1 slowest
    assert max(fits.values(), key=lambda f: f.exponent).node == "anchor-5"
    assert min(fits.values(), key=lambda f: f.exponent).node == "anchor-1"
