"""Ultralytics YOLO detect / pose models behind the camera node's detector interface.

Two ways to run one, neither of which downloads anything:

* :class:`YoloOnnxDetector` - an ``.onnx`` written by ``yolo export format=onnx``,
  run by ONNX Runtime with our own decoding and NMS (no ultralytics, no torch);
* :class:`UltralyticsDetector` - a ``.pt`` through the ``ultralytics`` package
  (the optional ``storesense[ultralytics]`` extra); a clear error when it is absent.

Output layouts understood (``C`` values per candidate, ``N`` candidates):

* raw heads ``[1, C, N]`` (YOLOv8 / YOLO11): ``cx, cy, w, h``, one score per class,
  then for pose models ``K × (x, y, visibility)``; e.g. ``[1, 84, N]`` for an
  80-class detector, ``[1, 56, N]`` for a 17-keypoint person pose model;
* end-to-end heads ``[1, N, C]`` (YOLO26, YOLOv10, ``nms=True`` exports):
  ``x1, y1, x2, y2, score, class`` then the keypoints.

Only people are kept (the class named ``person`` in the model's metadata, else class 0).
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ...config import DetectorSettings
from ...errors import StoresenseError
from .detections import Detections
from .detector import Detector, Letterbox, letterbox, nms, onnx_session


@dataclass(frozen=True)
class YoloLayout:
    """How to read a YOLO output tensor: end-to-end or raw, class count, keypoints, person class."""

    end_to_end: bool
    num_classes: int
    kpt_shape: tuple[int, int] | None
    person_class: int = 0


def layout_from_metadata(output_shape: list, metadata: dict[str, str]) -> YoloLayout:
    """Work out the output layout from its shape and the metadata ``yolo export`` writes (if any)."""
    if len(output_shape) != 3:
        raise StoresenseError(f"YOLO output must have 3 dimensions, got shape {output_shape}")
    names = _literal(metadata.get("names"))
    kpt = _literal(metadata.get("kpt_shape"))
    task = metadata.get("task")
    kpt_shape = tuple(int(k) for k in kpt) if kpt else None
    num_classes = len(names) if isinstance(names, dict) and names else None
    person = 0
    if isinstance(names, dict):
        person = next((int(k) for k, v in names.items() if str(v).lower() == "person"), 0)
    d1, d2 = output_shape[1], output_shape[2]
    if "end2end" in metadata:  # written by recent `yolo export`
        end_to_end = str(metadata["end2end"]).lower() == "true"
    else:  # raw heads have few channels and many candidates; end-to-end ones the reverse
        end_to_end = isinstance(d2, int) and (not isinstance(d1, int) or d1 > d2)
    channels = d2 if end_to_end else d1
    if not isinstance(channels, int):
        raise StoresenseError(f"cannot tell the YOLO output layout from shape {output_shape}")
    if end_to_end:
        extra = channels - 6
        if kpt_shape is None and extra:
            kpt_shape = (extra // 3, 3) if extra % 3 == 0 else (extra // 2, 2)
        return YoloLayout(True, num_classes or 1, kpt_shape if extra else None, person)
    if num_classes is None:
        if task == "pose" or (kpt_shape is None and channels == 56):
            num_classes = 1
            kpt_shape = kpt_shape or (17, 3)
        else:
            num_classes = channels - 4 - (kpt_shape[0] * kpt_shape[1] if kpt_shape else 0)
    extra = channels - 4 - num_classes
    if num_classes < 1 or extra < 0 or (kpt_shape and extra != kpt_shape[0] * kpt_shape[1]):
        raise StoresenseError(f"YOLO output shape {output_shape} does not fit {num_classes} classes "
                              f"and keypoints {kpt_shape}")
    return YoloLayout(False, num_classes, kpt_shape if extra else None, person)


def _literal(text: str | None):
    if not text:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def detections_from_yolo(output: np.ndarray, layout: YoloLayout, box: Letterbox, score_threshold: float = 0.25,
                         nms_iou: float = 0.5) -> Detections:
    """Decode one image's YOLO output into people in frame pixels (score filter, person class, NMS)."""
    out = np.asarray(output, dtype=np.float32)
    out = out[0] if out.ndim == 3 else out
    kpt = layout.kpt_shape
    if layout.end_to_end:
        rows = out[(out[:, 4] >= score_threshold) & (np.round(out[:, 5]) == layout.person_class)]
        xyxy, scores = rows[:, :4].astype(np.float64), rows[:, 4].astype(np.float64)
        kp_raw = rows[:, 6:] if kpt else None
    else:
        rows = out.T  # N × C
        cls = rows[:, 4:4 + layout.num_classes]
        scores = cls[:, layout.person_class]
        keep = scores >= score_threshold
        if layout.num_classes > 1:
            keep &= cls.argmax(axis=1) == layout.person_class
        rows, scores = rows[keep], scores[keep].astype(np.float64)
        c = rows[:, :4].astype(np.float64)
        xyxy = np.c_[c[:, 0] - c[:, 2] / 2, c[:, 1] - c[:, 3] / 2, c[:, 0] + c[:, 2] / 2, c[:, 1] + c[:, 3] / 2]
        kp_raw = rows[:, 4 + layout.num_classes:] if kpt else None
        if len(xyxy):
            order = nms(xyxy, scores, nms_iou)
            xyxy, scores = xyxy[order], scores[order]
            kp_raw = kp_raw[order] if kp_raw is not None else None
    keypoints = None
    if kpt:
        k = np.asarray(kp_raw, dtype=np.float64).reshape(len(xyxy), kpt[0], kpt[1])
        xy = box.to_frame(k[:, :, :2])
        vis = k[:, :, 2:3] if kpt[1] >= 3 else np.ones((len(xyxy), kpt[0], 1))
        keypoints = np.concatenate([xy, vis.clip(0, 1)], axis=-1)
    return Detections(box.boxes_to_frame(xyxy), scores.clip(0, 1), keypoints)


class YoloOnnxDetector(Detector):
    """A YOLO detect or pose model exported to ONNX, run by ONNX Runtime with numpy decoding and NMS."""

    def __init__(self, path: Path | str, settings: DetectorSettings | None = None, *, session=None):
        self.settings = settings or DetectorSettings()
        self.path = Path(path)
        self.session = session or onnx_session(self.path, self.settings.providers, self.settings.threads)
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[1] != 3 or "float" not in inp.type:
            raise StoresenseError(f"{self.path}: not a YOLO model (input {inp.shape} {inp.type}; "
                                  "expected float [1, 3, H, W])")
        self._input_name = inp.name
        self._float16 = inp.type == "tensor(float16)"
        hw = inp.shape[2:4]
        self.input_size = (tuple(hw) if all(isinstance(d, int) for d in hw)  # type: ignore[assignment]
                           else tuple(self.settings.input_size))
        meta = self.session.get_modelmeta().custom_metadata_map
        self.layout = layout_from_metadata(self.session.get_outputs()[0].shape, meta)
        kind = "pose" if self.layout.kpt_shape else "detect"
        self.name = f"yolo-{kind}-onnx:{self.path.stem}@{self.input_size[0]}x{self.input_size[1]}"
        self.providers = self.session.get_providers()

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Letterbox (grey padding, as Ultralytics does) into a float [1, 3, H, W] RGB tensor in 0..1."""
        image, box = letterbox(frame, self.input_size, pad_value=114)
        blob = cv2.dnn.blobFromImage(image, 1 / 255.0, swapRB=True)
        return (blob.astype(np.float16) if self._float16 else blob), box

    def detect(self, frame: np.ndarray) -> Detections:
        """People (with keypoints for pose models) in one BGR frame."""
        tensor, box = self.preprocess(frame)
        out = self.session.run(None, {self._input_name: tensor})[0]
        return detections_from_yolo(out, self.layout, box, self.settings.score_threshold, self.settings.nms_iou)


class UltralyticsDetector(Detector):
    """A YOLO ``.pt`` model run by Ultralytics itself (needs the optional ``ultralytics`` extra)."""

    def __init__(self, path: Path | str, settings: DetectorSettings | None = None):
        self.settings = settings or DetectorSettings()
        self.path = Path(path)
        if not self.path.is_file():
            raise StoresenseError(f"{self.path}: model file not found")  # never let Ultralytics download it
        os.environ.setdefault("YOLO_OFFLINE", "1")
        try:
            from ultralytics import YOLO
        except ImportError:
            raise StoresenseError(f"{self.path}: running a .pt model needs Ultralytics, which is not installed; "
                                  "install the extra (pip install 'storesense[ultralytics]') or export the "
                                  "model to ONNX (yolo export format=onnx) and use the .onnx") from None
        try:  # Ultralytics' predictor imports torchvision, whose build must match torch's
            import torchvision  # noqa: F401
        except Exception as exc:  # a mismatched build raises RuntimeError, not ImportError
            raise StoresenseError(f"{self.path}: Ultralytics is installed but torchvision does not load beside this "
                                  f"torch ({str(exc).strip().splitlines()[-1]}); install matching builds, e.g. "
                                  "pip install torch==2.14.1 torchvision==0.29.1") from None
        try:
            self.model = YOLO(str(self.path))
        except Exception as exc:  # Ultralytics raises many types for bad checkpoints
            raise StoresenseError(f"{self.path}: cannot load YOLO model: {exc}") from None
        names = getattr(self.model, "names", {}) or {}
        self.person_class = next((int(k) for k, v in names.items() if str(v).lower() == "person"), 0)
        self.input_size = tuple(self.settings.input_size)  # type: ignore[assignment]
        self.name = f"yolo-ultralytics:{self.path.stem}@{self.input_size[0]}x{self.input_size[1]}"

    def detect(self, frame: np.ndarray) -> Detections:
        """People (with keypoints for pose models) in one BGR frame, via ``YOLO.predict``."""
        result = self.model.predict(frame, imgsz=list(self.input_size), conf=self.settings.score_threshold,
                                    iou=self.settings.nms_iou, classes=[self.person_class], verbose=False)[0]
        boxes = result.boxes
        xyxy = boxes.xyxy.cpu().numpy() if len(boxes) else np.zeros((0, 4))
        scores = boxes.conf.cpu().numpy() if len(boxes) else np.zeros(0)
        keypoints = None
        if getattr(result, "keypoints", None) is not None:
            data = result.keypoints.data.cpu().numpy()
            keypoints = data if data.shape[-1] == 3 else np.concatenate([data, np.ones(data.shape[:-1] + (1,))], -1)
        return Detections(xyxy, scores, keypoints)
