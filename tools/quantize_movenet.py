"""Quantise the shipped MoveNet MultiPose ONNX model to 8 bits: ``movenet-int8``, for CPU-only camera nodes.

Static quantisation with ONNX Runtime: QDQ format, the convolutions only (the
decoding tail stays float), uint8 activations and **uint8 per-channel weights
(U8U8)**, min-max calibration on real MOT15 frames preprocessed exactly as the
camera node does (``MoveNetDetector.preprocess``: letterboxed to the input size,
BGR to RGB, int32). Run once from the repository root in the project's
virtualenv (it needs the ``onnx`` package of the test extra)::

    python tools/quantize_movenet.py --data ../shared/data/mot15 \\
        --calibrate TUD-Campus --every 2 --check TUD-Stadtmitte

(those are the defaults, so ``python tools/quantize_movenet.py`` does the same).
Frames come from each sequence's image folder (``seqinfo.ini`` ``imDir``,
``img1/``) or, failing that, the video in the sequence folder; our shared copy
of TUD-Campus is a video only. TUD-Stadtmitte, which the tests use too, is kept
out of the calibration.

Why uint8 weights: with the usual int8 weights (U8S8) ONNX Runtime's AVX2 and
AVX-512 kernels on x86 CPUs *without* VNNI multiply with VPMADDUBSW, whose
16-bit sums saturate; ONNX Runtime's quantisation guide names U8U8 ("doesn't
have saturation issues") or ``reduce_range`` (7-bit weights) as the fixes. On
such a CPU the former U8S8 file lost nearly every person; 7-bit weights cannot
overflow but cost this small model clearly more accuracy than U8U8 does.
U8U8 does not saturate on any CPU; the price is speed on x86, where ONNX
Runtime has no VNNI kernel for it. ``edge/camera/models/LICENSE-movenet.md`` has
the measurements.

After writing the model, the script compares it with the float model on every
``--every``-th frame of the ``--check`` sequences, running the int8 model two
ways: as this CPU's int8 kernels run it, and with graph optimisations off (the
QDQ graph in float arithmetic, i.e. what a CPU free of saturation computes). It
prints, for each, how many of the float model's people the int8 model finds
(box IoU >= 0.5) and how far their keypoints move, and exits 1 when the int8
model, as run here, finds fewer than ``--min-match`` of them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mot15"
MODELS = ROOT / "edge" / "camera" / "models"


def sequence_frames(data: Path, name: str, every: int):
    """Every ``every``-th BGR frame of the MOT sequence ``data/name`` (its image folder, else its video)."""
    from storesense.datasets.loaders.mot import read_sequence
    from storesense.errors import StoresenseError

    try:
        for number, frame in read_sequence(data / name).frames():
            if (number - 1) % every == 0:
                yield frame
    except StoresenseError as exc:
        raise SystemExit(f"cannot read MOT sequence {name}: {exc}") from None


def _session(path: Path, optimised: bool):
    """A CPU session; ``optimised=False`` runs QDQ as float math (no int8 kernels, so no saturation)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimised
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def compare(reference, candidate, frames: list[np.ndarray]) -> tuple[int, int, int, np.ndarray]:
    """People of ``reference`` on ``frames``, people of ``candidate``, how many of the former the latter
    finds (box IoU >= 0.5), and per matched person the median shift of keypoints both are sure of (frame px)."""
    from storesense.edge.camera.detections import box_iou

    found = [0, 0]
    matched = 0
    shifts = []
    for frame in frames:
        a, b = reference.detect(frame), candidate.detect(frame)
        found[0] += len(a)
        found[1] += len(b)
        if not len(a) or not len(b):
            continue
        iou = box_iou(a.xyxy, b.xyxy)
        for i, j in enumerate(iou.argmax(axis=1)):
            if iou[i, j] < 0.5:
                continue
            matched += 1
            ka, kb = a.keypoints[i], b.keypoints[j]
            sure = (ka[:, 2] > 0.3) & (kb[:, 2] > 0.3)
            if sure.any():
                shifts.append(float(np.median(np.hypot(*(ka[sure, :2] - kb[sure, :2]).T))))
    return found[0], found[1], matched, np.asarray(shifts)


def main(argv: list[str] | None = None) -> int:
    """Quantise, then check the int8 model against the float model on held-out frames."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of MOT15 sequence folders")
    ap.add_argument("--calibrate", nargs="+", default=["TUD-Campus"], help="sequences to calibrate on")
    ap.add_argument("--check", nargs="*", default=["TUD-Stadtmitte"], help="sequences to check the result on")
    ap.add_argument("--every", type=int, default=2, help="use every n-th frame")
    ap.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"),
                    help="model input size to calibrate at (the camera node's default)")
    ap.add_argument("--min-match", type=float, default=0.8,
                    help="fail when the int8 model finds fewer than this share of the float model's people")
    ap.add_argument("--src", type=Path, default=MODELS / "movenet-multipose.onnx")
    ap.add_argument("--out", type=Path, default=MODELS / "movenet-multipose-int8.onnx")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: MOT15 data folder not found; pass --data with the folder that holds "
                         f"the sequence folders ({', '.join(args.calibrate + args.check)})")
    if not args.src.is_file():
        raise SystemExit(f"{args.src}: float model not found")

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from storesense.config import DetectorSettings
    from storesense.edge.camera.movenet import MoveNetDetector

    settings = DetectorSettings(input_size=tuple(args.size))
    float_model = MoveNetDetector(args.src, settings, session=_session(args.src, True))
    tensors = [float_model.preprocess(frame)[0]
               for name in args.calibrate for frame in sequence_frames(args.data, name, args.every)]
    input_name = float_model.session.get_inputs()[0].name
    if not tensors:
        raise SystemExit(f"no calibration frames in {', '.join(args.calibrate)}")
    print(f"{len(tensors)} calibration frames from {', '.join(args.calibrate)} (1 in {args.every}), "
          f"input {args.size[0]}x{args.size[1]}")

    class Frames(CalibrationDataReader):
        def __init__(self):
            self._it = iter(tensors)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(args.src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(args.out), Frames(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")

    frames = [f for name in args.check for f in sequence_frames(args.data, name, args.every)]
    if not frames:
        print("no --check frames: skipped the comparison with the float model")
        return 0
    share_here = 1.0
    for label, optimised in (("int8 kernels of this CPU", True), ("QDQ in float (no saturation)", False)):
        int8 = MoveNetDetector(args.out, settings, session=_session(args.out, optimised))
        n_float, n_int8, matched, shifts = compare(float_model, int8, frames)
        share = matched / max(n_float, 1)
        kp = (f"median keypoint shift {np.median(shifts):.1f} px (95th percentile {np.percentile(shifts, 95):.1f} px)"
              if len(shifts) else "no keypoints to compare")
        print(f"{', '.join(args.check)}, {len(frames)} frames, {label}: float finds {n_float} people, int8 {n_int8}; "
              f"int8 finds {matched} ({share:.1%}) of the float model's people; {kp} in frame pixels")
        if optimised:
            share_here = share
    if share_here < args.min_match:
        print(f"FAIL: on this CPU the int8 model finds only {share_here:.1%} of the float model's people "
              f"(< {args.min_match:.0%})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
