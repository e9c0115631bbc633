"""Export a DGDehazeNet (or the paper's network) to ONNX with dynamic batch, height and width, written atomically.

The graph has one input, "hazy" (B, 3, H, W) RGB in [0, 1] with H and W multiples of the model's stride, and the
outputs "clear", "transmission", "airlight", "depth" (the model's forward keys; the paper's network gives "clear"
and "depth" only, its `outputs`), or with `outputs=PHYSICS_OUTPUTS` all but "clear": the graph then leaves out the
decoder's image branch, which the physics output path does not use. The stride, configuration and outputs are
stored in the file's metadata (`dgdehaze_stride`, `dgdehaze_config`, `dgdehaze_depth_guidance`,
`dgdehaze_outputs`) so that a runtime can pad frames without the PyTorch model, and the weights file it was exported
from under `dgdehaze_exported_from`; a digest of its weights (`dgdehaze_weights_sha256`) lets every runtime refuse a
file damaged since. The graph gets the output-preserving rewrites of
`dgdehaze_core.inference.export.graph_rewrites` (recorded as `dgdehaze_graph_rewrites`).

The graph comes from torch's TorchScript exporter by default, or from its dynamo (torch.export) exporter on request
(EXPORTERS, `default_exporter`); the exporter is recorded as `dgdehaze_exporter`.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import onnx
import torch

from dgdehaze_core.inference.backends import OUTPUT_NAMES, check_outputs
from dgdehaze_core.inference.export import EXPORTERS, TORCH_EXPORT_LOCK, default_exporter
from dgdehaze_core.inference.export.graph_rewrites import GRAPH_REWRITES_VERSION, rewrite_for_runtimes
from dgdehaze_core.io.atomic_files import atomic_path
from dgdehaze_core.io.onnx_files import weights_record
from dgdehaze_core.models import DGDehazeNet, PaperNet

LOG = logging.getLogger(__name__)

INPUT_NAME = "hazy"
DEFAULT_OPSET = 18
MAX_DYNAMIC_SIDE = 8192
"""The largest frame side (pixels) a dynamic export takes."""
EXPORTED_FROM = "dgdehaze_exported_from"
"""Metadata key of the weights file an export was made from (JSON: its name, sha256 and training provenance)."""
PACKAGE = Path(__file__).resolve().parents[2]
EXPORT_CODE = ("models", "inference/export")
"""The folders of the package whose source makes an export's graph: the networks and the exporter."""


@functools.cache
def export_code_digest(package: Path = PACKAGE) -> str:
    """12 hex digits of a SHA-256 over the source of EXPORT_CODE in `package`: part of a cached export's key
    (`selection.cached_onnx`), so that an upgrade that changes a network's forward or the export, its weights
    unchanged, exports again rather than running the old graph on ONNX Runtime or TensorRT."""
    digest = hashlib.sha256()
    for path in sorted(p for folder in EXPORT_CODE for p in (package / folder).glob("*.py")):
        digest.update(f"{path.relative_to(package).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _threshold(graph: Any, x: Any, threshold: float, value: float) -> Any:
    """aten::threshold (x where x > threshold, else value) for the TorchScript exporter, whose own takes only
    threshold = value = 0 (a ReLU)."""
    def constant(number: float) -> Any:
        return graph.op("CastLike", graph.op("Constant", value_t=torch.tensor(number)), x)

    return graph.op("Where", graph.op("Greater", x, constant(threshold)), x, constant(value))


def _torchscript_export(wrapped: torch.nn.Module, example: torch.Tensor, tmp: Path, opset: int,
                        outputs: tuple[str, ...], dynamic: bool) -> onnx.ModelProto:
    """The graph of torch's TorchScript exporter, written to `tmp` and returned."""
    from torch.onnx.symbolic_helper import parse_args

    torch.onnx.register_custom_op_symbolic("aten::threshold", parse_args("v", "f", "f")(_threshold), 9)
    dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    torch.onnx.export(wrapped, (example,), str(tmp), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                      output_names=list(outputs), dynamic_axes=dynamic_axes)
    return onnx.load(str(tmp))


class _TupleOutputs(torch.nn.Module):
    """The model with its dict returned as a tuple in `outputs` order (ONNX outputs are positional)."""

    def __init__(self, model: DGDehazeNet | PaperNet, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.outputs = outputs

    def forward(self, hazy: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(hazy, with_clear="clear" in self.outputs)
        return tuple(outputs[name] for name in self.outputs)


def export_onnx(model: DGDehazeNet | PaperNet, path: str | os.PathLike[str], opset: int = DEFAULT_OPSET,
                dynamic: bool = True, half: bool = False, example_size: tuple[int, int] | None = None,
                outputs: tuple[str, ...] | None = None, source: Mapping[str, Any] | None = None,
                exporter: str | None = None) -> Path:
    """Write `model` (eval mode, on CPU) as an ONNX file at `path` and return the path.

    dynamic: batch, height and width are free (any multiple of the stride); otherwise fixed to `example_size`.
    half: weights and input/outputs in float16 (for GPU runtimes; ONNX Runtime's CPU provider runs it slowly).
    example_size: (height, width) of the tracing input; default 4 strides square. With `dynamic`, a side of one
        stride is traced at two (torch.export would fix a side it sees at one stride).
    outputs: the model's own (its `outputs`: OUTPUT_NAMES, or DECODER_OUTPUTS for the paper's network) by default,
        or PHYSICS_OUTPUTS for a graph without the decoder's image; ValueError for outputs the model does not give.
    source: the record of the weights file the model was read from (`models.load_model_and_record`), kept as JSON
        under the metadata key EXPORTED_FROM, so that an export says which trained weights it holds.
    exporter: one of EXPORTERS (default: `default_exporter()`); ValueError for another, or for "dynamo" on torch 2.6.
    """
    own = check_outputs(getattr(model, "outputs", OUTPUT_NAMES))
    outputs = own if outputs is None else check_outputs(outputs)
    if not set(outputs) <= set(own):
        raise ValueError(f"the {model.config_name} network gives {', '.join(own)}: it cannot export "
                         f"{', '.join(outputs)}")
    exporter = exporter or default_exporter()
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == "dynamo" and torch.__version__ < (2, 7):
        raise ValueError(f"torch {torch.__version__}'s dynamo exporter cannot export these networks: use the "
                         "torchscript exporter, or torch 2.7 or later")
    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset must be {DEFAULT_OPSET} or later (torch exports {DEFAULT_OPSET}, and the graph's "
                         f"ReduceMean does not convert to an earlier one), got {opset}")
    stride = model.stride
    height, width = example_size or (4 * stride, 4 * stride)
    if height % stride or width % stride:
        raise ValueError(f"example_size {height}x{width} must be a multiple of the stride {stride}")
    if dynamic:
        height, width = max(height, 2 * stride), max(width, 2 * stride)
    wrapped = _TupleOutputs(copy.deepcopy(model).cpu().eval(), outputs)
    dtype = torch.float16 if half else torch.float32
    wrapped = wrapped.to(dtype)
    example = torch.rand(2 if dynamic else 1, 3, height, width, dtype=dtype)  # size-1 dims would be specialised
    dynamic_shapes = None
    if dynamic:
        batch_dim = torch.export.Dim("batch", min=1, max=64)
        rows = torch.export.Dim("rows", min=1, max=MAX_DYNAMIC_SIDE // stride)
        cols = torch.export.Dim("cols", min=1, max=MAX_DYNAMIC_SIDE // stride)
        dynamic_shapes = {"hazy": {0: batch_dim, 2: stride * rows, 3: stride * cols}}
    for chatty in ("onnx_ir", "onnxscript"):  # one INFO line per folded constant otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TORCH_EXPORT_LOCK:
            if exporter == "dynamo":
                program = torch.onnx.export(wrapped, (example,), dynamo=True, opset_version=opset,
                                            input_names=[INPUT_NAME], output_names=list(outputs),
                                            dynamic_shapes=dynamic_shapes, external_data=False, optimize=True,
                                            verbose=False)
                program.save(str(tmp), external_data=False)
                proto = onnx.load(str(tmp))
            else:
                proto = _torchscript_export(wrapped, example, Path(tmp), opset, outputs, dynamic)
        rewritten = rewrite_for_runtimes(proto)
        meta = {"dgdehaze_stride": str(stride), "dgdehaze_config": model.config_name,
                "dgdehaze_depth_guidance": str(bool(model.depth_guidance)), "dgdehaze_outputs": ",".join(outputs),
                "dgdehaze_graph_rewrites": f"v{GRAPH_REWRITES_VERSION}: {rewritten}", "dgdehaze_exporter": exporter,
                **weights_record(proto)}
        if source is not None:
            meta[EXPORTED_FROM] = json.dumps(dict(source), sort_keys=True, default=str)
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    LOG.info("exported %s model to %s (opset %d, %s, %s, outputs %s, %s exporter)", model.config_name, path, opset,
             "dynamic HxW" if dynamic else f"{height}x{width}", "fp16" if half else "fp32", ",".join(outputs), exporter)
    return Path(path)
