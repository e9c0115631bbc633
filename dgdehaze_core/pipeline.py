"""One object that turns a camera frame into a dehazed frame, depth and transmission, whatever the method.

`load_pipeline(method)` takes a method name ("dcp", a model configuration such as "lite", or a weights path) and
returns a `DehazePipeline`. The CLI, the ROS node and bag evaluation all call it, so they run the same code.
"""
from __future__ import annotations

import logging
from typing import Protocol, Sequence

import numpy as np

from dgdehaze_core.dark_channel import DarkChannelDehazer
from dgdehaze_core.dehaze_result import DehazeResult
from dgdehaze_core.image_io import to_bgr8

LOG = logging.getLogger(__name__)


class DehazePipeline(Protocol):
    """Frame in (uint8 BGR, any size), `DehazeResult` out."""

    method: str
    backend: str

    def __call__(self, frame: np.ndarray) -> DehazeResult: ...

    def process_batch(self, frames: Sequence[np.ndarray]) -> list[DehazeResult]: ...


class DarkChannelPipeline:
    """The dark channel prior behind the pipeline interface (no weights, numpy/OpenCV only)."""

    method = "dcp"
    backend = "opencv"

    def __init__(self, dehazer: DarkChannelDehazer | None = None) -> None:
        self.dehazer = dehazer or DarkChannelDehazer()

    def __call__(self, frame: np.ndarray) -> DehazeResult:
        return self.dehazer.dehaze(to_bgr8(frame))

    def process_batch(self, frames: Sequence[np.ndarray]) -> list[DehazeResult]:
        return [self(frame) for frame in frames]


def load_pipeline(method: str = "dcp", **options: object) -> DehazePipeline:
    """Build the pipeline for `method`; unknown methods raise ValueError naming the known ones."""
    if method == "dcp":
        if options:
            raise ValueError(f"the dcp method takes no options, got {sorted(options)}")
        return DarkChannelPipeline()
    raise ValueError(f"unknown dehazing method {method!r}; known: dcp")
