"""The node's work on one camera frame, written once: the node, bag evaluation and `dgdehaze bench chain` call it.

    frame (uint8 BGR) -> dehaze (image, depth, transmission, haze density)
                      -> measure the fog, with a camera mounting and intrinsics (visibility, depth in metres;
                         physics/visibility.py): on the road users the detector last found (physics/dark_objects.py),
                         else on the road
                      -> detect on schedule (every `interval`-th frame; on the dehazed frame, the raw one or both
                         fused) -> each detection's depth: the road's under its box where the mounting reads
                         it (physics/ground_contact.py), else the median depth in its box

Separate steps, so that a caller can publish the dehazed image before the detector runs (the node does: detection
never delays the image). Calling the chain runs them all: with a mounting, detections then carry metres where
their contact with the road is in view or the fog gave the scale, NaN elsewhere; without one, the network's
relative depth.
A grayscale, 16-bit or BGRA frame is converted to uint8 BGR first (`images.to_bgr8`), as the pipelines do.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dgdehaze_core.detection.detector import Detection, Detector, median_depth
from dgdehaze_core.detection.fusion import FrameDetector
from dgdehaze_core.detection.schedule import DetectionSchedule
from dgdehaze_core.detection.tracking import BoxTracker
from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.inference.pipeline import DehazePipeline
from dgdehaze_core.io.images import to_bgr8
from dgdehaze_core.physics.dark_objects import measure_objects_beta
from dgdehaze_core.physics.ground_contact import detection_contact
from dgdehaze_core.physics.visibility import Intrinsics, VisibilityEstimator, VisibilityReading, fog_contrast


@dataclass
class DehazedFrame:
    """The first step's output: the input frame (as uint8 BGR), what the pipeline made of it, and how long that
    took."""

    frame: np.ndarray
    result: DehazeResult
    dehaze_ms: float


@dataclass
class FrameDetections:
    """The second step's output: the detections for this frame and the depth in each box.

    fresh: the detector ran on this frame; otherwise the detections are its last run's, `age` frames old (and
    none without a detector). depths: each box's depth, in the depth map's units, NaN where it has none: with a
    metric map and a mounting, the flat road's z under the box where its bottom stands on the road in view
    (`ground_contact.detection_contact`, fog or none), else the median of the map in the box. positions: each
    object's position in metres in the camera's optical frame (the box centre's ray at that depth) when the depth
    is metric, else NaN."""

    detections: list[Detection]
    fresh: bool
    age: int
    depths: list[float]
    detect_ms: float
    positions: list[tuple[float, float, float]]


@dataclass
class FrameOutput:
    """Everything the chain makes of one frame: the outputs a node publishes for it."""

    dehazed: DehazedFrame
    detected: FrameDetections
    fog: VisibilityReading | None = None
    """The fog measured on this frame (None without a mounting or intrinsics)."""

    @property
    def result(self) -> DehazeResult:
        return self.dehazed.result

    @property
    def compute_ms(self) -> float:
        """Dehazing plus detection, without any waiting or conversion around them."""
        return self.dehazed.dehaze_ms + self.detected.detect_ms


def no_detections() -> FrameDetections:
    """The detections of a chain without a detector: new lists each frame, so that a caller's change to one
    frame's reaches no other."""
    return FrameDetections([], False, 0, [], 0.0, [])


UNKNOWN_POSITION = (math.nan, math.nan, math.nan)


def detection_schedule(detector: Detector, interval: int = 1, detection_input: str = "dehazed",
                       contrast: bool = False, tracks: BoxTracker | None = None) -> DetectionSchedule:
    """The detector as a chain runs it: every `interval`-th frame, on `detection_input`, with the local contrast
    equalised first when `contrast` (see `detection.fusion.FrameDetector`), never more boxes than the detector's
    `max_det` as it stands at each frame, its boxes followed by `tracks` (default: the detector's own tracker, if
    it has one). A caller that swaps its pipeline keeps the schedule, so the count of frames goes on."""
    track = tracks if tracks is not None else detector.track if detector.tracker else None
    return DetectionSchedule(FrameDetector(detector.detect, detection_input, contrast=contrast, track=track,
                                           max_det=lambda: detector.max_det), interval)


class FrameChain:
    """A dehazing pipeline and, optionally, a detector on a schedule and a fog estimator for the camera's mounting
    (which smooths over the frames' stamps), applied to frames in order."""

    def __init__(self, pipeline: DehazePipeline, schedule: DetectionSchedule | None = None,
                 fog: VisibilityEstimator | None = None) -> None:
        self.pipeline = pipeline
        self.schedule = schedule
        self.fog = fog

    @classmethod
    def build(cls, pipeline: DehazePipeline, detector: Detector | None = None, interval: int = 1,
              detection_input: str = "dehazed", fog: VisibilityEstimator | None = None,
              contrast: bool = False, tracks: BoxTracker | None = None) -> FrameChain:
        """A chain that detects every `interval`-th frame on `detection_input`, `contrast` and `tracks` as in
        `detection_schedule`, and, with `fog`, measures the fog."""
        schedule = None if detector is None else detection_schedule(detector, interval, detection_input, contrast,
                                                                    tracks)
        return cls(pipeline, schedule, fog)

    def dehaze(self, frame: np.ndarray) -> DehazedFrame:
        """The pipeline's result for `frame`, which may be anything the pipeline takes (grayscale, 16-bit, BGRA: see
        `images.to_bgr8`); the DehazedFrame carries it as uint8 BGR, the frame the fog and the detector read."""
        begin = time.perf_counter()
        frame = to_bgr8(frame)
        result = self.pipeline(frame)
        return DehazedFrame(frame, result, (time.perf_counter() - begin) * 1000.0)

    def measure_fog(self, dehazed: DehazedFrame, intrinsics: Intrinsics | None,
                    stamp_s: float) -> VisibilityReading | None:
        """The fog in this frame (visibility, depth in metres), or None without a fog estimator or intrinsics.
        `stamp_s`: the frame's stamp in seconds, which the smoothing follows. Measured on the dark undersides of the
        road users the detector last found (`dark_objects`: the schedule's latest boxes, from an earlier frame, so
        that the fog and depth need not wait for this frame's detector) where one stands on the road in view, else
        on the road."""
        if self.fog is None or intrinsics is None:
            return None
        boxes = self.schedule.latest(dehazed.frame.shape) if self.schedule is not None else []
        objects = measure_objects_beta(dehazed.frame, boxes, intrinsics, self.fog.mounting) if boxes else None
        return self.fog.update(dehazed.result.transmission, intrinsics, stamp_s, fog_contrast(dehazed.frame),
                               dehazed.result.transmission_floor, objects)

    def distance_map(self, dehazed: DehazedFrame, reading: VisibilityReading | None) -> np.ndarray:
        """The depth detections carry: metres from the fog reading; without a fog estimator the relative depth;
        with one but no reading, NaN (a distance in unknown units would read as metres)."""
        if reading is not None:
            return reading.depth
        if self.fog is None:
            return dehazed.result.depth
        return np.full(dehazed.result.depth.shape, np.nan, np.float32)

    def detect(self, dehazed: DehazedFrame, depth: np.ndarray | None = None,
               metric: Intrinsics | None = None) -> FrameDetections:
        """Detections for the frame (fresh or carried over by the schedule) and the median of `depth` (default:
        the pipeline's relative depth) in each box; with `metric`, the frame's intrinsics when `depth` is in
        metres, each object's position too, its depth the road's under the box where the fog estimator's
        mounting reads it and the object stands on the road (`ground_contact.detection_contact`; `FrameDetections`)."""
        if self.schedule is None:
            return no_detections()
        begin = time.perf_counter()
        scheduled = self.schedule(dehazed.result.image, dehazed.frame)
        depth = dehazed.result.depth if depth is None else depth
        mounting = self.fog.mounting if metric is not None and self.fog is not None else None
        contacts = [math.nan if mounting is None else detection_contact(d, depth.shape[:2], metric, mounting).z
                    for d in scheduled.detections]
        depths = [contact if math.isfinite(contact) else median_depth(d, depth)
                  for d, contact in zip(scheduled.detections, contacts)]
        positions = [UNKNOWN_POSITION if metric is None else
                     metric.point_at((d.box[0] + d.box[2]) / 2.0, (d.box[1] + d.box[3]) / 2.0, z)
                     for d, z in zip(scheduled.detections, depths)]
        return FrameDetections(scheduled.detections, scheduled.fresh, scheduled.age, depths,
                               (time.perf_counter() - begin) * 1000.0, positions)

    def __call__(self, frame: np.ndarray, intrinsics: Intrinsics | None = None, stamp_s: float = 0.0) -> FrameOutput:
        dehazed = self.dehaze(frame)
        reading = self.measure_fog(dehazed, intrinsics, stamp_s)
        detected = self.detect(dehazed, self.distance_map(dehazed, reading),
                               intrinsics if reading is not None else None)
        return FrameOutput(dehazed, detected, reading)
