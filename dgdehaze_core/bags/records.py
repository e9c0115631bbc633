"""What a bag evaluation records: per-frame figures, the frames kept for the report, and the run's summary.

Filled by the offline evaluation (`bags.evaluation`) and by node replay (`dgdehaze_ros.tools.bag_replay`); read by
the report (`bags.report`) and `dgdehaze bag-eval --json`.
"""
from __future__ import annotations

import logging
import math
import os
import platform
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.io.images import SAMPLE_BITS

LOG = logging.getLogger(__name__)

SAMPLE_COUNT = 4
"""Frames shown before/after in the report, evenly spaced over the evaluated frames."""


@dataclass
class FrameRecord:
    """The figures of one evaluated frame."""

    index: int
    stamp_ns: int
    """The frame's header stamp (the camera's clock: may repeat, jump or run backwards)."""
    log_time_ns: int
    """When the bag recorded the frame (in order: the report's time axis)."""
    haze_density_hazy: float
    haze_density_dehazed: float
    latency_ms: float
    """Dehazing plus detection (offline: measured in process; node replay: publish to last output received)."""
    detect_hazy_ms: float
    hazy_detections: list[Detection] = field(default_factory=list)
    dehazed_detections: list[Detection] = field(default_factory=list)
    detection_depths: list[float] = field(default_factory=list)
    """Median depth in each dehazed detection's box: metres with a camera mounting (NaN while no fog is measured),
    else the network's relative units; NaN where the box holds no valid depth."""
    visibility_m: float = math.nan
    """The frame's visibility (m) with a camera mounting (offline: --camera-height; node replay: the node's
    ~/visibility); NaN without one or without fog."""
    visibility_at_most: bool | None = None
    """Whether `visibility_m` is an upper bound (the fog hides the road in view) rather than a measurement; None
    where it is not known (node replay: ~/visibility does not say) or there is no reading."""
    output_latency_ms: dict[str, float] = field(default_factory=dict)
    """Node replay: from publishing the frame to receiving each of the node's outputs for it (`latency_ms` is the
    largest), so that one output held up in transport shows as that output; empty offline."""
    detected: bool = True
    """Whether the detector ran on this frame: the node's `detection_interval` detects every Nth frame only, and
    both rows are detected on those frames alone (on the others both hold no detections and count in no
    detection figure)."""


@dataclass
class Sample:
    """One frame kept whole for the report's before/after panels."""

    index: int
    stamp_ns: int
    hazy: np.ndarray
    dehazed: np.ndarray
    depth: np.ndarray
    hazy_detections: list[Detection]
    dehazed_detections: list[Detection]
    detected: bool = True
    """Whether the detector ran on this frame (`FrameRecord.detected`)."""


@dataclass
class BagEvaluation:
    """Everything the report needs about one evaluated bag."""

    input_bag: str
    image_topic: str
    camera_info_topic: str | None
    mode: str
    method: str
    backend: str
    detector: str | None
    frames_in_bag: int
    """Frames on the image topic in the whole bag."""
    records: list[FrameRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    output_bag: str = ""
    output_images: str = "raw"
    """How the output bag holds the dehazed frame and the depth: raw, compressed (image_transport's topics), or none
    (left out)."""
    notes: list[str] = field(default_factory=list)
    input_bits: int = SAMPLE_BITS
    """Significant bits the frames' 16-bit samples were read with (the node's input_bits)."""
    weights: str = "unknown"
    """The trained weights the method ran, named as it loaded them (the pipeline's `weights_summary`, or a node's
    /diagnostics `weights`): "none" for dcp, "unknown" where a node sent no report naming them."""
    rate: float | None = None
    """Node replay `--rate`: frames were sent at this factor of the recorded pace, so the node dropped what it could
    not keep up with; None: in lockstep, each frame once the one before was done (every frame evaluated)."""
    frames_dropped: int = 0
    """Node replay at the recorded rate: frames sent that the node published nothing for (its latest-frame worker
    was busy with an earlier one); they are not in the records."""
    node_counts: dict[str, int] = field(default_factory=dict)
    """Node replay at the recorded rate: the node's own /diagnostics counters over the replay (`frames_received` by
    its callback, `frames_dropped` by its latest-frame worker, `frames_failed`); empty where it reported none."""
    stopped: str = ""
    """Why the evaluation ended before the last frame (in node replay the node exited part way; in any mode the disk
    ran short of room, `disk_room`), "" when it did not; the `frames_not_sent` frames from there on are not
    evaluated."""
    frames_not_sent: int = 0
    output_fps: float | None = None
    """Node replay at the recorded rate: frames the node answered per second (the camera's rate times the share
    answered), which is the dehazed row's `fps`; None in lockstep, where `fps` is 1000 / the median latency."""
    frames_in_window: int | None = None
    """Frames on the image topic within the --start/--duration window evaluated; None where the whole bag was."""

    @property
    def frames_selected(self) -> int:
        """The frames the evaluation reads: the window's, or without one the bag's."""
        return self.frames_in_bag if self.frames_in_window is None else self.frames_in_window

    @property
    def pace(self) -> str:
        """How frames were sent, in words: "lockstep" or "<R>x recorded rate"."""
        return "lockstep" if self.rate is None else f"{self.rate:g}x recorded rate"

    def camera_info_damaged(self, log_time: int, reason: str) -> None:
        """A CameraInfo message at `log_time` that does not deserialize (`reason`) is passed over: the frames after it
        keep the camera_info before it. Logged each time, noted in the report the first time."""
        LOG.warning("passed over a damaged camera_info at %d ns: %s", log_time, reason)
        if not any(note.startswith("a damaged camera_info") for note in self.notes):
            self.notes.append(f"a damaged camera_info (first at {log_time} ns: {reason}) was passed over: the frames "
                              "after it kept the camera_info before it (the log names each)")

    def fog_unmeasured(self, index: int, reason: str) -> None:
        """Frame `index` of an evaluation with a camera mounting had no fog measured, for `reason` (no camera_info
        yet, one that does not describe the frame or has no intrinsics): `note_once`."""
        self.note_once(index, f"no visibility, depth in metres or detection distance where {reason}")

    def note_once(self, index: int, note: str) -> None:
        """What holds from frame `index` on (a fog not measured, a lens distortion not undone): warned of and noted
        in the report once per note, with the first frame, as the node says it once."""
        if not any(existing.startswith(note) for existing in self.notes):
            LOG.warning("%s (first at frame %d)", note, index)
            self.notes.append(f"{note} (first at frame {index})")

    def stop(self, reason: str, index: int, count: int) -> None:
        """The evaluation ended at frame `index` of `count` for `reason`: the report covers the frames before it. A
        second stop (node replay at the recorded rate: the node exited while frames went out, then the disk ran
        short while the answers were recorded) adds its frames and reason to the first's."""
        stop = f"{reason}, at frame {index}: the {count - index} frames from there on were not evaluated"
        self.frames_not_sent += count - index
        self.stopped = f"{self.stopped}; then {stop}" if self.stopped else stop

    def seconds_in_bag(self) -> np.ndarray:
        """Each record's time since the first, by the bag's recording times (header stamps may repeat or run
        backwards: a camera on simulated time without /clock stamps every frame 0)."""
        times = np.array([r.log_time_ns for r in self.records], np.int64)  # ns since 1970 exceed float64's 53 bits
        return (times - times[0]) / 1e9 if times.size else times.astype(np.float64)

    def table(self) -> dict[str, dict[str, float | int]]:
        """The figures table: rows "hazy" (the detector on the input frames) and "dehazed" (the node's output).

        latency_ms/fps: detection alone for "hazy"; dehazing plus detection for "dehazed" (fps at the recorded
        rate: the frames the node answered per second, `output_fps`). frames_detected: the frames the detector
        ran on (every one but with the node's `detection_interval`), over which detections_per_frame is counted.
        """
        hazy_latency = [r.detect_hazy_ms for r in self.records]
        latency = [r.latency_ms for r in self.records]
        dehazed = _row(self.records, [r.dehazed_detections for r in self.records],
                       [r.haze_density_dehazed for r in self.records], latency)
        if self.output_fps is not None:
            dehazed["fps"] = self.output_fps
        return {
            "hazy": _row(self.records, [r.hazy_detections for r in self.records],
                         [r.haze_density_hazy for r in self.records], hazy_latency),
            "dehazed": dehazed,
        }

    def output_latency(self) -> dict[str, dict[str, float]]:
        """Node replay: {output: {"median", "p95", "max"}} of each output's latency (ms) over the frames it came
        for; empty offline."""
        names = sorted({name for r in self.records for name in r.output_latency_ms})
        values = {name: [r.output_latency_ms[name] for r in self.records if name in r.output_latency_ms]
                  for name in names}
        return {name: {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)), "max": float(max(v))}
                for name, v in values.items()}

    def summary(self) -> dict[str, Any]:
        """The JSON summary: run settings, the figures table and per-frame series."""
        depths = [d for r in self.records for d in r.detection_depths if math.isfinite(d)]
        return {
            "input_bag": self.input_bag, "image_topic": self.image_topic,
            "camera_info_topic": self.camera_info_topic, "mode": self.mode, "method": self.method,
            "backend": self.backend, "weights": self.weights,
            "detector": self.detector, "frames_in_bag": self.frames_in_bag,
            "frames_in_window": self.frames_in_window,
            "frames_evaluated": len(self.records), "frames_skipped": len(self.skipped), "skipped": self.skipped,
            "pace": self.pace, "frames_dropped": self.frames_dropped, "node_frame_counts": self.node_counts,
            "stopped": self.stopped, "frames_not_sent": self.frames_not_sent,
            "output_bag": self.output_bag, "output_images": self.output_images, "notes": self.notes,
            "input_bits": self.input_bits, "machine": machine(),
            "figures": self.table(),
            "detection_median_depth": float(np.median(depths)) if depths else float("nan"),
            "output_latency_ms": self.output_latency(),
            "per_frame": {
                "stamp_ns": [r.stamp_ns for r in self.records],
                "log_time_ns": [r.log_time_ns for r in self.records],
                "haze_density_hazy": [r.haze_density_hazy for r in self.records],
                "haze_density_dehazed": [r.haze_density_dehazed for r in self.records],
                "latency_ms": [r.latency_ms for r in self.records],
                "detections_hazy": [len(r.hazy_detections) for r in self.records],
                "detections_dehazed": [len(r.dehazed_detections) for r in self.records],
                "detected": [r.detected for r in self.records],
                "visibility_m": [r.visibility_m for r in self.records],
                "visibility_at_most": [r.visibility_at_most for r in self.records],
            },
        }


def machine() -> dict[str, Any]:
    """Where the timings were taken: CPU, core count and load (timings on a busy machine read high)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average_1min": load[0]}


def _row(records: Sequence[FrameRecord], detections: Sequence[list[Detection]], density: Sequence[float],
         latency: Sequence[float]) -> dict[str, float | int]:
    scores = [d.score for frame in detections for d in frame]
    detected = sum(record.detected for record in records)
    finite_latency = [v for v in latency if math.isfinite(v)]
    median = float(np.median(finite_latency)) if finite_latency else float("nan")
    return {
        "frames": len(records),
        "frames_detected": detected,
        "detections": len(scores),
        "detections_per_frame": len(scores) / detected if detected else float("nan"),
        "mean_confidence": float(np.mean(scores)) if scores else float("nan"),
        "haze_density": float(np.mean(density)) if density else float("nan"),
        "latency_ms_median": median,
        "latency_ms_p95": float(np.percentile(finite_latency, 95)) if finite_latency else float("nan"),
        "fps": 1000.0 / median if finite_latency and median > 0 else float("nan"),
    }


def sample_indices(count: int, samples: int = SAMPLE_COUNT) -> set[int]:
    """Evenly spaced frame indices for the report's before/after panels."""
    if count <= 0:
        return set()
    return {int(round(v)) for v in np.linspace(0, count - 1, min(samples, count))}
