"""The detector interface of the camera node, and what its ONNX back-ends share.

A :class:`Detector` takes one BGR frame (as OpenCV reads it) and returns the
people in it as :class:`~storesense.edge.camera.detections.Detections` in that frame's
pixels. Back-ends live one per file:

* :mod:`storesense.edge.camera.movenet` - the shipped MoveNet MultiPose ONNX model (ONNX Runtime), float
  (``movenet``) or 8-bit quantised (``movenet-int8``, uint8 weights, made by ``tools/quantize_movenet.py``;
  ``models/LICENSE-movenet.md`` says why, and that on x86 CPUs without VNNI it is slower than the float one);
* :mod:`storesense.edge.camera.yolo` - Ultralytics YOLO detect/pose models, as an ``.onnx``
  from ``yolo export`` (ONNX Runtime, our own decoding and NMS) or a ``.pt``
  (through the optional ``ultralytics`` package).

No code path downloads weights: a model is the shipped file or a local path.
This module also holds what the ONNX back-ends share: letterboxing frames to
the model's input size and back, opening an ONNX Runtime session with
configurable execution providers, and non-maximum suppression. It imports no
back-end: :func:`storesense.edge.camera.detectors.load_detector` picks one.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...errors import StoresenseError
from .detections import Detections, box_iou

log = logging.getLogger(__name__)

#: Folder of the models shipped with the package.
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: Built-in model names and their files in :data:`MODELS_DIR`.
BUILTIN_MODELS = {"movenet": "movenet-multipose.onnx", "movenet-int8": "movenet-multipose-int8.onnx"}


class Detector(ABC):
    """Finds people, and their pose when the model has one, in BGR frames."""

    #: Short name of the back-end and model, for logs and node status.
    name: str = "detector"
    #: Model input (height, width) in pixels.
    input_size: tuple[int, int] = (0, 0)

    @abstractmethod
    def detect(self, frame: np.ndarray) -> Detections:
        """People in one BGR ``frame`` (H×W×3 uint8), boxes and keypoints in its pixels."""

    def close(self) -> None:
        """Release the model (sessions free themselves; override when there is more to do)."""


@dataclass(frozen=True)
class Letterbox:
    """How a frame was scaled and padded into the model input: input = frame * scale + pad."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    input_size: tuple[int, int]
    frame_size: tuple[int, int]

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Map model-input pixel coordinates (..., 2 as x, y) back to frame pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.pad_x) / self.scale_x
        out[..., 1] = (xy[..., 1] - self.pad_y) / self.scale_y
        return out

    def boxes_to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """Map N×4 input-pixel boxes back to the frame, clipped to its borders."""
        b = self.to_frame(np.asarray(xyxy, dtype=np.float64).reshape(-1, 2, 2)).reshape(-1, 4)
        h, w = self.frame_size
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
        return b


def letterbox(frame: np.ndarray, input_size: tuple[int, int], pad_value: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resize ``frame`` keeping its aspect ratio into ``input_size`` (h, w), padding the rest evenly."""
    if frame is None or frame.ndim != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"expected an H×W×3 image, got {None if frame is None else frame.shape}")
    fh, fw = frame.shape[:2]
    ih, iw = input_size
    scale = min(ih / fh, iw / fw)
    nh, nw = max(1, round(fh * scale)), max(1, round(fw * scale))
    pad_y, pad_x = (ih - nh) // 2, (iw - nw) // 2
    if (nh, nw) != (fh, fw):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (nw, nh), interpolation=interp)
    if (nh, nw) != (ih, iw):
        frame = cv2.copyMakeBorder(frame, pad_y, ih - nh - pad_y, pad_x, iw - nw - pad_x,
                                   cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return frame, Letterbox(nw / fw, nh / fh, float(pad_x), float(pad_y), (ih, iw), (fh, fw))


def nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        order = rest[box_iou(xyxy[i], xyxy[rest])[0] <= iou]
    return np.asarray(keep, dtype=np.int64)


def resolve_providers(wanted: list[str] | tuple[str, ...]) -> list[str]:
    """The wanted ONNX Runtime providers this machine has, in order (CPU appended as the last resort)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available]
    for p in wanted:
        if p not in available:
            log.warning("ONNX Runtime execution provider %s is not available here (have: %s); skipping it",
                        p, ", ".join(sorted(available)))
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def onnx_session(path: Path, providers: list[str] | tuple[str, ...] = ("CPUExecutionProvider",), threads: int = 0):
    """An ONNX Runtime session for ``path``; a missing or broken file raises StoresenseError naming it."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise StoresenseError(f"{path}: model file not found")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    # no busy-waiting between runs: a camera node shares its cores with decoding, tracking and other nodes,
    # and ONNX Runtime's spinning worker threads would take CPU time from them after every frame
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=resolve_providers(list(providers)))
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoresenseError(f"{path}: cannot load ONNX model: {first}") from None


def model_path(model: str, base_dir: Path | None = None) -> Path:
    """The file of ``model``: a built-in name (see :data:`BUILTIN_MODELS`) or a path (relative to ``base_dir``)."""
    if model in BUILTIN_MODELS:
        return MODELS_DIR / BUILTIN_MODELS[model]
    path = Path(model).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path

