"""Benchmark rows for the node's compressed outputs: what encoding a frame's image and depth costs and saves.

The node encodes `~/image_dehazed/compressed` (JPEG or PNG) and `~/depth_relative/compressedDepth` on its frame
worker while someone subscribes, and `bag-eval` writes them into an output bag; each row times one encoding of
lite's output for a hazy frame (`--chain-model`'s network on its fastest backend here) and gives its size:
`kbytes`, and `size_ratio` against the raw Image's data. `ratio_to_dcp` divides by DCP's time on that frame,
measured right before the row, as every row of `bench` does.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from dgdehaze_core.benchmarks.networks import BenchSettings, DcpBeside, Row, against_dcp
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.io.camera_frames import compress_frame
from dgdehaze_core.io.compressed_depth import compress_depth


def bench_outputs(model: str, frames: dict[tuple[int, int], np.ndarray], settings: BenchSettings) -> dict[str, Row]:
    """Rows `outputs/<encoding>@WxH` for each frame size: JPEG (quality 95) and PNG (level 3) of the dehazed frame
    as the node's defaults write them, and compressedDepth of its relative depth."""
    pipeline = load_pipeline(model, backend="auto")
    dcp = DcpBeside(settings)
    rows: dict[str, Row] = {}
    for (width, height), frame in frames.items():
        result = pipeline(frame)
        image, depth = result.image, result.depth.astype(np.float32)
        encodings: dict[str, tuple[Callable[[], tuple[str, bytes]], int]] = {
            "jpeg": (lambda: compress_frame(image, image, "bgr8", "jpeg"), image.nbytes),
            "png": (lambda: compress_frame(image, image, "bgr8", "png"), image.nbytes),
            "compressedDepth": (lambda: compress_depth(depth), depth.nbytes)}
        for name, (encode, raw_bytes) in encodings.items():
            size = len(encode()[1])
            dcp_ms = dcp.ms(frame)
            row = settings.measure(encode)
            rows[f"outputs/{name}@{width}x{height}"] = {**row, **against_dcp(row, dcp_ms), "kbytes": size / 1000.0,
                                                        "size_ratio": size / raw_bytes}
    return rows
