"""Accuracy on the real Kolakowski 2021 BLE data: a fast subset check and the full (slow) evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ble" / "kolakowski2021"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"Kolakowski BLE dataset not found at {DATA}")


@pytest.fixture(scope="module")
def ds():
    from storesense.datasets.loaders.kolakowski import KolakowskiDataset

    return KolakowskiDataset(DATA)


def test_loader_reads_every_part(ds):
    assert list(ds.anchors) == [f"anchor-{i}" for i in range(1, 7)]
    assert ds.anchors["anchor-2"].xyz.tolist() == [0.79, 6.75, 2.62]
    assert len(ds.layout) == 37 and ds.layout[0] == (0.0, 0.0)
    cal = ds.calibration
    assert len(cal) == 4104 and cal.rssi.shape == (4104, 6) and np.isnan(cal.rssi).any()
    assert [len(r) for r in ds.calibration_runs()] == [1707, 1371, 490, 536]
    robot = ds.robot_track()
    assert len(robot) == 719 and robot.truth.shape == (719, 2)
    assert 350 < robot.ts[-1] - robot.ts[0] < 355  # seconds, from nanoseconds
    assert len(ds.walk_track()) == 876 and ds.walk_track().truth is None
    assert len(ds.walk_reference()) == 9
    grid = ds.floor_grid()
    from storesense.geometry.walkable import Walkable

    w = Walkable(grid)
    assert w.free_at(cal.truth).mean() > 0.99  # the robot's positions are on the floor plan
    assert not w.free_at(np.array([[2.64, 5.0]]))[0]  # inside the wall between bedroom and living room


def test_bad_dataset_folder_is_one_clear_error(tmp_path):
    from storesense.datasets.loaders.kolakowski import KolakowskiDataset
    from storesense.errors import StoresenseError

    with pytest.raises(StoresenseError, match="not a Kolakowski BLE dataset folder"):
        KolakowskiDataset(tmp_path)
    (tmp_path / "calibration").mkdir()
    (tmp_path / "anchors.csv").write_text("id,x,y\n1,0,0\n")
    (tmp_path / "layout.csv").write_text("x,y\n0,0\n1,0\n1,1\n")
    (tmp_path / "calibration" / "calibration_df.csv").write_text(",ts,x,heading,y\n")
    with pytest.raises(StoresenseError, match=r"anchors.csv: missing column\(s\) z"):
        KolakowskiDataset(tmp_path).anchors


def test_subset_evaluation_keeps_its_accuracy(ds, tmp_path):
    """A regression guard on 240 samples of the hall and living-room part of the robot track."""
    from storesense.datasets.scoring.ips import evaluate_track, setup_from_dataset

    setup = setup_from_dataset(ds)
    track = ds.robot_track().subset(slice(280, 520))
    scores = evaluate_track(setup, track, ("fingerprint", "kalman", "particle", "fused"))
    med = {m: s.summary()["median"] for m, s in scores.items()}
    p90 = {m: s.summary()["p90"] for m, s in scores.items()}
    assert all(s.coverage == 1.0 for s in scores.values())
    assert med["fingerprint"] < 1.3 and med["kalman"] < 1.1 and med["particle"] < 1.1
    assert p90["kalman"] < 2.2 and p90["particle"] < 2.2
    assert med["kalman"] < med["fingerprint"] and med["particle"] < med["fingerprint"]  # tracking helps
    assert med["fused"] < 1.1 and p90["fused"] < 2.2  # the Kalman fusion with the particle filter as a source
    for m in ("kalman", "particle", "fused"):  # tracked positions stay on the floor and never step through a wall
        est = np.array([[f.x, f.y] for f in scores[m].fixes])
        assert setup.walkable.free_at(est).all()
        assert setup.walkable.segments_free(est[:-1], est[1:]).all()


def test_eval_ips_cli_writes_table_and_figures(tmp_path):
    from typer.testing import CliRunner

    from storesense.cli import app

    res = CliRunner().invoke(app, ["eval", "ips", str(DATA), "--out", str(tmp_path), "--limit", "60"])
    assert res.exit_code == 0, res.output
    for label in ("trilateration", "fingerprinting", "Kalman", "particle", "walking test"):
        assert label in res.output
    for name in ("ips_error_cdf.png", "ips_tracks.png", "ips_walk.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    import json

    rows = json.loads((tmp_path / "ips_results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["trilateration", "fingerprint", "kalman", "particle", "fused"]


@pytest.mark.slow
def test_full_robot_track_evaluation(ds, tmp_path):
    """The whole robot track with every method (about a minute). Figures are in docs/ips.md."""
    from storesense.datasets.scoring.ips_report import evaluate_kolakowski

    report = evaluate_kolakowski(DATA, tmp_path, walk=False)
    s = {r["method"]: r for r in report.rows()}
    assert s["fingerprint"]["median"] == pytest.approx(1.09, abs=0.05)  # the single-shot kNN figure
    assert s["trilateration"]["median"] < 1.8
    # measured (docs/ips.md): Kalman 0.99 / 2.07 m, particle filter 1.09 / 2.91 m (median / p90)
    assert s["kalman"]["median"] < 1.05 and s["kalman"]["p90"] < 2.2
    assert s["particle"]["median"] < 1.2 and s["particle"]["p90"] < 3.1
    assert s["kalman"]["median"] < s["fingerprint"]["median"]
    from storesense.geometry.walkable import Walkable

    walkable = Walkable(ds.floor_grid())
    for m in ("kalman", "particle"):
        est = np.array([[f.x, f.y] for f in report.scores[m].fixes])
        assert walkable.free_at(est).all() and walkable.segments_free(est[:-1], est[1:]).all()
