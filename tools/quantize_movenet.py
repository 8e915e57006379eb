"""Quantise the shipped MoveNet MultiPose ONNX model to int8 for CPU-only camera nodes.

Static quantisation with ONNX Runtime (QDQ format, int8 per-channel weights and
uint8 activations on every convolution; the decoding tail stays float),
calibrated on real frames letterboxed exactly as the camera node does. Run once
from the repository root in the project's virtualenv (it needs the ``onnx``
package of the test extra)::

    python tools/quantize_movenet.py --calibration ../shared/data/mot15/TUD-Campus/TUD-Campus.mp4 --every 2

It writes ``edge/models/movenet-multipose-int8.onnx`` (the built-in detector
model ``movenet-int8``) and prints, for the calibration videos' frames, how far
its output is from the float model's: how many people each finds and how far
the keypoints of people both find move. The shipped file was calibrated on
TUD-Campus only, so TUD-Stadtmitte (used by the tests too) stays unseen.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def calibration_tensors(videos: list[Path], every: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Letterboxed int32 RGB input tensors from every ``every``-th frame of ``videos``."""
    from storesense.edge.detector import letterbox

    out = []
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        if not cap.isOpened():
            raise SystemExit(f"{video}: cannot open")
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                image, _ = letterbox(frame, size)
                out.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.int32)[None])
            i += 1
        cap.release()
    if not out:
        raise SystemExit("no calibration frames")
    return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (ymin, xmin, ymax, xmax) box with each of ``boxes``."""
    y1 = np.maximum(box[0], boxes[:, 0])
    x1 = np.maximum(box[1], boxes[:, 1])
    y2 = np.minimum(box[2], boxes[:, 2])
    x2 = np.minimum(box[3], boxes[:, 3])
    inter = (y2 - y1).clip(0) * (x2 - x1).clip(0)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter + 1e-12)


def main(argv: list[str] | None = None) -> int:
    """Quantise, then compare the int8 model's people and keypoints with the float model's."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", type=Path, nargs="+", required=True, help="videos to calibrate on")
    ap.add_argument("--every", type=int, default=6, help="use every n-th frame")
    ap.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    ap.add_argument("--src", type=Path, default=ROOT / "edge" / "models" / "movenet-multipose.onnx")
    ap.add_argument("--out", type=Path, default=ROOT / "edge" / "models" / "movenet-multipose-int8.onnx")
    args = ap.parse_args(argv)

    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    tensors = calibration_tensors(args.calibration, args.every, tuple(args.size))
    print(f"{len(tensors)} calibration frames")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(tensors)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"input:0": x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(args.src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(args.out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")

    f32 = ort.InferenceSession(str(args.src), providers=["CPUExecutionProvider"])
    i8 = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    h, w = args.size
    shifts, people = [], [0, 0]
    for x in tensors:
        a = f32.run(None, {"input:0": x})[0][0]
        b = i8.run(None, {"input:0": x})[0][0]
        a, b = a[a[:, 55] >= 0.25], b[b[:, 55] >= 0.25]
        people[0] += len(a)
        people[1] += len(b)
        for row in a:  # the int8 person whose box overlaps this one most (IoU >= 0.5)
            if not len(b):
                continue
            iou = _iou(row[51:55], b[:, 51:55])
            if iou.max() < 0.5:
                continue
            ka, kb = row[:51].reshape(17, 3), b[iou.argmax(), :51].reshape(17, 3)
            sure = (ka[:, 2] > 0.3) & (kb[:, 2] > 0.3)
            if sure.any():
                shifts.append(float(np.median(np.hypot((ka[sure, 0] - kb[sure, 0]) * h,
                                                       (ka[sure, 1] - kb[sure, 1]) * w))))
    shifts = np.asarray(shifts)
    print(f"people found (score >= 0.25): float {people[0]}, int8 {people[1]}; per matched person, median "
          f"keypoint shift: median {np.median(shifts):.2f} px, 95th percentile {np.percentile(shifts, 95):.2f} px "
          f"(input {h}x{w}, {len(shifts)} people)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
