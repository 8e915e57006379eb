"""YOLO back-end: our decoding + NMS of `yolo export` ONNX layouts, on tiny hand-built ONNX graphs.

Each graph takes the usual float ``[1, 3, H, W]`` image and returns a fixed
tensor in a YOLO output layout (``image * 0`` is added so the output depends on
the input), so decoding is checked against known boxes without any weights.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from storesense.config import DetectorSettings
from storesense.edge.camera.detectors import load_detector
from storesense.edge.camera.yolo import UltralyticsDetector, YoloOnnxDetector, layout_from_metadata
from storesense.errors import StoresenseError

onnx = pytest.importorskip("onnx", reason="onnx (test extra) builds the tiny YOLO graphs")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

INPUT = (256, 320)  # model input h, w; a 640x480 frame maps in at scale 0.5 with 8 px bands top and bottom


def _yolo_onnx(path, output: np.ndarray, metadata: dict[str, str] | None = None) -> None:
    """Write an ONNX graph: images [1,3,256,320] -> output (constant + 0 * mean(images))."""
    const = numpy_helper.from_array(output.astype(np.float32), "const")
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *INPUT])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        initializer=[const, numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))


def _to_input(x, y):
    """Frame pixel -> model input pixel for a 640x480 frame in a 256x320 input."""
    return x * 0.5, y * 0.5 + 8


def _pose_candidates(n=200):
    """[1, 56, n]: two people (one duplicated with a lower score for NMS) and noise below threshold."""
    out = np.zeros((1, 56, n), np.float32)
    rng = np.random.default_rng(0)
    out[0, 0:4] = rng.uniform(10, 200, (4, n))
    out[0, 4] = rng.uniform(0, 0.1, n)  # background candidates
    people = [((100, 100, 200, 400), 0.9, 0), ((400, 50, 500, 300), 0.8, 1), ((104, 98, 204, 398), 0.6, 2)]
    for (x1, y1, x2, y2), score, col in people:
        ix1, iy1 = _to_input(x1, y1)
        ix2, iy2 = _to_input(x2, y2)
        out[0, 0:4, col] = [(ix1 + ix2) / 2, (iy1 + iy2) / 2, ix2 - ix1, iy2 - iy1]
        out[0, 4, col] = score
        kx, ky = _to_input(np.linspace(x1, x2, 17), np.linspace(y1, y2, 17))
        out[0, 5::3, col], out[0, 6::3, col], out[0, 7::3, col] = kx, ky, 0.7
    return out


FRAME = np.zeros((480, 640, 3), np.uint8)


def test_pose_onnx_is_decoded_with_nms_and_mapped_to_frame_pixels(tmp_path):
    path = tmp_path / "pose.onnx"
    _yolo_onnx(path, _pose_candidates(), {"task": "pose", "kpt_shape": "[17, 3]", "names": "{0: 'person'}"})
    det = load_detector(DetectorSettings(model=str(path), score_threshold=0.25, nms_iou=0.5))
    assert isinstance(det, YoloOnnxDetector) and det.input_size == INPUT and det.layout.kpt_shape == (17, 3)
    dets = det.detect(FRAME)
    assert len(dets) == 2  # the 0.6 duplicate is suppressed, noise is under threshold
    np.testing.assert_allclose(dets.xyxy, [[100, 100, 200, 400], [400, 50, 500, 300]], atol=1e-3)
    np.testing.assert_allclose(dets.scores, [0.9, 0.8], atol=1e-6)
    np.testing.assert_allclose(dets.keypoints[0, :, 0], np.linspace(100, 200, 17), atol=1e-3)
    np.testing.assert_allclose(dets.keypoints[1, :, 1], np.linspace(50, 300, 17), atol=1e-3)
    assert (dets.keypoints[:, :, 2] == pytest.approx(0.7))


def test_pose_layout_is_recognised_without_metadata(tmp_path):
    path = tmp_path / "pose_nometa.onnx"
    _yolo_onnx(path, _pose_candidates())
    det = load_detector(str(path))
    assert det.layout.num_classes == 1 and det.layout.kpt_shape == (17, 3)
    assert len(det.detect(FRAME)) == 2


def test_detect_onnx_keeps_only_people(tmp_path):
    n = 300
    out = np.zeros((1, 84, n), np.float32)
    out[0, 0:4] = 50
    x1, y1 = _to_input(10, 20)
    x2, y2 = _to_input(110, 220)
    out[0, 0:4, 0] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
    out[0, 4, 0] = 0.85  # class 0: person
    out[0, 0:4, 1] = out[0, 0:4, 0] + [150, 0, 0, 0]
    out[0, 4 + 2, 1] = 0.95  # a car: not kept
    out[0, 4, 1] = 0.3  # ... even though its person score passes, the car wins
    path = tmp_path / "detect.onnx"
    names = "{" + ", ".join(f"{i}: '{'person' if i == 0 else f'c{i}'}'" for i in range(80)) + "}"
    _yolo_onnx(path, out, {"task": "detect", "names": names})
    dets = load_detector(str(path)).detect(FRAME)
    assert len(dets) == 1 and dets.keypoints is None
    np.testing.assert_allclose(dets.xyxy[0], [10, 20, 110, 220], atol=1e-3)


def test_end_to_end_pose_layout(tmp_path):
    out = np.zeros((1, 300, 57), np.float32)
    x1, y1 = _to_input(30, 40)
    x2, y2 = _to_input(130, 340)
    out[0, 0, :6] = [x1, y1, x2, y2, 0.77, 0]
    out[0, 0, 6::3], out[0, 0, 7::3], out[0, 0, 8::3] = x1, y1, 0.5
    out[0, 1, :6] = [x1, y1, x2, y2, 0.1, 0]  # below threshold
    path = tmp_path / "e2e.onnx"
    _yolo_onnx(path, out, {"task": "pose", "kpt_shape": "[17, 3]", "end2end": "True", "names": "{0: 'person'}"})
    dets = load_detector(str(path)).detect(FRAME)
    assert len(dets) == 1
    np.testing.assert_allclose(dets.xyxy[0], [30, 40, 130, 340], atol=1e-3)
    np.testing.assert_allclose(dets.keypoints[0, :, :2], np.tile([30, 40], (17, 1)), atol=1e-3)


def test_layout_errors_are_clear():
    with pytest.raises(StoresenseError, match="does not fit"):
        layout_from_metadata([1, 60, 8400], {"names": "{0: 'person'}", "kpt_shape": "[17, 3]"})
    with pytest.raises(StoresenseError, match="3 dimensions"):
        layout_from_metadata([1, 8400], {})


def test_pt_model_without_ultralytics_gives_a_clear_error(tmp_path):
    if importlib.util.find_spec("ultralytics") is not None:
        pytest.skip("ultralytics is installed here; the error path needs it absent")
    weights = tmp_path / "yolo11n-pose.pt"
    weights.write_bytes(b"not really weights")
    with pytest.raises(StoresenseError, match="needs Ultralytics, which is not installed"):
        load_detector(str(weights))
    with pytest.raises(StoresenseError, match="model file not found"):
        UltralyticsDetector(tmp_path / "absent.pt")  # never handed to Ultralytics, which would download it
