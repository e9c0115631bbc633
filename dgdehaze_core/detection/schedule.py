"""Detection every Nth frame: on a CPU the detector, not the dehazer, sets a node's frame rate.

`DetectionSchedule(detector, interval=N)` runs the detector on frames 0, N, 2N, ... and hands back the latest
detections in between, marked as not fresh and with their age in frames, so a node can keep dehazing and
publishing depth at camera rate while it publishes (or re-publishes) detections at 1/N of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dgdehaze_core.detection.detector import Detection

MAX_INTERVAL = 1000


@dataclass(frozen=True)
class ScheduledDetections:
    """Detections for one frame: `fresh` when the detector ran on this frame, else `age` frames old."""

    detections: list[Detection]
    fresh: bool
    age: int


class DetectionSchedule:
    """Runs `detector` on every `interval`-th frame and reuses its last result in between."""

    def __init__(self, detector: Callable[..., list[Detection]], interval: int = 1) -> None:
        self.detector = detector
        self.interval = interval
        self.reset()

    @property
    def interval(self) -> int:
        return self._interval

    @interval.setter
    def interval(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTERVAL:
            raise ValueError(f"detection interval must be an integer in [1, {MAX_INTERVAL}], got {value!r}")
        self._interval = value

    def reset(self) -> None:
        """Forget the last detections; the next frame is detected."""
        self._last: list[Detection] = []
        self._age = -1
        self._size: tuple[int, ...] = ()

    def latest(self, shape: tuple[int, ...]) -> list[Detection]:
        """The last detections, for a frame of `shape` (height, width, ...) before this frame's are known (the fog
        measured on road users: `FrameChain.measure_fog`); none before the first or for a frame of another size,
        whose pixels they do not share."""
        return list(self._last) if self._age >= 0 and tuple(shape[:2]) == tuple(self._size) else []

    def __call__(self, frame: np.ndarray, *more: np.ndarray) -> ScheduledDetections:
        """Detections for `frame` (and any further frames the detector takes, e.g. the raw frame beside the
        dehazed one for `detection.fusion.FrameDetector`). A frame of another size than the last detected is
        detected: the last boxes are in other pixels."""
        if self._age < 0 or self._age + 1 >= self._interval or frame.shape[:2] != self._size:
            self._last = list(self.detector(frame, *more))
            self._size = frame.shape[:2]
            self._age = 0
            return ScheduledDetections(list(self._last), True, 0)
        self._age += 1
        return ScheduledDetections(list(self._last), False, self._age)
