"""How many CPU threads the package's own pools use by default: ONNX Runtime's intra-op threads and the physics
inversion's bands."""
from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 4
"""More rarely helps networks and frames this small, and takes cores from the rest of the robot's stack."""


def available_cpus() -> int:
    """The cores this process may use: its CPU affinity (a container's or `taskset`'s cores), which can be fewer than
    the machine's `os.cpu_count()`."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads() -> int:
    """The cores this process may use (`available_cpus`), at most `MAX_DEFAULT_THREADS`."""
    return min(MAX_DEFAULT_THREADS, available_cpus())
