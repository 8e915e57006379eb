"""Seeded accuracy gate for the fusion node, on simulator seeds never used for tuning.

Like ESPresense-companion's scenario harness: a fixed set of seeded scenarios,
scored end to end, with bounds set just under what the current fusion
measures, so that a regression fails CI. Parameters are tuned on seeds below
1000; this gate runs seeds 1000-1003 of the quiet level (issue 12: the old gate
ran the tuning seeds 0-2, whose 12/12 did not carry over: 10/16 on these).
The full table for every level is `storesense eval carts --seed 1000 --seeds 4`.
"""

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.datasets.scoring.carts import _add, score_carts
from storesense.datasets.sim.simulator import simulate

UNTUNED_SEEDS = (1000, 1001, 1002, 1003)


@pytest.fixture(scope="module")
def quiet_scores():
    cfg = load_store_config(example_store_path())
    total = None
    for seed in UNTUNED_SEEDS:
        score = score_carts(cfg, simulate(cfg, "quiet", seed=seed))
        total = score if total is None else _add(total, score)
    return total


def test_quiet_receipts_and_items_on_untuned_seeds(quiet_scores):
    s = quiet_scores
    assert s.shoppers == 16
    assert s.exact >= 11, f"{s.exact}/16 receipts exactly right (measured 12/16 when this gate was set; 10/16 before appearance)"
    assert s.recall >= 0.80 and s.precision >= 0.80, (s.recall, s.precision)  # measured 0.846 / 0.846
    assert s.review_share <= 0.10, s.review_share  # measured 0.045
    assert s.unbillable == 0, s.unbillable


def test_quiet_floor_error_where_cameras_see(quiet_scores):
    assert quiet_scores.floor_error(0.5) <= 0.15


def test_per_shopper_diagnostics_add_up(quiet_scores):
    rows = quiet_scores.per_shopper
    assert len(rows) == 16 and sum(r["exact"] for r in rows) == quiet_scores.exact
    assert sum(len(r["wrong_lines"]) for r in rows) == quiet_scores.wrong_lines
    assert all(set(r["wrong_flagged"]) <= set(r["wrong_lines"]) for r in rows)


def test_session_plot_is_written(tmp_path):
    cfg = load_store_config(example_store_path())
    png = tmp_path / "carts.png"
    score = score_carts(cfg, simulate(cfg, "quiet", shoppers=2, seed=3), plot=str(png))
    assert score.shoppers == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
