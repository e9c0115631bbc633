"""How many CPU threads the package's own pools use by default: ONNX Runtime's intra-op threads and the physics
inversion's bands."""
from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 4
"""More rarely helps networks and frames this small, and takes cores from the rest of the robot's stack."""


def default_threads() -> int:
    """The cores this process may use (its CPU affinity), at most `MAX_DEFAULT_THREADS`."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, available))
