"""MOTChallenge files (seqinfo.ini, gt/det/results) and `storesense eval mot` on a shared sequence."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from storesense.datasets.loaders.mot import (MotFormatError, detections_per_frame, load_mot_rows, read_sequence,
                                     rows_per_frame, tracks_to_rows, write_results)
from storesense.edge.camera.detections import Detections
from storesense.errors import StoresenseError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mot15"
SEQINFO = "[Sequence]\nname=tiny\nimDir=img1\nframeRate=10\nseqLength=3\nimWidth=64\nimHeight=48\nimExt=.jpg\n"


def make_sequence(folder: Path, gt: str = "", det: str = "", seqinfo: str = SEQINFO) -> Path:
    (folder / "gt").mkdir(parents=True)
    (folder / "det").mkdir()
    (folder / "seqinfo.ini").write_text(seqinfo)
    (folder / "gt" / "gt.txt").write_text(gt)
    (folder / "det" / "det.txt").write_text(det)
    return folder


def test_read_sequence_and_rows(tmp_path):
    seq = read_sequence(make_sequence(tmp_path / "tiny", gt="1,1,1,2,3,4,1,-1,-1,-1\n3,1,2,2,3,4,1,-1,-1,-1\n",
                                      det="1,-1,1,2,3,4,0.9,-1,-1,-1\n\n2 -1 5 5 2 2 0.4 -1 -1 -1\n"))
    assert (seq.name, seq.frame_rate, seq.length, seq.width, seq.height) == ("tiny", 10.0, 3, 64, 48)
    det = seq.public_detections()
    assert det.shape == (2, 10)
    per_frame = detections_per_frame(det, seq.length)
    assert [len(d) for d in per_frame] == [1, 1, 0]
    assert np.allclose(per_frame[0].xyxy, [[1, 2, 4, 6]]) and per_frame[1].scores[0] == pytest.approx(0.4)
    assert [len(r) for r in rows_per_frame(seq.ground_truth(), 3)] == [1, 0, 1]


@pytest.mark.parametrize("seqinfo,problem", [
    ("", "no readable [Sequence] section"),
    ("[Sequence]\nframeRate=10\nimWidth=1\nimHeight=1\n", "Sequence.seqLength: missing"),
    ("[Sequence]\nframeRate=ten\nseqLength=3\nimWidth=1\nimHeight=1\n", "Sequence.frameRate: expected float"),
    ("[Sequence]\nframeRate=10\nseqLength=0\nimWidth=1\nimHeight=1\n", "Sequence.seqLength: must be positive"),
])
def test_bad_seqinfo_is_named(tmp_path, seqinfo, problem):
    folder = make_sequence(tmp_path / "s", seqinfo=seqinfo)
    with pytest.raises(MotFormatError) as err:
        read_sequence(folder)
    assert "seqinfo.ini" in str(err.value) and problem in str(err.value)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(MotFormatError, match="no such directory"):
        read_sequence(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MotFormatError, match="seqinfo.ini: missing"):
        read_sequence(tmp_path / "empty")
    with pytest.raises(MotFormatError, match="gt.txt: missing"):
        load_mot_rows(tmp_path / "gt.txt")


@pytest.mark.parametrize("line,problem", [
    ("1,1,2,3\n", "4 columns, expected at least 7"),
    ("1,1,a,3,4,5,1\n", "not numbers"),
    ("9,1,2,3,4,5,1\n", "frame 9 outside 1..3"),
    ("0,1,2,3,4,5,1\n", "frame 0 outside"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,2,3,4,5,1\n" + line)
    with pytest.raises(MotFormatError) as err:
        load_mot_rows(path, min_columns=7, length=3)
    assert f"{path}:2:" in str(err.value) and problem in str(err.value)


def test_results_round_trip(tmp_path):
    a = Detections(np.array([[1.0, 2, 11, 22], [5, 5, 6, 6]]), np.array([0.9, 0.8]), track_id=[3, -1])
    b = Detections(np.array([[2.0, 3, 12, 23]]), np.array([0.7]), track_id=[3])
    rows = tracks_to_rows([(1, a), (2, b), (3, Detections.empty())])
    assert rows.shape == (2, 10) and list(rows[:, 0]) == [1, 2] and list(rows[:, 1]) == [3, 3]
    back = load_mot_rows(write_results(tmp_path / "out" / "seq.txt", rows))
    assert np.allclose(back[:, :7], rows[:, :7], atol=1e-4)
    assert np.allclose(back[0, 2:6], [1, 2, 10, 20])


@pytest.fixture
def tud_campus():
    seq = DATA / "TUD-Campus"
    if not (seq / "det" / "det.txt").is_file():
        pytest.skip(f"MOT15 data not found at {seq}")
    return seq


def run_cli(monkeypatch, capsys, *args):
    from storesense import cli

    monkeypatch.setattr(sys, "argv", ["storesense", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, "".join(captured.err.split())   # rich wraps long lines anywhere


def test_eval_mot_on_a_shared_sequence(tud_campus, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "eval", "mot", tud_campus, "--out", tmp_path / "res")
    assert code == 0, err
    assert "TUD-Campus" in out and "HOTA" in out and "MOTA" in out and "IDF1" in out and "COMBINED" in out
    summary = json.loads((tmp_path / "res" / "summary.json").read_text())
    scores = summary["sequences"]["TUD-Campus"]
    # a regression guard: the tracker scored HOTA 0.495, MOTA 0.621, IDF1 0.655 here when this was written
    assert scores["HOTA"] > 0.46 and scores["MOTA"] > 0.57 and scores["IDF1"] > 0.60, scores
    assert summary["combined"]["HOTA"] == pytest.approx(scores["HOTA"])
    # the written results score the same when read back
    from storesense.datasets.scoring import score_sequence

    seq = read_sequence(tud_campus)
    again = score_sequence(seq.ground_truth(), load_mot_rows(tmp_path / "res" / "TUD-Campus.txt"), seq.length)
    assert again.HOTA == pytest.approx(scores["HOTA"], abs=1e-3)


def test_eval_mot_reports_bad_input_in_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "eval", "mot", tmp_path / "missing")
    assert code == 2 and err.startswith("error:") and "missing" in err and "Traceback" not in err
    bad = make_sequence(tmp_path / "bad", gt="1,1,1,2,3,4,1,-1,-1,-1\n", det="1,-1,x,2,3,4,0.9\n")
    code, _, err = run_cli(monkeypatch, capsys, "eval", "mot", bad)
    assert code == 2 and "det/det.txt:1:notnumbers" in err
    code, _, err = run_cli(monkeypatch, capsys, "eval", "mot", bad, "--detector", "yolo")
    assert code == 2 and "expectedoneofpublic,model" in err


def test_model_detector_missing_is_a_clear_error(tmp_path, monkeypatch):
    from storesense.datasets.scoring.mot_eval import evaluate_sequences

    import storesense.edge.camera as camera

    monkeypatch.setitem(sys.modules, "storesense.edge.camera.detectors", None)   # as if the module were absent
    monkeypatch.delattr(camera, "detectors", raising=False)   # (an earlier import left it on the package)
    folder = make_sequence(tmp_path / "tiny", gt="1,1,1,2,3,4,1,-1,-1,-1\n", det="")
    with pytest.raises(StoresenseError, match="model detector is not available"):
        evaluate_sequences([folder], detector="model")


def test_model_detector_runs_on_the_frames(tmp_path, monkeypatch):
    """--detector model feeds every frame (here from img1/) through detector.detect."""
    import cv2

    from storesense.datasets.scoring import mot_eval

    folder = make_sequence(tmp_path / "tiny", gt="1,1,10,10,10,20,1,-1,-1,-1\n2,1,12,10,10,20,1,-1,-1,-1\n"
                                               "3,1,14,10,10,20,1,-1,-1,-1\n")
    (folder / "img1").mkdir()
    for t in (1, 2, 3):
        cv2.imwrite(str(folder / "img1" / f"{t:06d}.jpg"), np.full((48, 64, 3), 40 * t, np.uint8))

    class FakeDetector:
        """Finds the person where the frame's brightness says (the frames differ only by that)."""

        def detect(self, frame):
            time.sleep(0.01)  # the detector's time is measured: it takes at least this long
            t = int(round(frame.mean() / 40))
            return Detections(np.array([[8 + 2 * t, 10, 18 + 2 * t, 30]]), np.array([0.9]))

    monkeypatch.setattr(mot_eval, "load_model_detector", lambda model: FakeDetector())
    runs, combined = mot_eval.evaluate_sequences([folder], detector="model", make_tracker=lambda s: __import__(
        "storesense.edge.camera.tracker", fromlist=["CameraTracker"]).CameraTracker(min_hits=1))
    assert runs[0].frames == 3 and len(runs[0].rows) == 3
    assert combined.MOTA == pytest.approx(1.0) and combined.IDF1 == pytest.approx(1.0)
    # the detector's time per frame and fps are reported next to the tracker's, in the table and the JSON
    assert runs[0].detector_ms_per_frame >= 10.0
    header, row, total = mot_eval.table_rows(runs, combined)
    cols = dict(zip(header, row))
    assert header.index("detector ms/frame") == header.index("tracker fps") + 1 == header.index("tracker ms/frame") + 2
    assert float(cols["detector ms/frame"]) >= 10.0 and 0 < float(cols["detector fps"]) <= 100.0
    timing = mot_eval.summary(runs, combined, "model")["combined"]
    assert timing["detector_ms_per_frame"] >= 10.0 and timing["detector_fps"] == pytest.approx(
        1000.0 / timing["detector_ms_per_frame"]) and timing["tracker_fps"] > 0
