"""Inference backends: one network, several runtimes behind one small interface.

A backend takes a batch of frames already padded to the network's stride, float32 NCHW RGB in [0, 1], and returns
the network's outputs as float32 numpy arrays under the forward keys ("clear", "transmission", "airlight",
"depth"), or, for a physics-only network, all of them but "clear", or, for a network without the scattering model
(the paper's released one), "clear" and "depth". The pipeline (`inference.pipeline`) does
everything else: colour conversion, resizing, padding, cropping and the physics output path, identically for every
backend.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, Union

import numpy as np

from dgdehaze_core.io.file_paths import file_suffix

if TYPE_CHECKING:
    from dgdehaze_core.models import DGDehazeNet

RUNTIMES = ("tensorrt", "onnxruntime", "torch")
"""The runtimes a network runs on, in the order `auto` tries them (backends/selection.py)."""
INT8_RUNTIME = "onnxruntime-int8"
"""`dgdehaze bench`'s name for a network run as a QDQ int8 export (export/quantize.py) on ONNX Runtime."""
BACKENDS = ("auto", *RUNTIMES)
"""What a `backend` option or parameter takes."""
FILE_RUNTIMES = {".onnx": ("onnxruntime", "tensorrt"), ".engine": ("tensorrt",)}
"""The runtimes an exported file runs on, its default first."""

OUTPUT_NAMES = ("clear", "transmission", "airlight", "depth")
"""Every output a network can give, with shapes (B,3,H,W), (B,1,H,W), (B,3,1,1), (B,1,H,W)."""
PHYSICS_OUTPUTS = ("transmission", "airlight", "depth")
"""What the physics output path J = (I - A) / t + A needs. A network exported with these alone leaves out the
decoder's full-resolution image branch, a third of lite's time (docs/BENCHMARKS.md)."""
DECODER_OUTPUTS = ("clear", "depth")
"""What a network without the scattering model gives (the paper's released network, models/paper_net.py): its
image and its depth; the pipeline takes transmission and airlight from the dark channel prior."""
OUTPUT_SETS = (OUTPUT_NAMES, PHYSICS_OUTPUTS, DECODER_OUTPUTS)


def round_up_to_stride(value: int, stride: int) -> int:
    """The smallest multiple of `stride` that is at least `value`: the size a frame is padded to."""
    return -(-value // stride) * stride


def check_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """`outputs` in OUTPUT_NAMES order; ValueError unless it is one of OUTPUT_SETS."""
    ordered = tuple(name for name in OUTPUT_NAMES if name in outputs)
    if set(outputs) != set(ordered) or ordered not in OUTPUT_SETS:
        raise ValueError("network outputs must be " + " or ".join(", ".join(s) for s in OUTPUT_SETS)
                         + f"; got {', '.join(outputs)}")
    return ordered


def outputs_of(names: Iterable[str], source: object) -> tuple[str, ...]:
    """The network outputs among a graph's or an engine's tensor `names`, in OUTPUT_NAMES order; ValueError naming
    `source` when one that the physics path needs is missing (and the graph is not a decoder-only network's)."""
    present = set(names)
    if present & set(OUTPUT_NAMES) == set(DECODER_OUTPUTS):
        return DECODER_OUTPUTS
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
    max_size: tuple[int, int] | None
    """(height, width), multiples of the stride, of the largest input it takes (a TensorRT engine's profile); None:
    no limit."""
    max_batch: int | None
    """Most frames one `run` takes (a fixed-size export's batch, an engine profile's); None: any number."""

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """batch: (B, 3, H, W) float32 RGB in [0, 1] -> float32 arrays under `outputs`."""
        ...


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine (library missing, no CUDA, provider absent)."""


@dataclass(frozen=True)
class NetworkSource:
    """What a backend opens: an in-memory network (`network`; it runs on every runtime, exported to ONNX on the way
    to ONNX Runtime and TensorRT, and `weights`, the record of the checkpoint it was read from, if any, taken as it
    was read (`models.load_model_and_record`), is what that export and an engine built from it record, without
    reading the file again) or an exported file (`file`: an .onnx export, or a prebuilt TensorRT .engine that keeps
    the profile and precision it was built with)."""

    network: DGDehazeNet | None = None
    file: Path | None = None
    weights: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.network is None) == (self.file is None):
            raise ValueError("a network source is either a network or a file")
        if self.weights is not None and self.network is None:
            raise ValueError("only an in-memory network carries the record of the weights it was read from")
        if self.file is not None and file_suffix(self.file) not in FILE_RUNTIMES:
            raise ValueError(f"{self.file}: an exported network is a {' or '.join(FILE_RUNTIMES)} file")

    @classmethod
    def of(cls, source: Union["DGDehazeNet", "NetworkSource", str, os.PathLike[str]]) -> NetworkSource:
        """A source from a network, a file path, or a source."""
        if isinstance(source, NetworkSource):
            return source
        if isinstance(source, (str, os.PathLike)):
            return cls(file=Path(os.fspath(source)))
        return cls(network=source)

    @property
    def suffix(self) -> str:
        """".onnx", ".engine", or "" for an in-memory network."""
        return "" if self.file is None else file_suffix(self.file)

    @property
    def runtimes(self) -> tuple[str, ...]:
        """The runtimes this source runs on, its default first (torch for an in-memory network)."""
        return FILE_RUNTIMES[self.suffix] if self.file is not None else ("torch", "onnxruntime", "tensorrt")

    def check_backend(self, backend: str) -> str:
        """`backend` (one of BACKENDS) if this source can run on it; ValueError saying which ones it runs on."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        if backend != "auto" and backend not in self.runtimes:
            kind = "a TensorRT engine" if self.suffix == ".engine" else "an ONNX export"
            raise ValueError(f"{self.file} is {kind}: it runs on the {' or '.join(self.runtimes)} backend, "
                             f"not {backend}")
        return backend
