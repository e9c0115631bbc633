"""The camera the node benchmark plays: one rule for `dgdehaze bench node` and for `measure_node`'s library callers,
checked before any process starts and without importing rclpy."""
from __future__ import annotations

import math

MAX_NODE_RATE_HZ = 1000.0
"""The fastest camera the node benchmark plays."""
MAX_NODE_SECONDS = 86400.0
"""The longest node run or soak: a day."""


def check_node_load(rate_hz: float, seconds: float, rate_name: str = "rate_hz", seconds_name: str = "seconds") -> None:
    """ValueError, naming the option or argument (`rate_name`, `seconds_name`), unless the rate and the duration are
    finite, at most MAX_NODE_RATE_HZ and MAX_NODE_SECONDS (a run must end), and publish at least one frame."""
    if not (math.isfinite(rate_hz) and 0 < rate_hz <= MAX_NODE_RATE_HZ):
        raise ValueError(f"{rate_name} must be above 0 and at most {MAX_NODE_RATE_HZ:g} Hz, got {rate_hz:g}")
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_NODE_SECONDS):
        raise ValueError(f"{seconds_name} must be above 0 and at most {MAX_NODE_SECONDS:g} s, got {seconds:g}")
    if rate_hz * seconds < 1:
        raise ValueError(f"{rate_name} {rate_hz:g} Hz publishes no frame in {seconds:g} s: at least one is needed")
