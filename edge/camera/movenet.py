"""MoveNet MultiPose Lightning through ONNX Runtime (the camera node's default model).

The shipped ``edge/camera/models/movenet-multipose.onnx`` (see ``LICENSE-movenet.md``
beside it and ``tools/convert_movenet.py``) takes int32 RGB ``[1, H, W, 3]``
with H and W multiples of 32 and returns ``[1, 6, 56]``: up to six people, each
17 × (y, x, score) keypoints in COCO order, then ymin, xmin, ymax, xmax and the
person score, all normalised to the input. Frames are letterboxed to the
configured input size and results mapped back to frame pixels.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...config import DetectorSettings
from ...errors import StoresenseError
from .detections import Detections
from .detector import Detector, Letterbox, letterbox, model_path, nms, onnx_session

#: Values per person in MoveNet MultiPose's output row.
ROW = 56


def detections_from_movenet(output: np.ndarray, box: Letterbox, score_threshold: float = 0.25,
                            nms_iou: float | None = 0.5) -> Detections:
    """Turn a raw ``[1, 6, 56]`` MoveNet MultiPose output into Detections in frame pixels.

    People scored below ``score_threshold`` are dropped; overlapping duplicates
    (IoU above ``nms_iou``) are merged, keeping the best scored.
    """
    rows = np.asarray(output, dtype=np.float64).reshape(-1, ROW)
    rows = rows[rows[:, 55] >= score_threshold]
    if not len(rows):
        return Detections.empty(with_keypoints=True)
    ih, iw = box.input_size
    kp = rows[:, :51].reshape(-1, 17, 3)
    kp_xy = box.to_frame(np.stack([kp[:, :, 1] * iw, kp[:, :, 0] * ih], axis=-1))
    keypoints = np.concatenate([kp_xy, kp[:, :, 2:3]], axis=-1)
    xyxy = box.boxes_to_frame(np.c_[rows[:, 52] * iw, rows[:, 51] * ih, rows[:, 54] * iw, rows[:, 53] * ih])
    dets = Detections(xyxy, rows[:, 55], keypoints)
    if nms_iou is not None and len(dets) > 1:
        dets = dets[nms(dets.xyxy, dets.scores, nms_iou)]
    return dets


class MoveNetDetector(Detector):
    """MoveNet MultiPose on ONNX Runtime: boxes plus 17 keypoints per person, up to six people."""

    def __init__(self, path: Path | str | None = None, settings: DetectorSettings | None = None, *, session=None):
        self.settings = settings or DetectorSettings()
        self.path = Path(path) if path is not None else model_path("movenet")
        self.session = session or onnx_session(self.path, self.settings.providers, self.settings.threads)
        inp = self.session.get_inputs()[0]
        if inp.type != "tensor(int32)" or len(inp.shape) != 4 or inp.shape[3] != 3:
            raise StoresenseError(f"{self.path}: not a MoveNet MultiPose model (input {inp.shape} {inp.type})")
        self._input_name = inp.name
        fixed = [d for d in inp.shape[1:3] if isinstance(d, int)]
        self.input_size = (tuple(inp.shape[1:3]) if len(fixed) == 2  # type: ignore[assignment]
                           else tuple(self.settings.input_size))
        #: whether the model takes any input size (the shipped one does): tiles may then use their own
        self.dynamic_input = len(fixed) < 2
        self.name = f"{self.path.stem}@{self.input_size[0]}x{self.input_size[1]}"
        self.providers = self.session.get_providers()

    def preprocess(self, frame: np.ndarray, input_size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
        """Letterbox a BGR frame into the model's int32 RGB input tensor (``input_size``: default the model's)."""
        image, box = letterbox(frame, input_size or self.input_size)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return rgb.astype(np.int32)[None], box

    def detect(self, frame: np.ndarray) -> Detections:
        """People with 17 keypoints each in one BGR frame."""
        return self.detect_at(frame, self.input_size)

    def detect_at(self, frame: np.ndarray, input_size: tuple[int, int], score_threshold: float | None = None) -> Detections:
        """People in ``frame`` letterboxed to ``input_size`` (h, w; multiples of 32) instead of the default,
        scored at least ``score_threshold`` (default: the settings')."""
        if tuple(input_size) != tuple(self.input_size) and not self.dynamic_input:
            raise StoresenseError(f"{self.path}: fixed input {self.input_size}, cannot run at {tuple(input_size)}")
        tensor, box = self.preprocess(frame, tuple(input_size))
        out = self.session.run(None, {self._input_name: tensor})[0]
        threshold = self.settings.score_threshold if score_threshold is None else score_threshold
        return detections_from_movenet(out, box, threshold, self.settings.nms_iou)
