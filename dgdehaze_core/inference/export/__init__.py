"""Export of the dehazing networks to ONNX (the file ONNX Runtime and TensorRT run) and the graph rewrites
that file needs."""
from __future__ import annotations

import threading

TORCH_EXPORT_LOCK = threading.Lock()
"""Held by every export of a torch model in this process (a dehazing network's `to_onnx.export_onnx`, and
Ultralytics' export of a detector, whose ONNX export runs first even for an engine) while torch traces it: torch's
exporters keep process-wide state, and two exports at once (two cameras' nodes of one process loading models in the
background) failed: torch.export with `ProxyTorchDispatchMode slot already occupied`, the detector's float rebuild
with a TypeError. The second waits for the first instead."""
