"""Export of the dehazing networks to ONNX (the file ONNX Runtime and TensorRT run) and the graph rewrites
that file needs."""
from __future__ import annotations

import os
import threading

TORCH_EXPORT_LOCK = threading.Lock()
"""Held by every export of a torch model in this process (a dehazing network's `to_onnx.export_onnx`, and
Ultralytics' export of a detector, whose ONNX export runs first even for an engine) while torch traces it: torch's
exporters keep process-wide state, and two exports at once (two cameras' nodes of one process loading models in the
background) failed: torch.export with `ProxyTorchDispatchMode slot already occupied`, the detector's float rebuild
with a TypeError. The second waits for the first instead."""

EXPORTERS = ("torchscript", "dynamo")
"""The exporters `to_onnx.export_onnx` takes. "torchscript" (`dynamo=False`), the default: it exports these
networks an order of magnitude faster (the node's first configure on a camera waits for it), its graph runs as fast on
ONNX Runtime (docs/DEPLOYMENT.md has both), and it is the one that exports them on torch 2.6. "dynamo"
(`dynamo=True`, the one torch recommends from 2.9 on): for a torch that no longer has the TorchScript exporter
(`default_exporter`).
torch 2.6's dynamo exporter cannot export these networks: with onnxscript 0.5.4 or later its translation of batch
norm fails (`'tuple' object has no attribute 'dtype'`: its op recorder gives BatchNormalization all three schema
outputs, microsoft/onnxscript#2651), and with any onnxscript a dynamic export fails in its type-promotion pass on the
attention's pooling matrices (`Unknown fx arg type`)."""
DEFAULT_EXPORTER = "torchscript"


def default_exporter() -> str:
    """The exporter of an export that names none (`dgdehaze export` without --exporter, and the exports the node,
    `dehaze` and `eval` make for ONNX Runtime and TensorRT): $DGDEHAZE_ONNX_EXPORTER, else DEFAULT_EXPORTER;
    ValueError for a name not in EXPORTERS."""
    configured = os.environ.get("DGDEHAZE_ONNX_EXPORTER", "").strip()
    if configured and configured not in EXPORTERS:
        raise ValueError(f"DGDEHAZE_ONNX_EXPORTER must be one of {', '.join(EXPORTERS)}, got {configured!r}")
    return configured or DEFAULT_EXPORTER
