"""Which file the detector runs: the weights as given, or the float rebuild of a dynamically quantised ONNX file.

A dynamically quantised ONNX detector (the shipped `yolov8n_int8.onnx`: `DynamicQuantizeLinear` and `ConvInteger`
nodes) quantises every convolution's input at run time, and its fixed 640x640 input makes Ultralytics letterbox
every frame to the full square. Its float rebuild (`detection.rebuild`: the same int8-rounded weights in float,
dynamic height and width) runs faster on x86 CPUs with ONNX Runtime, sees a 4:3 frame at 640x480 instead of
640x640, and takes `imgsz` (docs/BENCHMARKS.md measures both side by side). The precision setting:
- "auto": the float rebuild for a dynamically quantised ONNX file on an x86 CPU or on a GPU (ONNX Runtime's CUDA
  provider has no ConvInteger kernel, microsoft/onnxruntime#5127, so those nodes would fall back to the CPU), the
  file as given otherwise (ARM CPUs have int8 dot-product kernels; not measured here);
- "file": the weights as given;
- "float": the float rebuild; refused for a file that is not a dynamically quantised Ultralytics ONNX detector.
The rebuild is cached like an engine (a few seconds once per file, runtime version and cache folder).
"""
from __future__ import annotations

import logging
import platform
from pathlib import Path

from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.io.onnx_files import read_onnx

LOG = logging.getLogger(__name__)

PRECISIONS = ("auto", "file", "float")
DYNAMIC_QUANTIZATION_OPS = frozenset({"DynamicQuantizeLinear", "ConvInteger"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})


def check_precision(precision: str) -> str:
    """`precision` when it is one of PRECISIONS, else ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"detector precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def is_dynamically_quantized(weights: Path) -> bool:
    """Whether `weights` is an ONNX graph quantised at run time (any DynamicQuantizeLinear/ConvInteger node)."""
    if file_suffix(weights) != ".onnx":
        return False
    graph = read_onnx(weights, "ONNX detector").graph
    return any(node.op_type in DYNAMIC_QUANTIZATION_OPS for node in graph.node)


def runs_float_rebuild(weights: Path, precision: str, device: str) -> bool:
    """Whether a detector of `weights` at `precision` on `device` runs the float rebuild (module docstring);
    ValueError for an unknown precision or "float" of a file that has no rebuild."""
    if check_precision(precision) == "file":
        return False
    quantized = is_dynamically_quantized(weights)
    if precision == "float":
        if not quantized:
            raise ValueError(f"detector precision 'float' rebuilds a dynamically quantised ONNX detector; {weights} "
                             "is not one (its weights already run as they are)")
        return True
    on_cpu = str(device).lower() == "cpu"
    return quantized and (not on_cpu or platform.machine().lower() in X86_MACHINES)


def runtime_weights(weights: Path, precision: str, device: str, cache_dir: str | Path | None = None) -> Path:
    """The file to load for `weights` at `precision` on `device`: `weights` itself or its cached float rebuild.
    Under "auto" a rebuild that cannot be made (a read-only cache folder, a full disk) leaves the file as given,
    with a warning: slower, but detecting; under "float" it raises."""
    if not runs_float_rebuild(weights, precision, device):
        return weights
    from dgdehaze_core.detection.rebuild import float_detector_export

    try:
        path = float_detector_export(weights, cache_dir)
    except Exception as exc:  # the cache, Ultralytics' exporter and ONNX raise many types
        if precision == "float":
            raise
        LOG.warning("detector %s: its float rebuild could not be made (%s); running the file as it is, slower on "
                    "this machine", weights.name, exc)
        return weights
    LOG.info("detector %s runs as its float rebuild %s (precision %s)", weights.name, path.name, precision)
    return path
