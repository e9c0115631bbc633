"""The shipped int8 detector at any input size: YOLOv8n rebuilt from the weights inside its ONNX file.

`yolov8n_int8.onnx` was exported at a fixed 1x3x640x640 and then dynamically quantised (uint8 weights with a
per-tensor scale and zero point, `ConvInteger` at run time). A fixed graph ignores `imgsz`: Ultralytics runs it at
640 whatever is asked, so a smaller input buys no speed. No `.pt` can be downloaded here, but the file holds every
weight: dequantised (w = (q - zero_point) * scale) they fill an Ultralytics YOLOv8n built from its YAML and fused,
key for key. The same holds for a custom-class YOLOv8n quantised the same way (`export_detector` to ONNX, then
`quantize_dynamic`): the model is built with the file's own class count (its class head's width depends on it).
From that model:

- `rebuild_float_detector()` gives the Ultralytics model (torch, float32; its weights carry the int8 rounding),
  `float_detector_pt()` writes it as a `.pt` that `dgdehaze export --detector` turns into an engine;
- `float_detector_export()` exports it to a float ONNX with dynamic height/width (what `Detector` runs for such a
  file by default on x86 CPUs, `detection.precision`); `dynamic_detector_exports()` also re-quantises that the way
  the shipped file was made (`quantize_dynamic`, uint8 weights), so the int8 detector runs at 320, 480, 640, ...

These files are cached like engines (`EngineCache`), keyed by the int8 file's hash and the Ultralytics and ONNX
Runtime versions. Re-quantising the dequantised weights reproduces the shipped uint8 weights exactly
(tests/test_detector_rebuild.py checks that). At 640 the dynamic file still sees a slightly different input than
the shipped one: Ultralytics letterboxes a dynamic model to the frame's aspect (640x480 for a 4:3 frame) and a
fixed one to the padded 640x640 square, so scores differ by a few hundredths.
"""
from __future__ import annotations

import ast
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dgdehaze_core.datasets.paths import DEFAULT_DETECTOR
from dgdehaze_core.detection.offline import offline_ultralytics
from dgdehaze_core.inference.backends.engine_cache import CacheKey, EngineCache, default_cache_dir
from dgdehaze_core.inference.export import TORCH_EXPORT_LOCK
from dgdehaze_core.io.file_digest import file_sha256
from dgdehaze_core.io.file_paths import existing_file
from dgdehaze_core.io.onnx_files import read_onnx

LOG = logging.getLogger(__name__)

ARCHITECTURE = "yolov8n.yaml"
"""The Ultralytics model definition the shipped file was exported from (its metadata says YOLOv8n); a rebuild takes
its class count from the file's class names."""
QUANTIZED_SUFFIX = "_quantized"


def dequantized_state_dict(int8_onnx: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """The float weights and the class names inside a dynamically quantised Ultralytics ONNX file. A weight the ONNX
    exporter stored once for several identical tensors (the others are `Identity` nodes of it, named as the layers'
    weights) is given under each of their names."""
    from onnx import numpy_helper

    proto = read_onnx(int8_onnx, "ONNX detector", external_data=True)
    tensors = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    tensors.update({node.output[0]: tensors[node.input[0]] for node in proto.graph.node
                    if node.op_type == "Identity" and node.input[0] in tensors})
    state: dict[str, np.ndarray] = {}
    for name, values in tensors.items():
        if name.endswith(".weight" + QUANTIZED_SUFFIX):
            base = name[: -len(QUANTIZED_SUFFIX)]
            scale, zero = tensors[base + "_scale"], tensors[base + "_zero_point"]
            if scale.size != 1 or zero.size != 1:
                raise ValueError(f"{int8_onnx}: {base} is quantised per channel; only per-tensor is supported")
            state[base] = ((values.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)
        elif name.startswith("model.") and name.endswith((".weight", ".bias")):
            state[name] = values.astype(np.float32)
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    if not state or "names" not in metadata:
        raise ValueError(f"{int8_onnx} is not a quantised Ultralytics detector (no model.* weights or class names)")
    return state, {int(k): str(v) for k, v in ast.literal_eval(metadata["names"]).items()}


def rebuild_float_detector(int8_onnx: str | os.PathLike[str] = DEFAULT_DETECTOR) -> Any:
    """An `ultralytics.YOLO` (torch, fused, eval) holding the dequantised weights of `int8_onnx`, with as many
    classes as the file names; ValueError for a file whose weights are not those of such a model."""
    import torch

    YOLO = offline_ultralytics().YOLO
    from ultralytics.nn.tasks import DetectionModel

    state, names = dequantized_state_dict(int8_onnx)
    yolo = YOLO(ARCHITECTURE, task="detect")
    model = DetectionModel(ARCHITECTURE, nc=len(names), verbose=False)  # YOLO builds the YAML's 80 classes
    model.args, model.task = yolo.model.args, yolo.model.task
    yolo.model = model
    yolo.model.fuse(verbose=False)
    own = {k: tuple(v.shape) for k, v in yolo.model.state_dict().items() if not k.endswith(("anchors", "strides"))}
    misshapen = sorted(k for k in set(own) & set(state) if state[k].shape != own[k])
    if set(state) != set(own) or misshapen:
        missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise ValueError(f"{int8_onnx} does not hold a {ARCHITECTURE} model of {len(names)} classes (missing "
                         f"{missing[:5]}, unexpected {extra[:5]}, of another shape {misshapen[:5]})")
    yolo.model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    yolo.model.names = names
    yolo.model.eval()
    return yolo


def float_detector_pt(int8_onnx: str | os.PathLike[str] = DEFAULT_DETECTOR,
                      cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The rebuilt float detector as an Ultralytics `.pt`, from the cache, for `export_detector` and for runtimes
    that take a `.pt` (TensorRT engines are built from it: TensorRT has no ConvInteger). Cached under the int8
    file's hash: Ultralytics stamps each saved `.pt` with the time, so a `.pt` saved anew would have another hash
    on every run, and every export keyed on it would be built again."""
    int8_onnx = Path(int8_onnx)
    cache, source, runtime = _cache_identity(int8_onnx, cache_dir)
    key = CacheKey(source, runtime, "any", "images:dynamic", "fp32", {"format": "ultralytics-pt"})
    path, _ = cache.get_or_build(key, _cache_name(int8_onnx, source), ".pt",
                                 lambda tmp: rebuild_float_detector(int8_onnx).save(str(tmp)), lambda path: path)
    return path


def _export_float(int8_onnx: Path, target: Path) -> None:
    yolo = rebuild_float_detector(int8_onnx)
    with tempfile.TemporaryDirectory(prefix="dgdehaze-yolo-rebuild-") as folder:
        yolo.model.pt_path = str(Path(folder) / "yolov8n.pt")  # Ultralytics writes the export beside this path
        with TORCH_EXPORT_LOCK:
            produced = yolo.export(format="onnx", imgsz=640, dynamic=True, simplify=False, device="cpu",
                                   verbose=False)
        if not produced or not Path(produced).is_file():
            raise RuntimeError(f"Ultralytics produced no ONNX file from the rebuilt {ARCHITECTURE}")
        shutil.move(str(produced), target)


def _quantize(float_onnx: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.INFO)  # the quantiser logs one INFO line per tensor on the root logger
    try:
        quantize_dynamic(str(float_onnx), str(target), weight_type=QuantType.QUInt8)
    finally:
        logging.disable(logging.NOTSET)


def _cache_identity(int8_onnx: Path, cache_dir: str | os.PathLike[str] | None) -> tuple[EngineCache[Path], str, str]:
    import onnxruntime

    existing_file(int8_onnx, "detector file")
    runtime = f"ultralytics-{offline_ultralytics().__version__}-onnxruntime-{onnxruntime.__version__}"
    return EngineCache(cache_dir or default_cache_dir()), file_sha256(int8_onnx), runtime


def float_detector_export(int8_onnx: str | os.PathLike[str] = DEFAULT_DETECTOR,
                          cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The float ONNX rebuild of `int8_onnx` with dynamic height and width, from the cache (built on a miss)."""
    int8_onnx = Path(int8_onnx)
    return _cached_float(int8_onnx, *_cache_identity(int8_onnx, cache_dir))


def _cache_name(int8_onnx: Path, source: str) -> str:
    """The rebuild's name in the cache, with its source's hash: two detector files of one name (every Ultralytics
    training writes a best.pt) keep an entry each instead of rebuilding over each other."""
    return f"{int8_onnx.stem}-{source[:12]}-rebuilt"


def _cached_float(int8_onnx: Path, cache: EngineCache[Path], source: str, runtime: str) -> Path:
    key = CacheKey(source, runtime, "any", "images:dynamic", "fp32")
    path, _ = cache.get_or_build(key, _cache_name(int8_onnx, source), ".onnx",
                                 lambda tmp: _export_float(int8_onnx, tmp), lambda path: path)
    return path


def dynamic_detector_exports(int8_onnx: str | os.PathLike[str] = DEFAULT_DETECTOR,
                             cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """{"fp32": float ONNX, "int8": re-quantised ONNX}, both with dynamic height and width, from the cache."""
    int8_onnx = Path(int8_onnx)
    cache, source, runtime = _cache_identity(int8_onnx, cache_dir)
    float_path = _cached_float(int8_onnx, cache, source, runtime)
    int8_key = CacheKey(source, runtime, "any", "images:dynamic", "int8", {"fp32_sha256": file_sha256(float_path)})
    int8_path, _ = cache.get_or_build(int8_key, _cache_name(int8_onnx, source), ".onnx",
                                      lambda tmp: _quantize(float_path, tmp), lambda path: path)
    LOG.info("dynamic detector exports of %s: %s, %s", int8_onnx.name, float_path, int8_path)
    return {"fp32": float_path, "int8": int8_path}
