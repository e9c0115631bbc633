"""How many CPU threads the package's own pools use by default: ONNX Runtime's intra-op threads and the physics
inversion's bands; what a library changes of the process's thread settings, undone."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

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


@contextmanager
def threads_kept() -> Iterator[None]:
    """Within the block, whatever it does to the process's thread settings is undone at its end: torch's and
    OpenCV's thread counts and OMP_NUM_THREADS (which child processes inherit). Ultralytics sets all three for the
    whole process, on import (OpenCV to no threads, OMP_NUM_THREADS=1) and in each new predictor (torch to the
    cores less one): the dehazer, DCP and every later command of the process then ran on them."""
    import cv2
    import torch

    torch_threads, cv2_threads, omp = torch.get_num_threads(), cv2.getNumThreads(), os.environ.get("OMP_NUM_THREADS")
    try:
        yield
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
        if cv2.getNumThreads() != cv2_threads:
            cv2.setNumThreads(cv2_threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp
