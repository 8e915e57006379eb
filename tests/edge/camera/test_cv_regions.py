"""bench/cv_regions.py: its grid settings (with and without track looks) and the leave-one-footage-out pick."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[3] / "bench" / "cv_regions.py"


@pytest.fixture(scope="module")
def cv():
    spec = importlib.util.spec_from_file_location("cv_regions", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_setting_without_looks_turns_them_off_and_one_with_looks_sets_them(cv):
    plain = cv.parse_setting("18:0.1")
    assert (plain.motion_threshold, plain.margin, plain.track_looks) == (18.0, 0.1, 0)
    looks = cv.parse_setting("25:0:8:96")
    assert (looks.motion_threshold, looks.margin, looks.track_looks, looks.track_look_px) == (25.0, 0.0, 8, 96)
    assert looks.full_scan_frames == cv.RegionSettings().full_scan_frames
    rarer = cv.parse_setting("18:0.1:8:96:20")
    assert (rarer.track_looks, rarer.full_scan_frames) == (8, 20)
    assert plain.carry_frames == looks.carry_frames == rarer.carry_frames == 0  # as before carrying existed
    carried = cv.parse_setting("18:0.1:8:96:40:10")
    assert (carried.full_scan_frames, carried.carry_frames) == (40, 10)
    with pytest.raises(ValueError, match="carry_frames: Input should be greater than or equal to 0"):
        cv.parse_setting("18:0.1:8:96:40:-1")
    with pytest.raises(ValueError, match="TRACK_LOOKS"):
        cv.parse_setting("18:0.1:8")
    # a seventh field: frames a carried track was seen apart from the one in front; 0 without it (as before the rule)
    apart = cv.parse_setting("18:0.1:8:96:40:10:3")
    assert apart.carry_frames == 10
    assert cv.parse_min_apart("18:0.1:8:96:40:10:3") == 3 and cv.parse_min_apart("18:0.1:8:96:40:10") == 0
    with pytest.raises(ValueError, match="seventh field"):
        cv.parse_min_apart("18:0.1:8:96:40:10:-1")
    # an eighth: the narrowest box kept, width / height; 0 (every box) without it, as before the rule
    assert cv.parse_min_aspect("18:0.1:8:96:40:10:3:0.15") == 0.15 and cv.parse_min_aspect("18:0.1:8:96:40:10:3") == 0
    assert cv.parse_setting("18:0.1:8:96:40:10:3:0.15").carry_frames == 10
    with pytest.raises(ValueError, match="eighth field"):
        cv.parse_min_aspect("18:0.1:8:96:40:10:3:1.5")


def test_a_bad_grid_setting_is_one_clear_line_before_anything_runs(cv, capsys, tmp_path):
    with pytest.raises(ValueError, match="'18:x'.*numbers"):
        cv.parse_setting("18:x")
    with pytest.raises(ValueError, match="full_scan_frames: Input should be greater than or equal to 1"):
        cv.parse_setting("18:0.1:8:96:0")
    # the good first setting does not run for minutes before the bad second one is noticed
    seqs = [str(tmp_path / "TUD-Campus-x0.3"), str(tmp_path / "TUD-Stadtmitte-x0.3")]
    with pytest.raises(SystemExit):
        cv.main([*seqs, "--grid", "18:0.1", "18:0.1:8:96:0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("error: --grid '18:0.1:8:96:0': full_scan_frames: Input should be greater than or equal to 1")


def test_each_fold_picks_on_the_other_footage(cv):
    # counts: (matched gt, gt, matched detections, detections) for 40-80 px and all sizes
    def c(r40, p=1.0):
        return {"40-80": (r40, 100, int(100 * p), 100), "all": (r40, 100, int(100 * p), 100)}

    results = {"a": {"A-x0.3": c(80), "B-x0.3": c(50)},
               "b": {"A-x0.3": c(60), "B-x0.3": c(70)},
               "c": {"A-x0.3": c(90, 0.5), "B-x0.3": c(99, 0.5)}}  # best recall, under 90 % precision
    out = cv.cross_validate(results)
    assert [(f["held_out"], f["picked"]) for f in out["folds"]] == [("A", "b"), ("B", "a")]
    assert out["pooled_held_out"]["recall_40_80"] == pytest.approx((60 + 50) / 200)


def test_the_one_standard_error_rule_buys_no_false_boxes_with_recall_inside_the_noise(cv, tmp_path, capsys):
    def c(r40, p):  # (matched gt, gt, matched detections, detections) on 1,000 people
        return {"40-80": (r40, 1000, p, 1000), "all": (r40, 1000, p, 1000)}

    # on A, "hi" finds 5 people more than "lo" (one standard error at 80 % of 1,000 is 12.6) with 50 false boxes more
    results = {"hi": {"A-x0.3": c(805, 910), "B-x0.3": c(700, 900)},
               "lo": {"A-x0.3": c(800, 960), "B-x0.3": c(690, 950)},
               "far": {"A-x0.3": c(700, 990), "B-x0.3": c(600, 990)}}  # 10 points less recall: outside the noise
    best = cv.cross_validate(results)
    assert [f["picked"] for f in best["folds"]] == ["hi", "hi"]
    one_se = cv.cross_validate(results, "one-se")
    assert [f["picked"] for f in one_se["folds"]] == ["lo", "lo"]
    with pytest.raises(ValueError, match="rule"):
        cv.cross_validate(results, "median")
    # the saved counts of a run cross-validate again without running anything
    saved = tmp_path / "cv.json"
    saved.write_text(__import__("json").dumps({"settings": results}))
    assert cv.main(["--from-json", str(saved), "--rule", "one-se"]) == 0
    out = capsys.readouterr().out
    assert "hold out A: picks lo" in out and "hold out B: picks lo" in out
