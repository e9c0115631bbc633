"""What the node measures about itself, and how it reports it on /diagnostics.

Per processed frame the worker records: latency from the input's header stamp to the publish of
~/image_dehazed (what a robot sees; detections follow after the detector), the node's own time from taking the
frame to its last publish (without a frame's wait for a camera_info: the activation's first, a new size's), the
inference (dehazing + detection) and the fog measurement inside it, and how long the frame waited for the worker.
overhead = node time - inference - fog measurement: conversion, message building and publishing. Frames lost
between the camera and the node are counted twice over, because neither count sees every loss: the
subscription's message_lost event (what the middleware admits to) and the gaps in each publisher's sequence
numbers (DDS numbers every sample a writer sends; a gap is a frame sent and never handed to the node, whether
fragments were lost over best_effort or the reader's history overwrote it). Frames replaced in the node's
one-deep queue before the worker took them are the worker's `frames_dropped`.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from dgdehaze_core.inference.latest_frame_worker import WorkerCounts

WINDOW = 300
"""Frames kept for the medians and percentiles."""


def _median(values: deque[float]) -> float:
    return float(np.median(values)) if values else math.nan


class FrameStats:
    """Thread-safe rolling timings (milliseconds) and counters of the frames the node handled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency_ms: deque[float] = deque(maxlen=WINDOW)
        self.node_ms: deque[float] = deque(maxlen=WINDOW)
        self.inference_ms: deque[float] = deque(maxlen=WINDOW)
        self.fog_ms: deque[float] = deque(maxlen=WINDOW)
        self.wait_ms: deque[float] = deque(maxlen=WINDOW)
        self.received = 0
        self.lost = 0
        self._period_lost = 0
        self.gaps = 0
        self._period_gaps = 0
        self._last_sequence: dict[bytes, int] = {}
        self.skipped = 0
        self.last_skip_reason = ""
        self.published = 0
        self._period_start = time.monotonic()
        self._period_published = 0

    def count_received(self) -> None:
        with self._lock:
            self.received += 1

    def count_lost(self, frames: int) -> None:
        """Frames the middleware reported lost before they reached the node (QoS message_lost event)."""
        with self._lock:
            self.lost += frames

    def count_sequence(self, publisher: bytes, sequence: int | None) -> None:
        """A frame's publication sequence number from its publisher: a jump counts the frames in between as
        missing; a number that goes back means the publisher restarted."""
        if sequence is None:
            return
        with self._lock:
            last = self._last_sequence.get(publisher)
            if last is not None and sequence > last + 1:
                self.gaps += sequence - last - 1
            self._last_sequence[publisher] = sequence

    def restart_sequences(self) -> None:
        """Forget each publisher's last sequence number: frames sent while the node did not listen (inactive) are
        not frames lost in transport."""
        with self._lock:
            self._last_sequence.clear()

    def count_skipped(self, reason: str) -> None:
        with self._lock:
            self.skipped += 1
            self.last_skip_reason = reason

    def record(self, latency_ms: float, node_ms: float, inference_ms: float, fog_ms: float, wait_ms: float) -> None:
        """One published frame: `node_ms` holds `inference_ms` and `fog_ms` (the fog measurement) and the rest is
        overhead; `wait_ms` came before it."""
        with self._lock:
            self.published += 1
            if math.isfinite(latency_ms):
                self.latency_ms.append(latency_ms)
            self.node_ms.append(node_ms)
            self.inference_ms.append(inference_ms)
            self.fog_ms.append(fog_ms)
            self.wait_ms.append(wait_ms)

    def summary(self, restart_period: bool = False) -> dict[str, float]:
        """Medians, p95 latency and the output rate since the last period restart."""
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._period_start, 1e-9)
            fps = (self.published - self._period_published) / elapsed
            lost_in_period = self.lost - self._period_lost
            gaps_in_period = self.gaps - self._period_gaps
            if restart_period:
                self._period_start, self._period_published, self._period_lost = now, self.published, self.lost
                self._period_gaps = self.gaps
            overhead = [n - i - f for n, i, f in zip(self.node_ms, self.inference_ms, self.fog_ms)]
            return {"fps": fps, "latency_ms_median": _median(self.latency_ms),
                    "latency_ms_p95": float(np.percentile(self.latency_ms, 95)) if self.latency_ms else math.nan,
                    "node_ms_median": _median(self.node_ms),
                    "node_ms_max": max(self.node_ms) if self.node_ms else math.nan,
                    "inference_ms_median": _median(self.inference_ms),
                    "fog_ms_median": _median(self.fog_ms),
                    "overhead_ms_median": float(np.median(overhead)) if overhead else math.nan,
                    "queue_wait_ms_median": _median(self.wait_ms),
                    "queue_wait_ms_max": max(self.wait_ms) if self.wait_ms else math.nan,
                    "frames_received": float(self.received), "frames_lost_in_transport": float(self.lost),
                    "frames_lost_in_period": float(lost_in_period),
                    "frames_missing_in_sequence": float(self.gaps),
                    "frames_missing_in_period": float(gaps_in_period), "frames_published": float(self.published),
                    "frames_skipped": float(self.skipped)}


def diagnostic_array(name: str, hardware_id: str, stamp: object, summary: Mapping[str, float],
                     counts: WorkerCounts, info: Mapping[str, str], level: bytes, message: str) -> DiagnosticArray:
    """One DiagnosticStatus carrying the summary, the worker's counters and descriptive `info`."""
    values = [KeyValue(key=k, value=f"{v:.3f}" if not float(v).is_integer() else str(int(v)))
              if math.isfinite(v) else KeyValue(key=k, value="nan") for k, v in summary.items()]
    values += [KeyValue(key="frames_processed", value=str(counts.processed)),
               KeyValue(key="frames_dropped", value=str(counts.dropped)),
               KeyValue(key="frames_failed", value=str(counts.failed)),
               KeyValue(key="frames_pending", value=str(counts.pending))]
    values += [KeyValue(key=k, value=v) for k, v in info.items()]
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id, values=values)
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
