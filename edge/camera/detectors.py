"""``load_detector``: the camera node's detector back-end for a model name or file.

The one place that knows every back-end: :mod:`~storesense.edge.camera.detector`
holds the interface and what the ONNX back-ends share, and imports none of
them; :mod:`~storesense.edge.camera.movenet` and :mod:`~storesense.edge.camera.yolo`
build on it; this module picks between them.
"""

from __future__ import annotations

from pathlib import Path

from ...config import DetectorSettings
from ...errors import StoresenseError
from .detector import BUILTIN_MODELS, Detector, model_path, onnx_session
from .movenet import MoveNetDetector
from .yolo import UltralyticsDetector, YoloOnnxDetector


def load_detector(spec: DetectorSettings | str | None = None, *, base_dir: Path | None = None) -> Detector:
    """Build the detector ``spec`` describes (settings, or just a model name/path with default settings).

    ``movenet`` (or an ``.onnx`` whose output is MoveNet's ``[1, 6, 56]``) gives a
    :class:`~storesense.edge.camera.movenet.MoveNetDetector`; any other ``.onnx`` a
    :class:`~storesense.edge.camera.yolo.YoloOnnxDetector`; a ``.pt`` a
    :class:`~storesense.edge.camera.yolo.UltralyticsDetector`. A missing file, an
    unknown extension or a model of the wrong shape raises StoresenseError.
    """
    if spec is None:
        spec = DetectorSettings()
    elif isinstance(spec, (str, Path)):
        spec = DetectorSettings(model=str(spec))
    path = model_path(spec.model, base_dir)
    if not path.is_file():
        raise StoresenseError(f"{path}: model file not found (detector.model {spec.model!r}; "
                              f"built-in models: {', '.join(BUILTIN_MODELS)})")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        session = onnx_session(path, spec.providers, spec.threads)
        shape = session.get_outputs()[0].shape
        if len(shape) == 3 and shape[1:] == [6, 56]:
            return MoveNetDetector(path, spec, session=session)
        return YoloOnnxDetector(path, spec, session=session)
    if suffix == ".pt":
        return UltralyticsDetector(path, spec)
    raise StoresenseError(f"{path}: unsupported model type {suffix or '(no extension)'!r}; "
                          "expected 'movenet', an .onnx or a .pt file")
