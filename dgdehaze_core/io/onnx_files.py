"""Reading ONNX files a user gives (exports, detectors, engines' sources) with a clear error for a bad one."""
from __future__ import annotations

import os
from typing import Any, NamedTuple


def read_onnx(path: str | os.PathLike[str], what: str = "ONNX file", external_data: bool = False) -> Any:
    """The `onnx.ModelProto` in `path` (its external tensors only with `external_data`); ValueError in one line
    naming the file when it is missing, truncated or not ONNX (onnx raises protobuf's DecodeError and others)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # DecodeError, OSError, ...: whatever the parser meets
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path} is not a readable {what}: {reason}") from None


def onnx_metadata(path: str | os.PathLike[str], what: str = "ONNX file") -> dict[str, str]:
    """The metadata properties of the ONNX file at `path` (`read_onnx`'s errors)."""
    return {prop.key: prop.value for prop in read_onnx(path, what).metadata_props}


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
    infinity (ONNX Runtime and TensorRT run such a file, and every frame comes out black)."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    model = read_onnx(path, "dgdehaze ONNX export")
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
