"""Inference backends: one network, several runtimes behind one small interface.

A backend takes a batch of frames already padded to the network's stride, float32 NCHW RGB in [0, 1], and returns
the network's outputs as float32 numpy arrays under the forward keys ("clear", "transmission", "airlight",
"depth"). The pipeline (`dgdehaze_core.pipeline`) does everything else: colour conversion, resizing, padding,
cropping and the physics output path, identically for every backend.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

OUTPUT_NAMES = ("clear", "transmission", "airlight", "depth")
"""What every backend's `run` returns, with shapes (B,3,H,W), (B,1,H,W), (B,3,1,1), (B,1,H,W)."""


class InferenceBackend(Protocol):
    """A loaded network on one runtime and device."""

    name: str
    """Runtime name shown in logs and benchmark tables: "torch", "onnxruntime", ..."""
    stride: int
    """Height and width of a batch must be multiples of this."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: (B, 3, H, W) float32 RGB in [0, 1] -> float32 outputs under OUTPUT_NAMES."""
        ...
