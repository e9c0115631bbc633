"""Inference backends: one network, several runtimes behind one small interface.

A backend takes a batch of frames already padded to the network's stride, float32 NCHW RGB in [0, 1], and returns
the network's outputs as float32 numpy arrays under the forward keys ("clear", "transmission", "airlight",
"depth"), or, for a physics-only network, all of them but "clear". The pipeline (`dgdehaze_core.pipeline`) does
everything else: colour conversion, resizing, padding, cropping and the physics output path, identically for every
backend.
"""
from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np

OUTPUT_NAMES = ("clear", "transmission", "airlight", "depth")
"""Every output a network can give, with shapes (B,3,H,W), (B,1,H,W), (B,3,1,1), (B,1,H,W)."""
PHYSICS_OUTPUTS = ("transmission", "airlight", "depth")
"""What the physics output path J = (I - A) / t + A needs. A network exported with these alone leaves out the
decoder's full-resolution image branch: lite at 640x480 ran 39 -> 26 ms on ONNX Runtime (docs/BENCHMARKS.md)."""


def round_up_to_stride(value: int, stride: int) -> int:
    """The smallest multiple of `stride` that is at least `value`: the size a frame is padded to."""
    return -(-value // stride) * stride


def check_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """`outputs` in OUTPUT_NAMES order; ValueError unless it is OUTPUT_NAMES or PHYSICS_OUTPUTS."""
    ordered = tuple(name for name in OUTPUT_NAMES if name in outputs)
    if set(outputs) != set(ordered) or ordered not in (OUTPUT_NAMES, PHYSICS_OUTPUTS):
        raise ValueError(f"network outputs must be {', '.join(OUTPUT_NAMES)} or {', '.join(PHYSICS_OUTPUTS)}; "
                         f"got {', '.join(outputs)}")
    return ordered


def outputs_of(names: Iterable[str], source: object) -> tuple[str, ...]:
    """The network outputs among a graph's or an engine's tensor `names`, in OUTPUT_NAMES order; ValueError naming
    `source` when one that the physics path needs is missing."""
    present = set(names)
    missing = set(PHYSICS_OUTPUTS) - present
    if missing:
        raise ValueError(f"{source} lacks the outputs {sorted(missing)}")
    return tuple(name for name in OUTPUT_NAMES if name in present)


class InferenceBackend(Protocol):
    """A loaded network on one runtime and device."""

    name: str
    """Runtime name shown in logs and benchmark tables: "torch", "onnxruntime", ..."""
    stride: int
    """Height and width of a batch must be multiples of this."""
    outputs: tuple[str, ...]
    """What `run` returns: OUTPUT_NAMES, or PHYSICS_OUTPUTS for a physics-only network."""
    fixed_size: tuple[int, int] | None
    """(height, width) of the only input size a fixed-size export or engine takes; None: any multiple of stride."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: (B, 3, H, W) float32 RGB in [0, 1] -> float32 arrays under `outputs`."""
        ...
