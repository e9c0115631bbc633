"""Reading ONNX files a user gives (exports, detectors, engines' sources) with a clear error for a bad one."""
from __future__ import annotations

import os
from typing import Any


def read_onnx(path: str | os.PathLike[str], what: str = "ONNX file", external_data: bool = False) -> Any:
    """The `onnx.ModelProto` in `path` (its external tensors only with `external_data`); ValueError in one line
    naming the file when it is missing, truncated or not ONNX (onnx raises protobuf's DecodeError and others)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # DecodeError, OSError, ...: whatever the parser meets
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{path} is not a readable {what}: {reason}") from None
