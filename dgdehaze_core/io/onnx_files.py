"""Reading ONNX files a user gives (exports, detectors, engines' sources) with a clear error for a bad one."""
from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import Any, NamedTuple

LOG = logging.getLogger(__name__)

WEIGHTS_DIGEST = "dgdehaze_weights_sha256"
"""Metadata key of a dgdehaze export's `weights_digest`, recorded when it is written: ONNX keeps no checksum, and a
byte changed on disk or in transfer inside a weight would otherwise load and run as other weights."""
WEIGHTS_LAYOUT = "dgdehaze_weights_layout_sha256"
"""Metadata key of a dgdehaze export's `weights_layout_digest`, recorded beside WEIGHTS_DIGEST: it tells a file
damaged since export (the same tensors, other values) from one whose tensors a tool rewrote and whose metadata it
kept (ONNX Runtime's offline optimisation, a simplifier: other tensors), which is no damage."""


def read_onnx(path: str | os.PathLike[str], what: str = "ONNX file", external_data: bool = False) -> Any:
    """The `onnx.ModelProto` in `path` (its external tensors only with `external_data`); ValueError in one line
    naming the file when it is missing, truncated or not ONNX (onnx raises protobuf's DecodeError and others)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # DecodeError, OSError, ...: whatever the parser meets
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path} is not a readable {what}: {reason}") from None


def _tensors(model: Any) -> list[tuple[str, Any]]:
    """(name, TensorProto) of each tensor an `onnx.ModelProto` holds in the file, in the graph's order: its
    initializers (external ones are its runtime's to read), then the values of its Constant nodes (the TorchScript
    exporter's scales and epsilons, named by their outputs)."""
    from onnx import AttributeProto, TensorProto

    constants = [(node.output[0], attribute.t) for node in model.graph.node if node.op_type == "Constant"
                 for attribute in node.attribute if attribute.type == AttributeProto.TENSOR]
    return [(name, tensor) for name, tensor in [*((init.name, init) for init in model.graph.initializer), *constants]
            if tensor.data_location != TensorProto.EXTERNAL]


def _described(name: str, tensor: Any) -> bytes:
    """A tensor's name, type and shape, as the digests take them."""
    return f"{name}\0{tensor.data_type}\0{list(tensor.dims)}\0".encode()


def weights_layout_digest(model: Any) -> str:
    """SHA-256 over the name, type and shape of each of `_tensors`: what WEIGHTS_LAYOUT records."""
    digest = hashlib.sha256()
    for name, tensor in _tensors(model):
        digest.update(_described(name, tensor))
    return digest.hexdigest()


def weights_digest(model: Any) -> str:
    """SHA-256 over the name, type, shape and values of each of `_tensors`: what WEIGHTS_DIGEST records."""
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for name, tensor in _tensors(model):
        digest.update(_described(name, tensor))
        digest.update(numpy_helper.to_array(tensor).tobytes())
    return digest.hexdigest()


def weights_record(model: Any) -> dict[str, str]:
    """The metadata a dgdehaze export records of its weights (WEIGHTS_DIGEST, WEIGHTS_LAYOUT), for
    `check_weights_digest`."""
    return {WEIGHTS_DIGEST: weights_digest(model), WEIGHTS_LAYOUT: weights_layout_digest(model)}


def check_weights_digest(model: Any, path: str | os.PathLike[str]) -> None:
    """ValueError in one line naming `path` when the `onnx.ModelProto` read from it records a WEIGHTS_DIGEST its
    weights no longer match while its tensors are still those recorded as WEIGHTS_LAYOUT (the file was damaged after
    export); a file without a digest (a foreign ONNX such as a detector, or an export made before digests were
    recorded) passes, and so, with a warning, does one whose tensors a tool rewrote, keeping the metadata (ONNX
    Runtime's offline optimisation folds the Constant nodes into initializers of other names)."""
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    recorded = metadata.get(WEIGHTS_DIGEST)
    if recorded is None or recorded == weights_digest(model):
        return
    layout = metadata.get(WEIGHTS_LAYOUT)
    if layout is not None and layout != weights_layout_digest(model):
        LOG.warning("%s: its tensors are not those it was exported with (rewritten by a tool such as an ONNX "
                    "optimiser or simplifier?), so the digest recorded at export cannot check its weights", path)
        return
    raise ValueError(f"{path} is damaged: its weights do not match the digest recorded when it was exported "
                     f"(bytes changed on disk or in transfer); export it again")


def input_is_half(model: Any) -> bool:
    """Whether an `onnx.ModelProto`'s first input is fp16 (an export made with half: its own types decide the
    precision it runs at)."""
    from onnx import TensorProto

    return model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16


class DgdehazeExport(NamedTuple):
    """What a dgdehaze ONNX export says of itself: its network's stride, its metadata properties, and whether it takes
    fp16 input (exported with half: its own types then decide the precision it runs at)."""

    stride: int
    metadata: dict[str, str]
    half: bool


def checked_dgdehaze_export(path: str | os.PathLike[str]) -> DgdehazeExport:
    """The stride (its `dgdehaze_stride` metadata) and metadata of a dgdehaze ONNX export, read in one parse;
    ValueError when the file is no such export, its stride is not a positive number, or a float weight holds NaN or
    infinity (ONNX Runtime and TensorRT run such a file, and every frame comes out black), or its weights do not
    match the digest recorded at export (`check_weights_digest`). A file checked before in this process, the same
    file since (device, inode, size and modification time), is not read again: one load checks it in several
    places (the backend's choice, the engine's profile, the runtime), and the paper network's export is 174 MB."""
    try:
        status = os.stat(path)
    except OSError:
        return _read_checked_export(path)  # read_onnx says what is wrong with it
    return _checked_export(path, (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _checked_export(path: str | os.PathLike[str], identity: tuple[int, ...]) -> DgdehazeExport:
    """`_read_checked_export(path)`, once per `identity` of the file (an exception is not kept)."""
    return _read_checked_export(path)


def _read_checked_export(path: str | os.PathLike[str]) -> DgdehazeExport:
    """`checked_dgdehaze_export`'s reading and checks."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    model = read_onnx(path, "dgdehaze ONNX export")
    check_weights_digest(model, path)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if "dgdehaze_stride" not in metadata:
        raise ValueError(f"{path} is not a dgdehaze export (no dgdehaze_stride in its metadata)")
    stride = metadata["dgdehaze_stride"]
    if not stride.isdigit() or int(stride) < 1:
        raise ValueError(f"{path}: its dgdehaze_stride metadata {stride!r} is not a positive number")
    for initializer in model.graph.initializer:
        if initializer.data_location == TensorProto.EXTERNAL:  # not loaded: its runtime reads it
            continue
        values = numpy_helper.to_array(initializer)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            raise ValueError(f"{path} holds weights that are not finite (NaN or infinity), first in "
                             f"{initializer.name!r}: exported from a training run that diverged?")
    return DgdehazeExport(int(stride), metadata, input_is_half(model))
