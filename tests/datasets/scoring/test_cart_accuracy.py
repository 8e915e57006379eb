"""Seeded accuracy gate for the fusion node, on simulator seeds never used for tuning.

Like ESPresense-companion's scenario harness: a fixed set of seeded scenarios,
scored end to end, with bounds set just under what the current fusion
measures, so that a regression fails CI. Parameters are tuned on seeds below
1000; this gate runs seeds 1000-1003 of the quiet level and 1000-1001 of the busy
level (issue 12: the old gate ran the tuning seeds 0-2, whose 12/12 did not carry
over: 10/16 on these).
The full table for every level is `storesense eval carts --seed 1000 --seeds 4`.
"""

import pytest

from storesense.config import example_store_path, load_store_config
from storesense.datasets.scoring.carts import _add, score_carts
from storesense.datasets.sim.simulator import simulate

UNTUNED_SEEDS = (1000, 1001, 1002, 1003)


def _scores(level, seeds):
    """``level`` scored over ``seeds``, added up."""
    cfg = load_store_config(example_store_path())
    total = None
    for seed in seeds:
        score = score_carts(cfg, simulate(cfg, level, seed=seed))
        total = score if total is None else _add(total, score)
    return total


@pytest.fixture(scope="module")
def quiet_scores():
    return _scores("quiet", UNTUNED_SEEDS)


def test_quiet_receipts_and_items_on_untuned_seeds(quiet_scores):
    s = quiet_scores
    assert s.shoppers == 16
    assert s.exact >= 13, f"{s.exact}/16 receipts exactly right (measured 14/16 when this gate was last set)"
    assert s.recall >= 0.95 and s.precision >= 0.95, (s.recall, s.precision)  # measured 0.981 / 0.981
    assert s.review_share <= 0.12, s.review_share  # measured 0.089
    assert s.unbillable == 0, s.unbillable


@pytest.fixture(scope="module")
def busy_scores():
    return _scores("busy", UNTUNED_SEEDS[:2])


def test_busy_receipts_items_and_review_on_untuned_seeds(busy_scores):
    """Busy seeds 1000-1001 (24 shoppers): bounds just under what was measured when the gate was set.

    Set again when the simulator's walkers began to keep 0.4 m from each other (seventh session: the
    same seeds are other walks since): 17/24 exact, review lines 32 of 60 (28 of 62 on the old walks);
    and again when the simulated store began to stay open 40 s after the last shopper left (eighth
    session: the sensors' noise is drawn anew): 16/24 exact, review lines 31 of 59, 11 of 14 wrong lines
    flagged.
    """
    s = busy_scores
    assert s.shoppers == 24
    assert s.exact >= 14, f"{s.exact}/24 receipts exactly right (measured 16/24)"
    assert s.precision >= 0.86 and s.recall >= 0.86, (s.precision, s.recall)  # measured 0.89 / 0.89
    assert s.line_review_share <= 0.6, s.line_review_share  # measured 31/59
    assert s.wrong_lines <= 17 and s.wrong_lines_flagged >= 8, (s.wrong_lines, s.wrong_lines_flagged)  # 14, 11


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
