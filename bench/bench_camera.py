"""Benchmark: the whole camera node against Ultralytics' own predict loop, on one recorded video.

Measured side by side in one process, in alternating rounds (so both see the
same machine load), on the same first ``--frames`` frames of the video and at
the same model input size:

* **storesense camera node** - ``CameraNode.run``: OpenCV decoding, MoveNet
  MultiPose on ONNX Runtime (the shipped model), the per-camera tracker, floor
  projection, hand-shelf interactions and every message built and JSON-encoded
  (frames processed per wall-clock second; per-frame latency = ``process()``);
* **Ultralytics predict** - ``YOLO(...).predict(source=video, stream=True)`` on a
  YOLO11n-pose model built from ``yolo11n-pose.yaml`` with one class (random
  weights, the same compute as the trained model; nothing is downloaded),
  decoding the video itself (frames per wall-clock second; per-frame latency =
  Ultralytics' own preprocess + inference + postprocess timing);
* optionally (``--yolo-onnx``) the camera node running that same YOLO11n-pose
  exported to ONNX through storesense's own YOLO decoding, to separate the
  runtime from the model.

Ultralytics and torch are not storesense dependencies; use a separate virtualenv
(``.venv-bench/``, git-ignored). On this project's machines::

    python3.11 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.14.1 torchvision==0.29.1 ultralytics onnx onnxslim
    .venv-bench/bin/pip install -e .
    YOLO_OFFLINE=1 .venv-bench/bin/python bench/bench_camera.py --frames 150 --rounds 3 --yolo-onnx

``--auto 768x576 1280x720`` measures the node alone (no Ultralytics needed) at the auto detection
plan on the video resized to each size: processed fps, p50/p99 latency and peak RSS, each size in a
fresh process. With ``--ultralytics`` it also runs Ultralytics' predict, in a fresh process, on the
same frames at one input of the plan's model pixels (the effective resolution). That works with
``torch==2.13.0`` and no torchvision (PyPI's torchvision does not load beside that torch, and
Ultralytics imports it for YOLO11's NMS): without torchvision the bench builds YOLO26n-pose, which
is NMS-free::

    python3.11 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0 && .venv-bench/bin/pip install --no-deps ultralytics
    .venv-bench/bin/pip install matplotlib pillow pyyaml requests psutil polars ultralytics-thop
    .venv-bench/bin/pip install -e .
    .venv-bench/bin/python bench/bench_camera.py --auto 768x576 1280x720 --ultralytics
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach out for weights, fonts or updates

import numpy as np

from storesense.config import DetectorSettings, example_store_path, load_store_config
from storesense.contracts import encode
from storesense.edge.camera.node import CameraNode
from storesense.edge.camera.detectors import load_detector

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "mot15" / "TUD-Stadtmitte" / "TUD-Stadtmitte.mp4"


def build_yolo(input_size: tuple[int, int], family: str = "11"):
    """YOLO11n-pose (``family`` "11") or YOLO26n-pose ("26") from its YAML with one class (as the trained
    model has), random weights."""
    import yaml
    from ultralytics import YOLO
    from ultralytics.utils import ROOT as ULTRA_ROOT

    cfg = yaml.safe_load((ULTRA_ROOT / "cfg" / "models" / family / f"yolo{family}-pose.yaml").read_text())
    cfg["nc"] = 1
    folder = Path(tempfile.mkdtemp(prefix="bench-yolo-"))
    path = folder / f"yolo{family}n-pose.yaml"  # the "n" in the name picks the nano scale
    path.write_text(yaml.safe_dump(cfg))
    model = YOLO(str(path), task="pose")
    model.predict(np.zeros((*input_size, 3), np.uint8), imgsz=list(input_size), verbose=False,
                  **predict_kwargs(family))  # warm-up
    return model, folder


def predict_kwargs(family: str) -> dict:
    """YOLO26 runs its NMS-free (one-to-one) head, as it is meant to; YOLO11 Ultralytics' default NMS."""
    return {"nms": False} if family == "26" else {}


def effective_input(plan_px: int, size: tuple[int, int]) -> tuple[int, int]:
    """One model input (h, w; multiples of 32, the frame's aspect) with about ``plan_px`` pixels: the single
    pass a plan of ``plan_px`` model pixels per frame is compared with."""
    w, h = size
    s = (plan_px / (w * h)) ** 0.5
    return max(32, round(h * s / 32) * 32), max(32, round(w * s / 32) * 32)


def _ultralytics_auto_run(video: str, input_size: tuple[int, int], torch_threads: int, queue) -> None:
    """In a fresh process: Ultralytics' predict on every frame of ``video`` (decoded by OpenCV, as the node
    does) at ``input_size``. YOLO11n-pose where torchvision loads (its predictor imports it for NMS), else
    YOLO26n-pose, which is NMS-free and runs without torchvision (torch 2.13.0 has no loadable torchvision)."""
    import resource

    import cv2
    import torch

    try:
        import torchvision  # noqa: F401
        family = "11"
    except Exception:  # ImportError, or a torchvision built for another torch failing to load its ops
        family = "26"
    if torch_threads:
        torch.set_num_threads(torch_threads)
    model, folder = build_yolo(input_size, family)
    cap = cv2.VideoCapture(video)
    for _ in range(5):  # warm-up, as the node's run
        ok, frame = cap.read()
        model.predict(frame, imgsz=list(input_size), verbose=False, **predict_kwargs(family))
    latencies, start = [], time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        t0 = time.perf_counter()
        model.predict(frame, imgsz=list(input_size), verbose=False, **predict_kwargs(family))
        latencies.append((time.perf_counter() - t0) * 1000)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    queue.put({"model": f"YOLO{family}n-pose", "input": list(input_size), "frames": len(latencies),
               "fps": len(latencies) / seconds, "p50_ms": float(np.percentile(latencies, 50)),
               "p99_ms": float(np.percentile(latencies, 99)), "torch_threads": torch.get_num_threads(),
               "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


class NodeLoop:
    """The full camera node over the video, advanced one source frame at a time."""

    def __init__(self, store, video: Path, detector):
        self.bytes = 0
        self.node = CameraNode(store, "cam1", emit=self._emit, detector=detector, processing_fps=0,
                               status_interval_s=1.0)
        self.frames = iter(self.node.open(str(video)))

    def _emit(self, msg) -> None:
        self.bytes += len(encode(msg))  # every message is serialised, as publishing would

    def step(self) -> float:
        """Read, decode and process one frame; returns the processing latency in seconds."""
        return self.node.step(next(self.frames))


class UltralyticsLoop:
    """Ultralytics' own streaming predict loop over the video (it decodes the video itself)."""

    def __init__(self, model, video: Path, input_size: tuple[int, int]):
        self.results = model.predict(source=str(video), imgsz=list(input_size), stream=True, verbose=False)

    def step(self) -> float:
        """One frame through Ultralytics; returns its own preprocess + inference + postprocess seconds."""
        result = next(self.results)
        return sum(result.speed.values()) / 1000.0


def interleaved(loops: dict[str, object], frames: int) -> dict[str, dict]:
    """Advance every loop one frame in turn, ``frames`` times; wall time and latencies per loop.

    Interleaving frame by frame makes every contender see the same machine load
    (this machine is shared), so the throughput ratio stays meaningful.
    """
    wall = {name: 0.0 for name in loops}
    latencies: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(frames):
        for name, loop in loops.items():
            t0 = time.perf_counter()
            latency = loop.step()
            wall[name] += time.perf_counter() - t0
            latencies[name].append(latency * 1000)
    return {name: {"frames": frames, "seconds": wall[name], "fps": frames / wall[name],
                   "latency_ms": latencies[name]} for name in loops}


def summarise(runs: list[dict]) -> dict:
    """Median throughput over rounds and latency percentiles over all frames of all rounds."""
    lat = np.concatenate([r["latency_ms"] for r in runs])
    return {"fps": statistics.median(r["fps"] for r in runs), "fps_rounds": [round(r["fps"], 2) for r in runs],
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "frames": runs[0]["frames"]}


def _resized_video(video: Path, size: tuple[int, int], frames: int, folder: Path) -> Path:
    """The first ``frames`` frames of ``video`` resized to ``size`` (width, height), as an .avi (MJPG) in ``folder``."""
    import cv2

    out = folder / f"{video.stem}-{size[0]}x{size[1]}.avi"
    cap = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), cap.get(cv2.CAP_PROP_FPS) or 25, size)
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA if frame.shape[1] > size[0] else cv2.INTER_LINEAR))
    writer.release()
    cap.release()
    return out


def _auto_run(video: str, size: tuple[int, int], threads: int, regions: bool | None, looks: int | None,
              carry: int | None, queue) -> None:
    """In a fresh process: the whole node (uncalibrated camera of ``size``, auto plan) over ``video``;
    ``regions``: gating on/off, ``looks``: ``detector.regions.track_looks``, ``carry``:
    ``detector.regions.carry_frames`` (None: the shipped defaults)."""
    import resource

    store = load_store_config(example_store_path())
    detector = DetectorSettings(threads=threads)
    update = {k: v for k, v in (("enabled", regions), ("track_looks", looks), ("carry_frames", carry))
              if v is not None}
    if update:
        detector = detector.model_copy(update={"regions": detector.regions.model_copy(update=update)})
    cam = store.camera("cam1").model_copy(update={"resolution": size, "intrinsics": None, "mount": None,
                                                  "extrinsics": None, "homography": None, "shelf_faces": [],
                                                  "detector": detector})
    store = store.model_copy(update={"cameras": [cam]})
    plans: list[str] = []
    node = CameraNode(store, "cam1", processing_fps=0, status_interval_s=1.0, on_plan=plans.append,
                      emit=lambda msg: encode(msg))
    frames = iter(node.open(video))
    for _ in range(5):  # warm-up
        node.step(next(frames))
    latencies, start = [], time.perf_counter()
    for frame in frames:
        latencies.append(node.step(frame) * 1000)
    seconds = time.perf_counter() - start
    plan = node.detector.plan if hasattr(node.detector, "plan") else None
    queue.put({"size": list(size), "frames": len(latencies), "fps": len(latencies) / seconds,
               "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
               "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "plan": plans[-1] if plans else "",
               "plan_px": plan.cost_px if plan is not None else 0, "regions": regions, "track_looks": looks,
               "carry_frames": carry,
               "gating": dict(getattr(node.detector, "counters", {}))})


def _in_fresh_process(target, *args) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def bench_auto(video: Path, sizes: list[tuple[int, int]], frames: int, threads: int = 0, *,
               ultralytics: bool = False, torch_threads: int = 0, regions: tuple = (None,),
               looks: tuple = (None,), carry: tuple = (None,)) -> list[dict]:
    """The node at the auto detection plan (uncalibrated camera) on ``video`` resized to each size, each in
    a fresh process (so its peak RSS is its own): processed fps, p50/p99 latency, peak RSS, the plan.

    ``ultralytics``: after each node run, Ultralytics' predict on the same frames, in a fresh process, at one
    input of the plan's model pixels (:func:`effective_input`), under ``row["ultralytics"]``. ``regions``: one
    node run per entry (gating on, off, or None: the default), in turn, and per ``looks`` entry
    (``detector.regions.track_looks``, None: the default) and ``carry`` entry (``detector.regions.carry_frames``)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, gated, n, c in ((size, gated, n, c) for size in sizes for gated in regions for n in looks
                                  for c in carry):
            path = _resized_video(video, size, frames + 5, Path(tmp))
            row = _in_fresh_process(_auto_run, str(path), size, threads, gated, n, c)
            if ultralytics:
                row["ultralytics"] = _in_fresh_process(_ultralytics_auto_run, str(path),
                                                       effective_input(row["plan_px"], size), torch_threads)
                row["ratio"] = row["fps"] / row["ultralytics"]["fps"]
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the comparison (optionally write it as JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--frames", type=int, default=150, help="frames per round (from the start of the video)")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch intra-op threads for Ultralytics (0: what Ultralytics sets, cores - 1)")
    ap.add_argument("--input-size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    ap.add_argument("--yolo-onnx", action="store_true", help="also run the node on YOLO11n-pose exported to ONNX")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--auto", nargs="+", default=None, metavar="WxH",
                    help="instead: the node alone at the auto detection plan on the video resized to each size "
                         "(fps, p50/p99 latency, peak RSS); needs no Ultralytics")
    ap.add_argument("--ultralytics", action="store_true",
                    help="with --auto: also Ultralytics' predict on the same frames at one input of the plan's "
                         "model pixels (needs ultralytics + torch; runs without torchvision on YOLO26n-pose)")
    ap.add_argument("--regions", choices=("default", "on", "off", "both"), default="default",
                    help="with --auto: detector.regions gating as shipped, on, off, or both in turn")
    ap.add_argument("--track-looks", type=int, nargs="+", default=None, metavar="N",
                    help="with --auto: one run per value of detector.regions.track_looks (0: off), in turn")
    ap.add_argument("--carry-frames", type=int, nargs="+", default=None, metavar="N",
                    help="with --auto: one run per value of detector.regions.carry_frames (0: off), in turn")
    args = ap.parse_args(argv)
    if not args.video.is_file():
        print(f"{args.video}: video not found (the MOT15 TUD videos live in ../shared/data/mot15)", file=sys.stderr)
        return 2
    if args.auto:
        sizes = [tuple(int(v) for v in text.lower().split("x")) for text in args.auto]
        load_start = os.getloadavg()[0]
        regions = {"default": (None,), "on": (True,), "off": (False,), "both": (False, True)}[args.regions]
        rows = bench_auto(args.video, sizes, args.frames, args.threads, ultralytics=args.ultralytics,
                          torch_threads=args.torch_threads, regions=regions,
                          looks=tuple(args.track_looks) if args.track_looks else (None,),
                          carry=tuple(args.carry_frames) if args.carry_frames else (None,))
        print(f"video {args.video.name}, {args.frames} frames per size, {os.cpu_count()} CPUs "
              f"({platform.processor() or platform.machine()}), onnxruntime {__import__('onnxruntime').__version__}, "
              f"load average {load_start:.1f} -> {os.getloadavg()[0]:.1f}")
        for row in rows:
            gating = f", gating {row['gating']}" if row["gating"].get("full_scans") else ""
            for key in ("carry_frames", "track_looks"):
                if row[key] is not None:
                    gating = f", {key} {row[key]}{gating}"
            print(f"{row['size'][0]}x{row['size'][1]}: {row['fps']:.1f} fps, p50 {row['p50_ms']:.0f} ms, "
                  f"p99 {row['p99_ms']:.0f} ms, peak RSS {row['rss_mb']:.0f} MB{gating}\n{row['plan']}")
            if "ultralytics" in row:
                u = row["ultralytics"]
                print(f"  Ultralytics predict, {u['model']} at {u['input'][1]}x{u['input'][0]} (the plan's "
                      f"{row['plan_px']:,} model px in one pass), torch {u['torch_threads']} threads: "
                      f"{u['fps']:.1f} fps, p50 {u['p50_ms']:.0f} ms, p99 {u['p99_ms']:.0f} ms, peak RSS "
                      f"{u['rss_mb']:.0f} MB; node / Ultralytics = {row['ratio']:.2f}x")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0
    try:
        import torch
        import ultralytics
    except ImportError:
        print("this benchmark needs ultralytics + torch: see the module docstring for the bench venv",
              file=sys.stderr)
        return 2
    size = tuple(args.input_size)
    store = load_store_config(example_store_path())
    movenet = load_detector(DetectorSettings(input_size=size, threads=args.threads))
    model, folder = build_yolo(size)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    load_start = os.getloadavg()[0]
    names = {"movenet": "storesense node (MoveNet, ONNX Runtime)",
             "movenet_int8": "storesense node (MoveNet int8, ONNX Runtime)",
             "ultralytics": "Ultralytics predict (YOLO11n-pose, torch)",
             "yolo_onnx": "storesense node (YOLO11n-pose, ONNX Runtime)"}
    detectors = {"movenet": movenet,
                 "movenet_int8": load_detector(DetectorSettings(model="movenet-int8", input_size=size,
                                                                threads=args.threads))}
    if args.yolo_onnx:
        cwd = os.getcwd()
        os.chdir(folder)  # the export lands beside the model or in the working folder: keep it in the temp one
        try:
            onnx_path = Path(model.export(format="onnx", imgsz=list(size), dynamic=False, simplify=True)).resolve()
        finally:
            os.chdir(cwd)
        detectors["yolo_onnx"] = load_detector(DetectorSettings(model=str(onnx_path), input_size=size,
                                                                threads=args.threads))

    def loops() -> dict[str, object]:
        out = {names["ultralytics"]: UltralyticsLoop(model, args.video, size)}
        for key, detector in detectors.items():
            out[names[key]] = NodeLoop(store, args.video, detector)
        return out

    interleaved(loops(), 5)  # warm-up: first-run allocations, file cache
    results: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for name, run in interleaved(loops(), args.frames).items():
            results.setdefault(name, []).append(run)
    table = {name: summarise(runs) for name, runs in results.items()}
    ultra = table[names["ultralytics"]]["fps"]
    ratios = {name: row["fps"] / ultra for name, row in table.items() if name != names["ultralytics"]}
    print(f"video {args.video.name}, {args.frames} frames x {args.rounds} rounds, input {size[0]}x{size[1]}, "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), ultralytics {ultralytics.__version__}, "
          f"onnxruntime {__import__('onnxruntime').__version__}, load average {load_start:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'':48s} {'fps (median)':>12s} {'p50 ms':>8s} {'p99 ms':>8s}  fps per round")
    for name, row in table.items():
        print(f"{name:48s} {row['fps']:12.1f} {row['p50_ms']:8.1f} {row['p99_ms']:8.1f}  {row['fps_rounds']}")
    for name, ratio in ratios.items():
        print(f"ratio {name} / Ultralytics predict = {ratio:.2f}x (target >= 3x)")
    shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"table": table, "ratios": ratios, "args": {
            "video": str(args.video), "frames": args.frames, "rounds": args.rounds, "input_size": size}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
